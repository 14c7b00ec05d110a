//! `features.build`: clean series → scaled features, a chronological split and an index of
//! training windows.
//!
//! Windows are stored as the row where each starts, not as copies of their values: the
//! `features` table holds every point once and [`crate::windows`] cuts batches from it, so a
//! million points need a million rows, not lookback × a million.
//!
//! Nothing looks ahead: scaling statistics come from the training part of each series only,
//! lags and rolling statistics only use the current and earlier points, and a window
//! belongs to the part its targets fall in (its inputs may come from earlier parts, which is
//! the past at its origin).

use crate::PrepareError;
use std::sync::Arc;

use applearner_pipeline::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt32Type};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use applearner_contracts::Part;
use applearner_contracts::tables::{features as feature_table, windows as window_table};

use crate::{collect, ident, literal, register_input};

/// Turns the `resampled` series into model inputs. Writes `features` (per point: key,
/// segment, timestamp, `split` = train/validation/test, then the float32 features: each
/// value column transformed and scaled, calendar sin/cos, lags, rolling mean/std),
/// `scalers` (per series and column: the transform and the centre and scale fitted on the
/// training part, to turn forecasts back into cores and bytes) and `windows` (per window:
/// its part, series and first row in `features`; lookback and horizon in the metadata).
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
    /// Points built at a time: series are built in ranges of at most this many points,
    /// whatever the input's size (the default peaks at about 0.5 GB); one series needs all
    /// of its points at once.
    #[serde(default = "default_max_points")]
    pub max_points_in_memory: u64,
}

fn default_max_points() -> u64 {
    1 << 18
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

/// The parts of the split, in time order.
const PARTS: [&str; 3] = [Part::Train.name(), Part::Validation.name(), Part::Test.name()];

/// Split boundaries, checked.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    Fractions { validation: f64, test: f64 },
    Times { validation_ms: i64, test_ms: i64 },
}

impl StageParams for FeaturesParams {
    const KIND: &'static str = "features.build";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let cut = self.cut()?;
        Ok(Box::new(Features { params: self, cut }))
    }
}

impl FeaturesParams {
    pub fn cut(&self) -> Result<Cut, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let s = &self.split;
        let time = |field: &str, text: &str, problems: &mut Vec<ParamProblem>| {
            let parsed = chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis());
            if parsed.is_none() {
                problems.push(ParamProblem::new(
                    &["split", field],
                    format!("`{text}` is not an RFC 3339 time"),
                    "write it as 2024-05-01T00:00:00Z",
                ));
            }
            parsed
        };
        let cut = match (&s.validation_from, &s.test_from) {
            (None, None) => {
                for (field, v) in [("validation", s.validation), ("test", s.test)] {
                    if !(0.0..1.0).contains(&v) || v == 0.0 {
                        problems.push(ParamProblem::new(
                            &["split", field],
                            format!("{v} is not a fraction between 0 and 1"),
                            "use a fraction such as 0.1 or 0.2",
                        ));
                    }
                }
                if s.validation + s.test >= 1.0 {
                    problems.push(ParamProblem::new(
                        &["split"],
                        format!("validation + test = {} leaves nothing to train on", s.validation + s.test),
                        "keep validation + test below 1, such as 0.1 and 0.2",
                    ));
                }
                Some(Cut::Fractions { validation: s.validation, test: s.test })
            }
            (Some(v), Some(t)) => {
                match (time("validation_from", v, &mut problems), time("test_from", t, &mut problems)) {
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
                }
            }
            _ => {
                problems.push(ParamProblem::new(
                    &["split"],
                    "give both `validation_from` and `test_from`, or neither",
                    "add the missing cut-off, or remove both to split by fractions",
                ));
                None
            }
        };
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
        match cut {
            Some(cut) if problems.is_empty() => Ok(cut),
            _ => Err(problems),
        }
    }
}

struct Features {
    params: FeaturesParams,
    cut: Cut,
}

impl Stage for Features {
    fn reads(&self) -> Vec<String> {
        vec!["resampled".into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::table("features"), Output::table("scalers"), Output::table("windows")]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let session = crate::session(Some(ctx));
        ctx.store().block_on(register_input(&session, ctx, "resampled"))?;
        let layout = ctx.store().block_on(Layout::of(&session, &self.params))?;
        let tables = [
            ("features", features_schema(&layout.flags, &layout.names)),
            ("windows", windows_schema(&self.params.windows, layout.warmup)),
        ];
        let layout = &layout;
        let built = crate::stream_tables(ctx, &tables, |sinks| async move {
            let mut sink = |table: usize, b: RecordBatch| crate::send(&sinks[table], b);
            build_into(&session, &self.params, self.cut, layout, &mut sink).await
        })?;
        ctx.write_table("scalers", built.scalers_schema.clone(), &built.scalers)?;
        let mut summary = Summary::new();
        summary.insert("series".into(), built.series.into());
        summary.insert("points".into(), built.points.into());
        summary.insert("features".into(), built.feature_names.clone().into());
        let c = built.counts;
        for (p, part) in PARTS.iter().enumerate() {
            summary.insert(format!("{part}_windows"), c.per_part[p].into());
            summary.insert(format!("series_without_{part}_windows"), c.without[p].into());
            summary.insert(format!("{part}_windows_dropped_for_short_history"), c.short_history[p].into());
        }
        Ok(summary)
    }
}

/// What the features table holds: the fill flags carried along, the feature names, the
/// value columns modelled and the warm-up the derived features need.
pub struct Layout {
    pub flags: Vec<String>,
    pub names: Vec<String>,
    pub columns: Vec<String>,
    pub warmup: u32,
}

impl Layout {
    /// From the `resampled` table's schema and the parameters.
    pub async fn of(session: &SessionContext, params: &FeaturesParams) -> Result<Layout, BoxError> {
        let input = session.table("resampled").await?;
        let available: Vec<String> = input.schema().fields().iter().map(|f| f.name().clone()).collect();
        let columns: Vec<String> = if params.columns.is_empty() {
            ["cpu", "memory"].iter().filter(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string()).collect()
        } else {
            params.columns.clone()
        };
        for c in &columns {
            if !available.contains(c) {
                return Err(PrepareError::UnknownColumn { column: c.clone(), available: available.join(", ") }.into());
            }
        }
        if columns.is_empty() {
            let available = available.join(", ");
            return Err(PrepareError::UnknownColumn { column: "cpu or memory".into(), available }.into());
        }
        // The fill flags of clean.resample ride along, so the features need no join back.
        let flags = columns.iter().map(|c| format!("{c}_filled")).filter(|f| available.contains(f)).collect();
        let (_, extra, warmup) = derived(params, &columns);
        let mut names = columns.clone();
        names.extend(extra);
        Ok(Layout { flags, names, columns, warmup })
    }
}

/// What `build` produced.
#[derive(Debug)]
pub struct Built {
    pub features_schema: SchemaRef,
    /// Collected by [`build`]; empty when streamed by [`build_into`].
    pub features: Vec<RecordBatch>,
    pub scalers_schema: SchemaRef,
    pub scalers: Vec<RecordBatch>,
    pub windows: RecordBatch,
    pub feature_names: Vec<String>,
    pub series: u64,
    pub points: u64,
    pub counts: Counts,
}

/// Builds features from the table registered as `resampled`, every table collected.
pub async fn build(session: &SessionContext, params: &FeaturesParams, cut: Cut) -> Result<Built, BoxError> {
    let layout = Layout::of(session, params).await?;
    let (mut features, mut windows) = (Vec::new(), Vec::new());
    let mut sink = |table: usize, b: RecordBatch| {
        if table == 0 {
            features.push(b)
        } else {
            windows.push(b)
        }
        Ok(())
    };
    let mut built = build_into(session, params, cut, &layout, &mut sink).await?;
    let schema = windows_schema(&params.windows, layout.warmup);
    built.windows = applearner_pipeline::arrow::compute::concat_batches(&schema, &windows)?;
    built.features = features;
    Ok(built)
}

/// Builds the features a range of series of at most `max_points_in_memory` points at a time,
/// handing the rows of `features` (table 0) and `windows` (table 1) to `sink` in series and
/// time order, as one build of them all would.
pub async fn build_into(
    session: &SessionContext,
    params: &FeaturesParams,
    cut: Cut,
    layout: &Layout,
    sink: &mut dyn FnMut(usize, RecordBatch) -> Result<(), BoxError>,
) -> Result<Built, BoxError> {
    let ranges = key_ranges(session, params.max_points_in_memory).await?;
    let (series, points) = ranges.iter().fold((0, 0), |a, r| (a.0 + r.series, a.1 + r.points));
    if points == 0 {
        return Err(PrepareError::EmptyInput.into());
    }
    let features_schema = features_schema(&layout.flags, &layout.names);
    let mut index = WindowIndex::new(&params.windows, layout.warmup);
    let (mut scalers, mut scalers_schema, mut rows) = (Vec::new(), None, 0u64);
    for range in &ranges {
        let parted = parted_sql(params, cut, layout, range);
        let (schema, fitted) = fit_scalers(session, params, layout, &parted).await?;
        scalers_schema.get_or_insert(schema);
        check_fitted(session, &fitted, layout, range).await?;
        crate::register_batches(session, "scalers", fitted.clone(), scalers_schema.clone().expect("set"), &[])?;
        scalers.extend(fitted);
        let batches = scaled_features(session, params, layout, &parted).await?;
        let features = batches.iter().map(|b| crate::conform(b, &features_schema)).collect::<Result<Vec<_>, _>>()?;
        sink(1, index.add(&features, rows)?)?;
        for b in features {
            rows += b.num_rows() as u64;
            sink(0, b)?;
        }
    }
    let counts = index.finish(series)?;
    let scalers_schema = scalers_schema.unwrap_or_else(|| Arc::new(Schema::empty()));
    Ok(Built {
        features_schema,
        features: Vec::new(),
        scalers_schema,
        scalers,
        windows: RecordBatch::new_empty(windows_schema(&params.windows, layout.warmup)),
        feature_names: layout.names.clone(),
        series,
        points,
        counts,
    })
}

/// A range of series (by key, inclusive) built at once.
pub struct KeyRange {
    first: String,
    last: String,
    series: u64,
    points: u64,
}

impl KeyRange {
    /// The SQL condition on `key` of the range's series: on the sorted `resampled` table,
    /// Parquet statistics skip the row groups outside it.
    fn condition(&self) -> String {
        format!("key >= {} AND key <= {}", literal(&self.first), literal(&self.last))
    }
}

/// Consecutive series (in key order) of at most `max_points` points together; one series
/// above it is an error naming it.
async fn key_ranges(session: &SessionContext, max_points: u64) -> Result<Vec<KeyRange>, BoxError> {
    let sizes = collect(session.sql("SELECT key, count(*) FROM resampled GROUP BY key ORDER BY key").await?).await?;
    let mut ranges: Vec<KeyRange> = Vec::new();
    for b in &sizes {
        let keys = b.column(0).as_string::<i32>();
        for i in 0..b.num_rows() {
            let (key, n) = (keys.value(i).to_string(), int(b.column(1), i));
            if n > max_points {
                return Err(PrepareError::SeriesTooLarge { key, points: n, max: max_points }.into());
            }
            match ranges.last_mut() {
                Some(r) if r.points + n <= max_points => {
                    (r.last, r.series, r.points) = (key, r.series + 1, r.points + n)
                }
                _ => ranges.push(KeyRange { first: key.clone(), last: key, series: 1, points: n }),
            }
        }
    }
    Ok(ranges)
}

/// The points of `range` with their part and transformed values (`<col>__x`).
fn parted_sql(params: &FeaturesParams, cut: Cut, layout: &Layout, range: &KeyRange) -> String {
    let part = match cut {
        Cut::Fractions { validation, test } => format!(
            "CASE WHEN i >= n - round(n * {test}) THEN 'test' \
                  WHEN i >= n - round(n * {}) THEN 'validation' ELSE 'train' END",
            validation + test
        ),
        Cut::Times { validation_ms, test_ms } => format!(
            "CASE WHEN ts >= {test_ms} THEN 'test' WHEN ts >= {validation_ms} THEN 'validation' ELSE 'train' END"
        ),
    };
    let transform = |c: &str| match params.transform {
        Transform::None => ident(c),
        Transform::Log1p => format!("ln(1.0 + {})", ident(c)),
    };
    let values = layout.columns.iter().map(|c| format!("{} AS {}", transform(c), ident(&format!("{c}__x"))));
    let flags: String = layout.flags.iter().map(|f| format!(", {}", ident(f))).collect();
    format!(
        "SELECT key, segment, timestamp, ts, {part} AS split{flags}, {values} FROM ( \
           SELECT *, CAST(timestamp AS BIGINT) AS ts, \
                  row_number() OVER (PARTITION BY key, segment ORDER BY timestamp) - 1 AS i, \
                  count(*) OVER (PARTITION BY key, segment) AS n \
           FROM resampled WHERE {condition})",
        values = values.collect::<Vec<_>>().join(", "),
        condition = range.condition(),
    )
}

/// Scaling statistics per series and column, from the training part only.
async fn fit_scalers(
    session: &SessionContext,
    params: &FeaturesParams,
    layout: &Layout,
    parted: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), BoxError> {
    let fits = layout
        .columns
        .iter()
        .map(|c| {
            let x = ident(&format!("{c}__x"));
            let (center, scale) = match params.scale {
                Scale::Zscore => (format!("avg({x})"), format!("stddev_pop({x})")),
                Scale::Minmax => (format!("min({x})"), format!("max({x}) - min({x})")),
                Scale::Robust => (
                    format!("median({x})"),
                    format!(
                        "percentile_cont(0.75) WITHIN GROUP (ORDER BY {x}) - percentile_cont(0.25) WITHIN GROUP (ORDER BY {x})"
                    ),
                ),
                Scale::None => ("0.0".into(), "1.0".into()),
            };
            // A constant training part has no spread: scale by 1 rather than divide by 0.
            format!(
                "SELECT key, {col} AS \"column\", CAST({center} AS DOUBLE) AS center, \
                        CAST(CASE WHEN {scale} > 0 THEN {scale} ELSE 1.0 END AS DOUBLE) AS scale \
                 FROM parted WHERE split = 'train' GROUP BY key",
                col = literal(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let df = crate::sql_in_order(
        session,
        &format!(
            "WITH parted AS ({parted}) \
             SELECT key, \"column\", {transform} AS transform, {method} AS method, center, scale \
             FROM ({fits}) ORDER BY key, \"column\"",
            transform = literal(&serde_plain(&params.transform)),
            method = literal(&serde_plain(&params.scale)),
        ),
    )
    .await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, collect(df).await?))
}

/// Every series of `range` has a training part to be scaled by.
async fn check_fitted(
    session: &SessionContext,
    fitted: &[RecordBatch],
    layout: &Layout,
    range: &KeyRange,
) -> Result<(), BoxError> {
    let fitted = fitted.iter().map(|b| b.num_rows() as u64).sum::<u64>() / layout.columns.len() as u64;
    if fitted == range.series {
        return Ok(());
    }
    let sql =
        format!("SELECT min(key) FROM resampled WHERE {} AND key NOT IN (SELECT key FROM scalers)", range.condition());
    let first = collect(session.sql(&sql).await?).await?;
    let first = first.first().map(|b| b.column(0).as_string::<i32>().value(0).to_string()).unwrap_or_default();
    Err(PrepareError::NoTraining { count: range.series - fitted, series: range.series, first }.into())
}

/// Scaled values, calendar, lags and rolling statistics, as float32, in key and time order.
async fn scaled_features(
    session: &SessionContext,
    params: &FeaturesParams,
    layout: &Layout,
    parted: &str,
) -> Result<Vec<RecordBatch>, BoxError> {
    let mut features = Vec::new();
    let mut scaled_joins = Vec::new();
    for (k, c) in layout.columns.iter().enumerate() {
        let x = ident(&format!("{c}__x"));
        scaled_joins.push(format!("JOIN scalers s{k} ON s{k}.key = p.key AND s{k}.\"column\" = {}", literal(c)));
        features.push(format!("(p.{x} - s{k}.center) / s{k}.scale AS {}", ident(c)));
    }
    let scaled = format!(
        "SELECT p.key, p.segment, p.timestamp, p.ts, p.split{}, {} FROM ({parted}) p {}",
        layout.flags.iter().map(|f| format!(", p.{}", ident(f))).collect::<String>(),
        features.join(", "),
        scaled_joins.join(" ")
    );
    let (derived, _, _) = derived(params, &layout.columns);
    let derived = if derived.is_empty() { String::new() } else { format!(", {}", derived.join(", ")) };
    let flags: String = layout.flags.iter().map(|f| format!(", {}", ident(f))).collect();
    let table = session
        .sql(&format!(
            "SELECT key, segment, timestamp, split{flags}, {cols} FROM (SELECT *{derived} FROM ({scaled})) \
             ORDER BY key, timestamp",
            cols = layout.names.iter().map(|n| ident(n)).collect::<Vec<_>>().join(", "),
        ))
        .await?;
    collect(table).await
}

/// The features computed from the scaled values, as SQL select items over the table of
/// scaled points (`ts` its time in ms): calendar sin/cos, then per value column its lags and
/// rolling statistics, then per column its season lags. With their names and the warm-up,
/// the steps at a segment's start they need before they are defined.
fn derived(params: &FeaturesParams, columns: &[String]) -> (Vec<String>, Vec<String>, u32) {
    let (mut derived, mut names) = (Vec::new(), Vec::new());
    let mut warmup = 0u32;
    let w = "PARTITION BY key, segment ORDER BY ts";
    for cal in &params.calendar {
        let angle = match cal {
            Calendar::Hour => "2.0 * pi() * CAST(ts % 86400000 AS DOUBLE) / 86400000.0",
            // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday.
            Calendar::Weekday => {
                "2.0 * pi() * (CAST((ts / 86400000 + 3) % 7 AS DOUBLE) + CAST(ts % 86400000 AS DOUBLE) / 86400000.0) / 7.0"
            }
        };
        let name = serde_plain(cal);
        derived.push(format!("sin({angle}) AS {name}_sin, cos({angle}) AS {name}_cos"));
        names.extend([format!("{name}_sin"), format!("{name}_cos")]);
    }
    for c in columns {
        let x = ident(c);
        for lag in &params.lags {
            derived.push(format!("lag({x}, {lag}) OVER ({w}) AS {}", ident(&format!("{c}_lag{lag}"))));
            names.push(format!("{c}_lag{lag}"));
            warmup = warmup.max(*lag);
        }
        for r in &params.rolling {
            let frame = format!("{w} ROWS BETWEEN {} PRECEDING AND CURRENT ROW", r - 1);
            // Partial windows at a segment's start would mean something else: left null.
            let full = format!("row_number() OVER ({w}) >= {r}");
            // A sliding variance is updated by subtraction, so a flat stretch can come out a
            // hair below zero; its square root would be NaN. Clamp it at zero.
            derived.push(format!(
                "CASE WHEN {full} THEN avg({x}) OVER ({frame}) END AS {}, \
                 CASE WHEN {full} THEN sqrt(greatest(var_pop({x}) OVER ({frame}), 0.0)) END AS {}",
                ident(&format!("{c}_mean{r}")),
                ident(&format!("{c}_std{r}"))
            ));
            names.extend([format!("{c}_mean{r}"), format!("{c}_std{r}")]);
            warmup = warmup.max(r - 1);
        }
    }
    let horizon = params.windows.horizon;
    for c in columns {
        let x = ident(c);
        for &season in &params.season_lags {
            let (lag, name) = (season - horizon, format!("{c}_season{season}"));
            let full = format!("row_number() OVER ({w}) >= {season}");
            derived.push(format!(
                "lag({x}, {lag}) OVER ({w}) AS {}, \
                 CASE WHEN {full} THEN avg({x}) OVER ({w} ROWS BETWEEN {} PRECEDING AND {lag} PRECEDING) END AS {}",
                ident(&name),
                season - 1,
                ident(&format!("{name}_mean"))
            ));
            names.extend([name.clone(), format!("{name}_mean")]);
            warmup = warmup.max(season - 1);
        }
    }
    (derived, names, warmup)
}

/// Lowercase name of a unit enum variant as users write it.
fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn int(array: &ArrayRef, row: usize) -> u64 {
    let a = cast(array, &DataType::UInt64).expect("counts cast to u64");
    a.as_primitive::<applearner_pipeline::arrow::datatypes::UInt64Type>().value(row)
}

pub fn features_schema(flags: &[String], names: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new(feature_table::KEY, DataType::Utf8, false),
        Field::new(feature_table::SEGMENT, DataType::UInt32, false),
        Field::new(feature_table::TIMESTAMP, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new(feature_table::SPLIT, DataType::Utf8, false),
    ];
    fields.extend(flags.iter().map(|f| Field::new(f, DataType::Boolean, false)));
    fields.extend(names.iter().map(|n| Field::new(n, DataType::Float32, true)));
    Arc::new(Schema::new(fields))
}

pub fn windows_schema(spec: &WindowSpec, warmup: u32) -> SchemaRef {
    let metadata = [
        (window_table::LOOKBACK_KEY.to_string(), spec.lookback.to_string()),
        (window_table::HORIZON_KEY.to_string(), spec.horizon.to_string()),
        (window_table::WARMUP_KEY.to_string(), warmup.to_string()),
    ]
    .into_iter()
    .collect();
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new(window_table::SPLIT, DataType::Utf8, false),
            Field::new(window_table::KEY, DataType::Utf8, false),
            Field::new(window_table::SEGMENT, DataType::UInt32, false),
            Field::new(window_table::START, DataType::UInt64, false),
            Field::new(window_table::ORIGIN, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        ],
        metadata,
    ))
}

/// Per part: windows, series without any, and windows dropped for a history shorter than
/// the lookback (and warm-up) at the start of a segment.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub per_part: [u64; 3],
    pub without: [u64; 3],
    pub short_history: [u64; 3],
}

/// The index of every window, built a range of series at a time: inputs
/// `[start, start + lookback)`, targets the next `horizon` rows, all in one segment, targets
/// all in one part, no input before the features' warm-up.
pub struct WindowIndex<'a> {
    spec: &'a WindowSpec,
    warmup: u32,
    per_part: [u64; 3],
    longest_part: [u64; 3],
    series_with: [u64; 3],
    short_history: [u64; 3],
    longest_segment: (usize, String),
}

/// The columns of the features rows the index reads.
struct Rows<'a> {
    keys: Vec<&'a str>,
    segments: Vec<u32>,
    parts: Vec<u8>,
    times: Vec<i64>,
}

impl<'a> Rows<'a> {
    fn of(features: &'a [RecordBatch]) -> Rows<'a> {
        let mut r = Rows { keys: Vec::new(), segments: Vec::new(), parts: Vec::new(), times: Vec::new() };
        for b in features {
            r.keys.extend(b.column(0).as_string::<i32>().iter().map(|k| k.unwrap_or_default()));
            r.segments.extend(b.column(1).as_primitive::<UInt32Type>().values().iter().copied());
            r.parts.extend(
                b.column(3).as_string::<i32>().iter().map(|p| {
                    PARTS.iter().position(|q| Some(*q) == p).expect("split is train, validation or test") as u8
                }),
            );
            let times = b.column(2).as_any().downcast_ref::<TimestampMillisecondArray>().expect("ms");
            r.times.extend(times.values().iter());
        }
        r
    }
}

impl<'a> WindowIndex<'a> {
    pub fn new(spec: &'a WindowSpec, warmup: u32) -> Self {
        WindowIndex {
            spec,
            warmup,
            per_part: [0; 3],
            longest_part: [0; 3],
            series_with: [0; 3],
            short_history: [0; 3],
            longest_segment: (0, String::new()),
        }
    }

    /// The windows of the range of series in `features`, whose first row is row `offset` of
    /// the whole features table.
    pub fn add(&mut self, features: &[RecordBatch], offset: u64) -> Result<RecordBatch, BoxError> {
        let rows = Rows::of(features);
        let (lookback, horizon, stride) =
            (self.spec.lookback as usize, self.spec.horizon as usize, self.spec.stride as usize);
        let (mut part, mut key, mut segment, mut start, mut origin) = (vec![], vec![], vec![], vec![], vec![]);
        let mut with: [std::collections::BTreeSet<&str>; 3] = Default::default();
        let mut begin = 0;
        while begin < rows.keys.len() {
            let mut end = begin;
            while end < rows.keys.len()
                && rows.keys[end] == rows.keys[begin]
                && rows.segments[end] == rows.segments[begin]
            {
                end += 1;
            }
            if end - begin > self.longest_segment.0 {
                self.longest_segment = (end - begin, rows.keys[begin].to_string());
            }
            // Each part's windows are strided from its first possible target.
            let mut run_start = begin;
            for r in begin..=end {
                if r < end && rows.parts[r] == rows.parts[run_start] {
                    continue;
                }
                let p = rows.parts[run_start] as usize;
                self.longest_part[p] = self.longest_part[p].max((r - run_start) as u64);
                // Targets whose window would reach before the segment's start (or into the
                // warm-up) are dropped, not padded: counted.
                let first = begin + self.warmup as usize + lookback;
                self.short_history[p] +=
                    (run_start..first.min(r.saturating_sub(horizon - 1))).step_by(stride).count() as u64;
                let mut target = run_start.max(first);
                while target + horizon <= r {
                    self.per_part[p] += 1;
                    with[p].insert(rows.keys[begin]);
                    part.push(PARTS[p]);
                    key.push(rows.keys[begin]);
                    segment.push(rows.segments[begin]);
                    start.push(offset + (target - lookback) as u64);
                    origin.push(rows.times[target - 1]);
                    target += stride;
                }
                run_start = r;
            }
            begin = end;
        }
        for (p, w) in with.iter().enumerate() {
            self.series_with[p] += w.len() as u64;
        }
        let schema = windows_schema(self.spec, self.warmup);
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(part)),
                Arc::new(StringArray::from(key)),
                Arc::new(UInt32Array::from(segment)),
                Arc::new(UInt64Array::from(start)),
                Arc::new(TimestampMillisecondArray::from(origin).with_timezone("UTC")),
            ],
        )?)
    }

    /// The counts over every range of `series` series; no part without windows and some
    /// segment long enough for one, or the error that says what to change.
    pub fn finish(self, series: u64) -> Result<Counts, BoxError> {
        let spec = self.spec;
        let need = spec.lookback + spec.horizon;
        if self.longest_segment.0 < (need + self.warmup) as usize {
            let (n, key) = &self.longest_segment;
            return Err(too_short(spec, self.warmup, (*n, key)).into());
        }
        if let Some(p) = (0..3).find(|p| self.per_part[*p] == 0) {
            let warmup = match self.warmup {
                0 => String::new(),
                w => format!(" + {w} warm-up steps for lags/rolling"),
            };
            return Err(PrepareError::EmptyPart {
                part: PARTS[p],
                series,
                need: need + self.warmup,
                lookback: spec.lookback,
                horizon: spec.horizon,
                warmup,
                longest: self.longest_part[p],
            }
            .into());
        }
        let without = [0, 1, 2].map(|p| series - self.series_with[p]);
        Ok(Counts { per_part: self.per_part, without, short_history: self.short_history })
    }
}

/// No segment holds one window: the error names the longest segment and the settings to
/// lower, by how much of a window each takes, largest first.
fn too_short(spec: &WindowSpec, warmup: u32, (longest, key): (usize, &str)) -> PrepareError {
    let mut settings = [
        (spec.lookback, "windows.lookback"),
        (spec.horizon, "windows.horizon"),
        (warmup, "season_lags/lags/rolling (warm-up)"),
    ];
    settings.sort_by_key(|s| std::cmp::Reverse(s.0));
    PrepareError::SegmentsTooShort {
        need: spec.lookback + spec.horizon + warmup,
        lookback: spec.lookback,
        horizon: spec.horizon,
        warmup,
        longest: longest as u64,
        key: key.to_string(),
        settings: settings
            .iter()
            .filter(|s| s.0 > 0)
            .map(|s| format!("`{}` ({})", s.1, s.0))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
