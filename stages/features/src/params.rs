//! `features.build`'s parameters, checked.

use applearner_pipeline::ParamProblem;
use applearner_pipeline::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

/// Turns the `resampled` series into model inputs. Writes `features` (per point: key,
/// segment, timestamp, `split` = train/validation/test, then the float32 features: each
/// value column transformed and scaled, calendar sin/cos, lags, rolling mean/std),
/// `scalers` (per series and column: the transform and the centre and scale fitted on the
/// training part, to turn forecasts back into cores and bytes) and `windows` (per run of
/// windows of one series, segment and part: the first's row in `features` and origin, and
/// how many there are, `stride` rows apart; lookback, horizon and stride in the metadata).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesParams {
    /// Value columns of the input to model (`cpu`, `memory`); default: every role present.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Applied before scaling: `none` or `log1p` (tames the spikes of bursty usage).
    #[serde(default)]
    pub transform: Transform,
    /// Per-series scaling fitted on the training part: `zscore` (mean, standard
    /// deviation), `minmax`, `robust` (median, interquartile range) or `none`.
    #[serde(default)]
    pub scale: Scale,
    /// Calendar features as sin/cos pairs: `hour` (of the day, UTC) and `weekday`.
    #[serde(default = "default_calendar")]
    pub calendar: Vec<Calendar>,
    /// Lagged copies of each value column, in steps (`[1, 60]`).
    #[serde(default)]
    pub lags: Vec<u32>,
    /// Trailing rolling mean and standard deviation of each value column over these many
    /// steps (`[12, 60]`).
    #[serde(default)]
    pub rolling: Vec<u32>,
    /// Seasons, in steps (`[288, 2016]`: a day and a week at 5 minutes), each longer than the
    /// horizon. Per value column and season S: `<col>_season<S>`, the value S − horizon
    /// steps back, and `<col>_season<S>_mean`, the mean of the horizon's steps before it.
    /// At a window's origin they are the value a season before the horizon's last step and
    /// the mean of that season-earlier horizon; over the window's last horizon rows, the
    /// season-earlier value of every step forecast. All of it is past at every row.
    #[serde(default)]
    pub season_lags: Vec<u32>,
    /// How each segment is cut, in time order, into training, validation and test parts.
    #[serde(default)]
    pub split: Split,
    /// The training windows cut from each part.
    #[serde(default)]
    pub windows: WindowSpec,
    /// The most points one series may have: its features are built from all of them at once
    /// (about 130 bytes a point with two value columns: the default, four years at 1
    /// minute, takes about 260 MB); the stage holds one series and a batch of output.
    #[serde(default = "default_max_points")]
    pub max_points_in_memory: u64,
}

fn default_max_points() -> u64 {
    1 << 21
}

fn default_calendar() -> Vec<Calendar> {
    vec![Calendar::Hour, Calendar::Weekday]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    #[default]
    None,
    Log1p,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Zscore,
    Minmax,
    Robust,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Calendar {
    Hour,
    Weekday,
}

/// Fractions of each segment (the last ones go to test), or cut-off times that apply to
/// every series (points at or after `test_from` are test).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    #[serde(default = "default_validation")]
    pub validation: f64,
    #[serde(default = "default_test")]
    pub test: f64,
    /// RFC 3339 time where validation starts (with `test_from`, instead of fractions).
    #[serde(default)]
    pub validation_from: Option<String>,
    /// RFC 3339 time where test starts.
    #[serde(default)]
    pub test_from: Option<String>,
}

impl Default for Split {
    fn default() -> Self {
        Split { validation: default_validation(), test: default_test(), validation_from: None, test_from: None }
    }
}

fn default_validation() -> f64 {
    0.1
}

fn default_test() -> f64 {
    0.2
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Steps of history a model sees.
    #[serde(default = "default_lookback")]
    pub lookback: u32,
    /// Steps it forecasts.
    #[serde(default = "default_horizon")]
    pub horizon: u32,
    /// Steps between the starts of consecutive windows.
    #[serde(default = "one")]
    pub stride: u32,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec { lookback: default_lookback(), horizon: default_horizon(), stride: 1 }
    }
}

fn default_lookback() -> u32 {
    48
}

fn default_horizon() -> u32 {
    12
}

fn one() -> u32 {
    1
}

/// Split boundaries, checked.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    Fractions { validation: f64, test: f64 },
    Times { validation_ms: i64, test_ms: i64 },
}

impl FeaturesParams {
    /// The split's cut, once every parameter is checked.
    pub fn cut(&self) -> Result<Cut, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let cut = self.split.cut(&mut problems);
        self.check_steps(&mut problems);
        match cut {
            Some(cut) if problems.is_empty() => Ok(cut),
            _ => Err(problems),
        }
    }

    /// Windows, lags, rolling windows and seasons long enough to mean something.
    fn check_steps(&self, problems: &mut Vec<ParamProblem>) {
        let w = &self.windows;
        for (field, v) in [("lookback", w.lookback), ("horizon", w.horizon), ("stride", w.stride)] {
            if v == 0 {
                problems.push(ParamProblem::new(&["windows", field], "must be at least 1", "use 1 or more"));
            }
        }
        for (field, v) in self.lags.iter().map(|l| ("lags", *l)).chain(self.rolling.iter().map(|r| ("rolling", *r))) {
            if v == 0 || (field == "rolling" && v < 2) {
                problems.push(ParamProblem::new(
                    &[field],
                    format!("{v} steps is too short"),
                    "lags start at 1 step, rolling windows at 2",
                ));
            }
        }
        for &season in &self.season_lags {
            if season <= w.horizon {
                problems.push(ParamProblem::new(
                    &["season_lags"],
                    format!("a season of {season} steps is not longer than the horizon ({} steps)", w.horizon),
                    "give seasons longer than `windows.horizon` (a week, 2016 steps at 5 minutes, for a day ahead)",
                ));
            }
        }
    }
}

impl Split {
    /// The cut this split names, by fractions or by times, or `None` with its problems.
    fn cut(&self, problems: &mut Vec<ParamProblem>) -> Option<Cut> {
        match (&self.validation_from, &self.test_from) {
            (None, None) => self.fractions(problems),
            (Some(v), Some(t)) => match (rfc3339("validation_from", v, problems), rfc3339("test_from", t, problems)) {
                (Some(validation_ms), Some(test_ms)) if validation_ms < test_ms => {
                    Some(Cut::Times { validation_ms, test_ms })
                }
                (Some(_), Some(_)) => {
                    problems.push(ParamProblem::new(
                        &["split", "test_from"],
                        "test starts before validation",
                        "make `validation_from` earlier than `test_from`",
                    ));
                    None
                }
                _ => None,
            },
            _ => {
                problems.push(ParamProblem::new(
                    &["split"],
                    "give both `validation_from` and `test_from`, or neither",
                    "add the missing cut-off, or remove both to split by fractions",
                ));
                None
            }
        }
    }

    fn fractions(&self, problems: &mut Vec<ParamProblem>) -> Option<Cut> {
        for (field, v) in [("validation", self.validation), ("test", self.test)] {
            if !(0.0..1.0).contains(&v) || v == 0.0 {
                problems.push(ParamProblem::new(
                    &["split", field],
                    format!("{v} is not a fraction between 0 and 1"),
                    "use a fraction such as 0.1 or 0.2",
                ));
            }
        }
        if self.validation + self.test >= 1.0 {
            problems.push(ParamProblem::new(
                &["split"],
                format!("validation + test = {} leaves nothing to train on", self.validation + self.test),
                "keep validation + test below 1, such as 0.1 and 0.2",
            ));
        }
        Some(Cut::Fractions { validation: self.validation, test: self.test })
    }
}

/// `text` as milliseconds since the epoch, or a problem at `split.<field>`.
fn rfc3339(field: &str, text: &str, problems: &mut Vec<ParamProblem>) -> Option<i64> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis());
    if parsed.is_none() {
        problems.push(ParamProblem::new(
            &["split", field],
            format!("`{text}` is not an RFC 3339 time"),
            "write it as 2024-05-01T00:00:00Z",
        ));
    }
    parsed
}
