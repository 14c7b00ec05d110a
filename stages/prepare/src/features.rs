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
    Array, ArrayRef, AsArray, BooleanBuilder, DictionaryArray, Float32Builder, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, TimestampMillisecondBuilder, UInt32Array, UInt32Builder, UInt64Array,
};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, UInt32Type,
};
use applearner_pipeline::columns::{self, as_dictionaries, dictionary_of_strings};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};
use serde::{Deserialize, Serialize};

use applearner_contracts::Part;
use applearner_contracts::tables::{features as feature_table, windows as window_table};

use crate::derive;

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

    /// Series by series: shards take series by key; each shard's windows name rows of its
    /// own features table, and the merge renumbers them.
    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            ("features", vec![feature_table::KEY, feature_table::TIMESTAMP]),
            ("windows", vec![window_table::KEY, window_table::ORIGIN]),
            ("scalers", vec!["key", "column"]),
        ])
    }

    fn shard_row_columns(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![("windows", window_table::START, "features")]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let wanted = input_columns(&self.params);
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let keys = [feature_table::KEY];
        let mut input =
            ctx.table_batches("resampled", Some(&wanted), &keys)?.map(|b| b.map_err(BoxError::from)).peekable();
        let schema = match input.peek() {
            Some(Ok(b)) => b.schema(),
            Some(Err(_)) => return Err(input.next().expect("peeked").expect_err("an error")),
            None => return Err(PrepareError::EmptyInput.into()),
        };
        // Only the columns modelled were read: one the input lacks is named beside all it has.
        let layout = match Layout::of(&schema, &self.params) {
            Ok(layout) => layout,
            Err(_) => Layout::of(&*whole_schema(ctx)?, &self.params)?,
        };
        let tables = [
            ("features", features_schema(&layout.flags, &layout.names)),
            ("windows", windows_schema(&self.params.windows, layout.warmup)),
        ];
        let in_shard = |key: &str| ctx.in_shard(key.as_bytes());
        let admit = ctx.shard().map(|_| &in_shard as &dyn Fn(&str) -> bool);
        let built = crate::stream_tables(ctx, &tables, |sinks| {
            let mut sink = |table: usize, b: RecordBatch| crate::send(&sinks[table], b);
            build_into(input, &self.params, self.cut, &layout, admit, &mut sink)
        })?;

        ctx.write_table("scalers", scalers_schema(), &[built.scalers])?;
        let mut summary = Summary::new();
        if let Some((i, n)) = ctx.shard().filter(|_| built.series == 0) {
            let empty = format!("shard {i} of {n} holds no series (more shards than series): its tables are empty");
            tracing::warn!("{empty}");
            summary.insert("warnings".into(), vec![empty].into());
        }
        if let Some(first) = built.untrained.first() {
            let said = format!(
                "{} series have no point in the training part and are left out (first: `{first}`): they began \
                 after it; a run that trains with a later `split` takes them in",
                built.untrained.len()
            );
            tracing::warn!("{said}");
            summary.insert("warnings".into(), vec![said].into());
        }
        summary.insert("series_without_training_points".into(), built.untrained.into());
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

/// The schema of every column of `resampled`.
fn whole_schema(ctx: &StageContext) -> Result<SchemaRef, BoxError> {
    let first = ctx.table_batches("resampled", None, &[])?.next().ok_or(PrepareError::EmptyInput)?;
    Ok(first.map_err(BoxError::from)?.schema())
}

/// The value columns modelled when `columns` names none (those present).
const ROLES: [&str; 2] = ["cpu", "memory"];

/// The columns of `resampled` read: key, segment and time, and the value columns (with
/// their fill flags) the parameters name, or else those a default could choose; the key's
/// label columns and unmodelled values are not decoded.
fn input_columns(params: &FeaturesParams) -> Vec<String> {
    let values: Vec<String> = match params.columns.is_empty() {
        true => ROLES.map(String::from).into(),
        false => params.columns.clone(),
    };
    let flags: Vec<String> = values.iter().map(|c| format!("{c}_filled")).collect();
    let mut columns: Vec<String> =
        [feature_table::KEY, feature_table::SEGMENT, feature_table::TIMESTAMP].map(String::from).into();
    columns.extend(values.into_iter().chain(flags));
    columns
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
    pub fn of(input: &Schema, params: &FeaturesParams) -> Result<Layout, BoxError> {
        let available: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        let columns: Vec<String> = if params.columns.is_empty() {
            ROLES.iter().filter(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string()).collect()
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
        let (extra, warmup) = derive::names(params, &columns);
        let mut names = columns.clone();
        names.extend(extra);
        Ok(Layout { flags, names, columns, warmup })
    }
}

/// What `build` produced.
#[derive(Debug)]
pub struct Built {
    /// Collected by [`build`]; empty when streamed by [`build_into`].
    pub features: Vec<RecordBatch>,
    pub scalers: RecordBatch,
    pub windows: RecordBatch,
    pub feature_names: Vec<String>,
    pub series: u64,
    pub points: u64,
    pub counts: Counts,
    /// Series with no point in the training part (they began after it), left out.
    pub untrained: Vec<String>,
}

/// Builds the features of `resampled` batches, every table collected.
pub fn build(resampled: &[RecordBatch], params: &FeaturesParams, cut: Cut) -> Result<Built, BoxError> {
    let schema = resampled.first().ok_or(PrepareError::EmptyInput)?.schema();
    let layout = Layout::of(&schema, params)?;
    let (mut features, mut windows) = (Vec::new(), Vec::new());
    let mut sink = |table: usize, b: RecordBatch| {
        if table == 0 {
            features.push(b)
        } else {
            windows.push(b)
        }
        Ok(())
    };
    let input = resampled.iter().map(|b| Ok(b.clone()));
    let mut built = build_into(input, params, cut, &layout, None, &mut sink)?;
    let schema = windows_schema(&params.windows, layout.warmup);
    // As the tables store them: dictionaries of strings become the strings.
    let windows = windows.iter().map(|b| crate::conform(b, &schema)).collect::<Result<Vec<_>, _>>()?;
    built.windows = applearner_pipeline::arrow::compute::concat_batches(&schema, &windows)?;
    let schema = features_schema(&layout.flags, &layout.names);
    built.features = features.iter().map(|b| crate::conform(b, &schema)).collect::<Result<_, _>>()?;
    Ok(built)
}

/// Per row, the index of its string in `values`: a column of [`dictionary_of_strings`].
fn strings(rows: Vec<u32>, values: StringArray) -> ArrayRef {
    Arc::new(DictionaryArray::new(UInt32Array::from(rows), Arc::new(values)))
}

/// The part names of rows given as indices into [`PARTS`].
fn part_names(parts: &[u8]) -> ArrayRef {
    strings(parts.iter().map(|&p| u32::from(p)).collect(), StringArray::from(PARTS.to_vec()))
}

/// Rows of the features table put in one batch: whole series, at least this many.
const BATCH_ROWS: usize = 1 << 16;

/// Builds the features of the `resampled` batches (in key and time order, as clean writes
/// them) a series at a time, handing the rows of `features` (table 0) and `windows`
/// (table 1) to `sink` in that order; it holds one series (at most `max_points_in_memory`
/// points) and a batch of output. A shard (`admit`: the series it takes) may hold no series: its
/// tables are empty, not an error.
pub fn build_into(
    input: impl Iterator<Item = Result<RecordBatch, BoxError>>,
    params: &FeaturesParams,
    cut: Cut,
    layout: &Layout,
    admit: Option<&dyn Fn(&str) -> bool>,
    sink: &mut dyn FnMut(usize, RecordBatch) -> Result<(), BoxError>,
) -> Result<Built, BoxError> {
    let mut out = Gathered::new(layout);
    let mut index = WindowIndex::new(&params.windows, layout.warmup);
    let (mut series, mut points, mut rows, mut untrained) = (0u64, 0u64, 0u64, Vec::new());
    let mut flush = |out: &mut Gathered, rows: &mut u64| -> Result<(), BoxError> {
        let windows = index.add(&out.rows(), *rows)?;
        let batch = out.finish()?;
        sink(1, windows)?;
        *rows += batch.num_rows() as u64;
        sink(0, batch)
    };
    for one in SeriesReader::new(input, layout, params.max_points_in_memory, admit.unwrap_or(&|_| true)) {
        let (key, one) = one?;
        (series, points) = (series + 1, points + one.points.times.len() as u64);
        let derived = derive::derive(&one.points, params, cut, &mut out.features);
        let Some(scalers) = derived.scalers else {
            untrained.push(key);
            continue;
        };
        out.push(&key, &one, &derived.parts, &scalers);
        if out.len() >= BATCH_ROWS {
            flush(&mut out, &mut rows)?;
        }
    }
    let empty_shard = admit.is_some() && series == 0;
    if points == 0 && !empty_shard {
        return Err(PrepareError::EmptyInput.into());
    }
    if out.len() > 0 {
        flush(&mut out, &mut rows)?;
    }
    let scalers = out.scalers(params)?;
    let counts = match empty_shard {
        true => Counts::default(),
        false => index.finish(series)?,
    };
    Ok(Built {
        features: Vec::new(),
        scalers,
        windows: RecordBatch::new_empty(windows_schema(&params.windows, layout.warmup)),
        feature_names: layout.names.clone(),
        series,
        points,
        counts,
        untrained,
    })
}

/// One series as read: its points and fill flags.
struct Series {
    points: derive::Points,
    flags: Vec<Vec<bool>>,
}

/// The series of `resampled` batches one at a time, checked to come in key and time order.
struct SeriesReader<'a, I> {
    input: I,
    layout: &'a Layout,
    max_points: u64,
    admit: &'a dyn Fn(&str) -> bool,
    /// The batch being read, its keys and the next row in it.
    batch: Option<(RecordBatch, Keys, usize)>,
    last_key: Option<String>,
}

/// A batch's keys as a dictionary: a row's key is its index into the strings, so runs of
/// one key are found by comparing integers (the stage reads the column so; a plain column
/// handed to [`build`] is cast).
struct Keys {
    rows: UInt32Array,
    strings: StringArray,
}

impl Keys {
    fn of(batch: &RecordBatch) -> Result<Keys, BoxError> {
        let column = columns::column(batch, "resampled", feature_table::KEY, &dictionary_of_strings())?;
        let dictionary = column.as_dictionary::<UInt32Type>();
        Ok(Keys { rows: dictionary.keys().clone(), strings: dictionary.values().as_string::<i32>().clone() })
    }

    fn value(&self, row: usize) -> &str {
        self.strings.value(self.rows.value(row) as usize)
    }

    /// The end of the rows from `pos` on that share its key (a dictionary may hold a string
    /// twice: where the index changes, the strings are compared).
    fn run_end(&self, pos: usize) -> usize {
        let (rows, mut index) = (self.rows.values(), self.rows.value(pos));
        for (i, &next) in rows.iter().enumerate().skip(pos + 1) {
            if next != index {
                if self.strings.value(next as usize) != self.value(pos) {
                    return i;
                }
                index = next;
            }
        }
        rows.len()
    }
}

impl<'a, I: Iterator<Item = Result<RecordBatch, BoxError>>> SeriesReader<'a, I> {
    fn new(input: I, layout: &'a Layout, max_points: u64, admit: &'a dyn Fn(&str) -> bool) -> Self {
        SeriesReader { input, layout, max_points, admit, batch: None, last_key: None }
    }

    /// The next series' key and rows (skipping those `admit` refuses), or None at the end.
    fn next_series(&mut self) -> Result<Option<(String, Series)>, BoxError> {
        loop {
            let Some(key) = self.peek_key()? else { return Ok(None) };
            if let Some(last) = &self.last_key
                && *last >= key
            {
                let what = format!("it comes after `{last}`");
                return Err(PrepareError::OutOfOrder { key, what }.into());
            }
            let admitted = (self.admit)(&key);
            let mut one = Series {
                points: derive::Points { values: vec![Vec::new(); self.layout.columns.len()], ..Default::default() },
                flags: vec![Vec::new(); self.layout.flags.len()],
            };
            while self.peek_key()?.as_deref() == Some(key.as_str()) {
                let (batch, keys, pos) = self.batch.as_mut().expect("peeked");
                let end = keys.run_end(*pos);
                if admitted {
                    append(&mut one, batch, *pos..end, self.layout)?;
                    let n = one.points.times.len() as u64;
                    if n > self.max_points {
                        return Err(PrepareError::SeriesTooLarge { key, points: n, max: self.max_points }.into());
                    }
                }
                *pos = end;
            }
            self.last_key = Some(key.clone());
            if admitted {
                if one.points.times.windows(2).any(|t| t[0] >= t[1]) {
                    let what = "its rows are not in time order".to_string();
                    return Err(PrepareError::OutOfOrder { key, what }.into());
                }
                return Ok(Some((key, one)));
            }
        }
    }

    /// The key at the next row, reading the next batch when this one is done.
    fn peek_key(&mut self) -> Result<Option<String>, BoxError> {
        loop {
            if let Some((batch, keys, pos)) = &self.batch
                && *pos < batch.num_rows()
            {
                return Ok(Some(keys.value(*pos).to_string()));
            }
            match self.input.next() {
                Some(batch) => {
                    let batch = batch?;
                    let keys = Keys::of(&batch)?;
                    self.batch = Some((batch, keys, 0));
                }
                None => return Ok(None),
            }
        }
    }
}

impl<I: Iterator<Item = Result<RecordBatch, BoxError>>> Iterator for SeriesReader<'_, I> {
    type Item = Result<(String, Series), BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_series().transpose()
    }
}

/// Appends rows `range` of a resampled batch to a series.
fn append(
    one: &mut Series,
    batch: &RecordBatch,
    range: std::ops::Range<usize>,
    layout: &Layout,
) -> Result<(), BoxError> {
    let column = |name: &str, to: &DataType| -> Result<ArrayRef, BoxError> {
        let c = batch.column_by_name(name).ok_or_else(|| format!("the resampled table has no column `{name}`"))?;
        Ok(cast(&c.slice(range.start, range.len()), to)?)
    };
    let segments = column(feature_table::SEGMENT, &DataType::UInt32)?;
    one.points.segments.extend(segments.as_primitive::<UInt32Type>().values());
    let times = column(feature_table::TIMESTAMP, &DataType::Int64)?;
    one.points.times.extend(times.as_primitive::<Int64Type>().values());
    for (values, c) in one.points.values.iter_mut().zip(&layout.columns) {
        // `resampled` values are never null (its contract): every step has a value.
        values.extend(column(c, &DataType::Float64)?.as_primitive::<Float64Type>().values());
    }
    for (flags, f) in one.flags.iter_mut().zip(&layout.flags) {
        flags.extend(column(f, &DataType::Boolean)?.as_boolean().values().iter());
    }
    Ok(())
}

/// The features table's rows being gathered, and the scalers fitted so far.
struct Gathered {
    /// Per row, its series' index in `series`.
    keys: Vec<u32>,
    segments: UInt32Builder,
    times: TimestampMillisecondBuilder,
    flags: Vec<BooleanBuilder>,
    features: Vec<Float32Builder>,
    schema: SchemaRef,
    scalers: Vec<(String, String, f64, f64)>,
    columns: Vec<String>,
    /// The series gathered (key and rows) and each row's part, for the window index.
    series: Vec<(String, usize)>,
    parts: Vec<u8>,
}

impl Gathered {
    fn new(layout: &Layout) -> Gathered {
        Gathered {
            keys: Vec::new(),
            segments: UInt32Builder::new(),
            times: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            flags: layout.flags.iter().map(|_| BooleanBuilder::new()).collect(),
            features: layout.names.iter().map(|_| Float32Builder::new()).collect(),
            // A series' key and a part's name once per batch, not copied onto every row.
            schema: as_dictionaries(
                &features_schema(&layout.flags, &layout.names),
                &[feature_table::KEY, feature_table::SPLIT],
            ),
            scalers: Vec::new(),
            columns: layout.columns.clone(),
            series: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The rows of a series whose features [`derive::derive`] appended.
    fn push(&mut self, key: &str, one: &Series, parts: &[u8], scalers: &[(f64, f64)]) {
        self.keys.resize(self.keys.len() + parts.len(), self.series.len() as u32);
        self.series.push((key.to_string(), parts.len()));
        self.parts.extend_from_slice(parts);
        self.segments.append_slice(&one.points.segments);
        self.times.append_slice(&one.points.times);
        for (b, f) in self.flags.iter_mut().zip(&one.flags) {
            b.append_slice(f);
        }
        for (c, (center, scale)) in self.columns.iter().zip(scalers) {
            self.scalers.push((key.to_string(), c.clone(), *center, *scale));
        }
    }

    /// What the window index reads of the rows gathered.
    fn rows(&self) -> Rows<'_> {
        Rows {
            series: &self.series,
            segments: self.segments.values_slice(),
            parts: &self.parts,
            times: self.times.values_slice(),
        }
    }

    /// The rows gathered as a batch; the builders start again empty.
    fn finish(&mut self) -> Result<RecordBatch, BoxError> {
        let keys = StringArray::from_iter_values(self.series.drain(..).map(|(key, _)| key));
        let mut columns: Vec<ArrayRef> = vec![
            strings(std::mem::take(&mut self.keys), keys),
            Arc::new(self.segments.finish()),
            Arc::new(self.times.finish()),
            part_names(&self.parts),
        ];
        self.parts.clear();
        columns.extend(self.flags.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.features.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// The scalers of every series built, in key and column order.
    fn scalers(&mut self, params: &FeaturesParams) -> Result<RecordBatch, BoxError> {
        let mut rows = std::mem::take(&mut self.scalers);
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let n = rows.len();
        let text = |v: String| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        Ok(RecordBatch::try_new(
            scalers_schema(),
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0.as_str())).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.1.as_str())).collect::<StringArray>()),
                text(serde_plain(&params.transform)),
                text(serde_plain(&params.scale)),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.3).collect::<Float64Array>()),
            ],
        )?)
    }
}

/// Per series and value column: the transform and scaling, and the centre and scale fitted
/// on its training part (value = centre + scale × feature, before the transform's inverse).
pub fn scalers_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("key"),
        text("column"),
        text("transform"),
        text("method"),
        Field::new("center", DataType::Float64, false),
        Field::new("scale", DataType::Float64, false),
    ]))
}

/// Lowercase name of a unit enum variant as users write it.
fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
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
        (window_table::STRIDE_KEY.to_string(), spec.stride.to_string()),
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
            Field::new(window_table::WINDOWS, DataType::UInt32, false),
        ],
        metadata,
    ))
}

/// Per part: windows, series without any, and windows dropped for a history shorter than
/// the lookback (and warm-up) at the start of a segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub per_part: [u64; 3],
    pub without: [u64; 3],
    pub short_history: [u64; 3],
}

/// The index of every window, built a range of series at a time: inputs
/// `[start, start + lookback)`, targets the next `horizon` rows, all in one segment, targets
/// all in one part, no input before the features' warm-up.
struct WindowIndex<'a> {
    spec: &'a WindowSpec,
    warmup: u32,
    per_part: [u64; 3],
    longest_part: [u64; 3],
    series_with: [u64; 3],
    short_history: [u64; 3],
    longest_segment: (usize, String),
}

/// The windows table's columns being built.
struct WindowColumns {
    /// Per run of windows, its part's index in [`PARTS`] and its series' in the rows'.
    part: Vec<u8>,
    key: Vec<u32>,
    segment: Vec<u32>,
    start: Vec<u64>,
    origin: Vec<i64>,
    count: Vec<u32>,
}

/// The features rows the index reads: the series in row order (key and rows), then per
/// row its segment, part and time.
struct Rows<'a> {
    series: &'a [(String, usize)],
    segments: &'a [u32],
    parts: &'a [u8],
    times: &'a [i64],
}

impl<'a> WindowIndex<'a> {
    fn new(spec: &'a WindowSpec, warmup: u32) -> Self {
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

    /// The windows of the range of series in `rows`, whose first row is row `offset` of the
    /// whole features table.
    fn add(&mut self, rows: &Rows, offset: u64) -> Result<RecordBatch, BoxError> {
        let mut out =
            WindowColumns { part: vec![], key: vec![], segment: vec![], start: vec![], origin: vec![], count: vec![] };
        let mut begin = 0;
        for (s, (key, len)) in rows.series.iter().enumerate() {
            let (end_of_series, mut with) = (begin + len, [false; 3]);
            while begin < end_of_series {
                let segment = rows.segments[begin];
                let end = (begin..end_of_series).find(|&i| rows.segments[i] != segment).unwrap_or(end_of_series);
                if end - begin > self.longest_segment.0 {
                    self.longest_segment = (end - begin, key.clone());
                }
                self.segment(rows, s as u32, begin..end, offset, &mut with, &mut out);
                begin = end;
            }
            for (p, with) in with.iter().enumerate() {
                self.series_with[p] += u64::from(*with);
            }
        }
        let keys = StringArray::from_iter_values(rows.series.iter().map(|(key, _)| key));
        Ok(RecordBatch::try_new(
            as_dictionaries(&windows_schema(self.spec, self.warmup), &[window_table::SPLIT, window_table::KEY]),
            vec![
                part_names(&out.part),
                strings(out.key, keys),
                Arc::new(UInt32Array::from(out.segment)),
                Arc::new(UInt64Array::from(out.start)),
                Arc::new(TimestampMillisecondArray::from(out.origin).with_timezone("UTC")),
                Arc::new(UInt32Array::from(out.count)),
            ],
        )?)
    }

    /// The windows of the segment at `rows` (of the rows' series `series`); `with` marks the
    /// parts it has windows in.
    fn segment(
        &mut self,
        rows: &Rows,
        series: u32,
        segment: std::ops::Range<usize>,
        offset: u64,
        with: &mut [bool; 3],
        out: &mut WindowColumns,
    ) {
        let (lookback, horizon, stride) =
            (self.spec.lookback as usize, self.spec.horizon as usize, self.spec.stride as usize);
        let (begin, end) = (segment.start, segment.end);
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
            let target = run_start.max(first);
            // One row for the part's windows: targets from `target`, `stride` apart.
            let count = if target + horizon <= r { (r - horizon - target) / stride + 1 } else { 0 };
            if count > 0 {
                with[p] = true;
                self.per_part[p] += count as u64;
                out.part.push(p as u8);
                out.key.push(series);
                out.segment.push(rows.segments[begin]);
                out.start.push(offset + (target - lookback) as u64);
                out.origin.push(rows.times[target - 1]);
                out.count.push(count as u32);
            }
            run_start = r;
        }
    }

    /// The counts over every range of `series` series; no part without windows and some
    /// segment long enough for one, or the error that says what to change.
    fn finish(self, series: u64) -> Result<Counts, BoxError> {
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

#[cfg(test)]
mod keys_tests {
    use super::*;
    use applearner_pipeline::arrow::array::DictionaryArray;

    /// Runs end where the string changes, not where the index does: a dictionary may hold a
    /// string twice.
    #[test]
    fn runs_of_a_key_end_where_its_string_changes() {
        let strings = StringArray::from(vec!["a", "b", "a", "c"]);
        let rows = UInt32Array::from(vec![0, 0, 2, 2, 1, 1, 3, 3]);
        let column = Arc::new(DictionaryArray::new(rows, Arc::new(strings))) as ArrayRef;
        let schema = Arc::new(Schema::new(vec![Field::new(feature_table::KEY, column.data_type().clone(), false)]));
        let keys = Keys::of(&RecordBatch::try_new(schema, vec![column]).unwrap()).unwrap();
        assert_eq!([0, 4, 6].map(|p| keys.run_end(p)), [4, 6, 8]);
        // A plain column (as `build` is handed) is read the same way.
        let plain = Arc::new(StringArray::from(vec!["a", "a", "b"])) as ArrayRef;
        let schema = Arc::new(Schema::new(vec![Field::new(feature_table::KEY, DataType::Utf8, false)]));
        let keys = Keys::of(&RecordBatch::try_new(schema, vec![plain]).unwrap()).unwrap();
        assert_eq!((keys.run_end(0), keys.value(2)), (2, "b"));
    }
}
