//! `features.build`: clean series → scaled features, a chronological split and an index of
//! training windows.
//!
//! Windows are stored as the row where each starts, not as copies of their values: the
//! `features` table holds every point once and `applearner_contracts::WindowSet` cuts batches from it, so a
//! million points need a million rows, not lookback × a million.
//!
//! Nothing looks ahead: scaling statistics come from the training part of each series only,
//! lags and rolling statistics only use the current and earlier points, and a window
//! belongs to the part its targets fall in (its inputs may come from earlier parts, which is
//! the past at its origin).

use std::sync::Arc;

use applearner_pipeline::arrow::array::{ArrayRef, DictionaryArray, RecordBatch, StringArray, UInt32Array};
use applearner_pipeline::arrow::datatypes::{Schema, SchemaRef};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};

use applearner_contracts::tables::{features as feature_table, resampled, scalers, windows as window_table};
use applearner_contracts::{Part, Resource};

mod derive;
mod error;
mod gathered;
mod index;
mod params;
mod series;

use gathered::Gathered;
pub use gathered::{features_schema, scalers_schema, windows_schema};
pub use index::Counts;
use index::WindowIndex;
pub use params::{Calendar, Cut, FeaturesParams, Scale, Split, Transform, WindowSpec};
use series::SeriesReader;

pub use error::FeaturesError;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut applearner_pipeline::Registry) {
    registry.register::<FeaturesParams>();
}

/// The parts of the split, in time order.
const PARTS: [&str; 3] = [Part::Train.name(), Part::Validation.name(), Part::Test.name()];

impl StageParams for FeaturesParams {
    const KIND: &'static str = "features.build";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let cut = self.cut()?;
        Ok(Box::new(Features { params: self, cut }))
    }
}

struct Features {
    params: FeaturesParams,
    cut: Cut,
}

impl Stage for Features {
    fn reads(&self) -> Vec<String> {
        vec![resampled::NAME.into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![Output::table(feature_table::NAME), Output::table(scalers::NAME), Output::table(window_table::NAME)]
    }

    /// Series by series: shards take series by key; each shard's windows name rows of its
    /// own features table, and the merge renumbers them.
    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            (feature_table::NAME, vec![feature_table::KEY, feature_table::TIMESTAMP]),
            (window_table::NAME, vec![window_table::KEY, window_table::ORIGIN]),
            (scalers::NAME, vec![scalers::KEY, scalers::COLUMN]),
        ])
    }

    fn shard_row_columns(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        vec![(window_table::NAME, window_table::START, feature_table::NAME)]
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        // Only the columns modelled are read (a label column or an unmodelled value is not
        // decoded); which those are comes from the table's schema.
        let layout = Layout::of(&*whole_schema(ctx)?, &self.params)?;
        let wanted = input_columns(&layout);
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let keys = [feature_table::KEY];
        let input =
            ctx.table_batches(resampled::NAME, Some(&wanted), &keys)?.map(|b| b.map_err(BoxError::from)).peekable();
        let tables = [
            (feature_table::NAME, features_schema(&layout)),
            (window_table::NAME, windows_schema(&self.params.windows, layout.warmup)),
        ];
        let in_shard = |key: &str| ctx.in_shard(key.as_bytes());
        let admit = ctx.shard().map(|_| &in_shard as &dyn Fn(&str) -> bool);
        let built = applearner_pipeline::stream_tables(ctx, &tables, |sinks| {
            let mut sink = |table: usize, b: RecordBatch| applearner_pipeline::send(&sinks[table], b);
            build_into(input, &self.params, self.cut, &layout, admit, &mut sink)
        })?;

        ctx.write_table(scalers::NAME, scalers_schema(), &[built.scalers])?;
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
    let first = ctx.table_batches(resampled::NAME, None, &[])?.next().ok_or(FeaturesError::EmptyInput)?;
    Ok(first.map_err(BoxError::from)?.schema())
}

/// The usage columns, first among the value columns modelled when `columns` names none.
const ROLES: [&str; 2] = [Resource::Cpu.name(), Resource::Memory.name()];

/// The columns of `resampled` read: key, segment and time, and the value columns modelled
/// with their fill flags.
fn input_columns(layout: &Layout) -> Vec<String> {
    let mut columns: Vec<String> =
        [feature_table::KEY, feature_table::SEGMENT, feature_table::TIMESTAMP].map(String::from).into();
    columns.extend(layout.columns.iter().chain(&layout.flags).cloned());
    columns
}

/// What the features table holds: the fill flags carried along, the feature names, the
/// value columns modelled and the warm-up the derived features need.
pub struct Layout {
    pub flags: Vec<String>,
    pub names: Vec<String>,
    pub columns: Vec<String>,
    pub warmup: u32,
    /// The value columns beyond the usage (clean.resample's inputs), and the features
    /// derived from them: those a model may leave out.
    pub covariates: (Vec<String>, Vec<String>),
}

impl Layout {
    /// From the `resampled` table's schema and the parameters.
    pub fn of(input: &Schema, params: &FeaturesParams) -> Result<Layout, BoxError> {
        let available: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        // By default the usage, then every model input clean.resample wrote (a value column
        // with a fill flag).
        let columns: Vec<String> = if params.columns.is_empty() {
            let flagged = |c: &String| !c.ends_with("_filled") && available.contains(&format!("{c}_filled"));
            let inputs = available.iter().filter(|c| flagged(c) && !ROLES.contains(&c.as_str())).cloned();
            ROLES.iter().filter(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string()).chain(inputs).collect()
        } else {
            params.columns.clone()
        };
        for c in &columns {
            if !available.contains(c) {
                return Err(FeaturesError::UnknownColumn { column: c.clone(), available: available.join(", ") }.into());
            }
        }
        if columns.is_empty() {
            let available = available.join(", ");
            return Err(FeaturesError::UnknownColumn { column: "cpu or memory".into(), available }.into());
        }
        // The fill flags of clean.resample ride along, so the features need no join back.
        let flags = columns.iter().map(|c| format!("{c}_filled")).filter(|f| available.contains(f)).collect();
        let (extra, warmup) = derive::names(params, &columns);
        let mut names = columns.clone();
        names.extend(extra);
        // Everything the usage columns alone would give is not a covariate's.
        let usage: Vec<String> = columns.iter().filter(|c| ROLES.contains(&c.as_str())).cloned().collect();
        let of_usage: Vec<String> = usage.iter().cloned().chain(derive::names(params, &usage).0).collect();
        let covariates = (
            columns.iter().filter(|c| !usage.contains(c)).cloned().collect(),
            names.iter().filter(|n| !of_usage.contains(n)).cloned().collect(),
        );
        Ok(Layout { flags, names, columns, warmup, covariates })
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
    let schema = resampled.first().ok_or(FeaturesError::EmptyInput)?.schema();
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
    let windows =
        windows.iter().map(|b| applearner_pipeline::columns::conform(b, &schema)).collect::<Result<Vec<_>, _>>()?;
    built.windows = applearner_pipeline::arrow::compute::concat_batches(&schema, &windows)?;
    let schema = features_schema(&layout);
    built.features =
        features.iter().map(|b| applearner_pipeline::columns::conform(b, &schema)).collect::<Result<_, _>>()?;
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
        return Err(FeaturesError::EmptyInput.into());
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
