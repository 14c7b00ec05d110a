//! What AppLearner's stages exchange, for every stage that reads another's tables: the
//! tables' names, columns and metadata keys ([`tables`]), the values shared across stages
//! ([`Part`], [`Resource`]), the typed reader of training windows ([`windows`]) and the
//! model card ([`card`]) with the specs it records ([`model`]).
//!
//! Arrow and serde only (schemars documents the specs that are also stage parameters): a
//! stage that reads windows or a card (training, the backtest, the report) needs neither
//! DataFusion nor burn.

pub mod card;
pub mod model;
pub mod summaries;
pub mod tables;
pub mod windows;

pub use windows::{Candidate, Window, WindowCounts, WindowSet, grid_step_ms, windows_per_part};

use serde::{Deserialize, Serialize};

/// A chronological part of each series: models are fitted on `train`, chosen on
/// `validation` and judged on `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl Part {
    /// In time order.
    pub const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    pub const fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        }
    }

    pub fn parse(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What is forecast and planned: CPU in cores, memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    /// Its position in [`Resource::ALL`], for values kept per resource (`[cpu, memory]`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The column name in every table (`cpu`, `memory`).
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// A line of a plan, and of what kube-state-metrics says is allocated: a request (capacity
/// reserved) or a limit (where CPU is throttled and memory OOM-killed) of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    CpuRequest,
    CpuLimit,
    MemoryRequest,
    MemoryLimit,
}

impl Line {
    /// In the order tables list them, which is also `[request, limit]` per resource.
    pub const ALL: [Line; 4] = [Line::CpuRequest, Line::CpuLimit, Line::MemoryRequest, Line::MemoryLimit];

    pub const fn of(resource: Resource, limit: bool) -> Line {
        match (resource, limit) {
            (Resource::Cpu, false) => Line::CpuRequest,
            (Resource::Cpu, true) => Line::CpuLimit,
            (Resource::Memory, false) => Line::MemoryRequest,
            (Resource::Memory, true) => Line::MemoryLimit,
        }
    }

    /// The name tables and summaries use (`cpu_request`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Line::CpuRequest => "cpu_request",
            Line::CpuLimit => "cpu_limit",
            Line::MemoryRequest => "memory_request",
            Line::MemoryLimit => "memory_limit",
        }
    }

    /// Its position in [`Line::ALL`], for values kept per line.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn resource(self) -> Resource {
        match self {
            Line::CpuRequest | Line::CpuLimit => Resource::Cpu,
            Line::MemoryRequest | Line::MemoryLimit => Resource::Memory,
        }
    }
}

/// A way to forecast or size: the model, `auto` (per series, the forecaster best on
/// validation), the baselines users get without a model, the recommenders they run today
/// the oracle, and what is allocated now. [`Method::name`] is what tables store, [`Method::label`] what people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Auto,
    Model,
    /// The mean of the model's forecast and that of the baseline best on validation, per
    /// series.
    Blend,
    LastValue,
    SeasonalNaive,
    MovingAverage,
    HoltWinters,
    Vpa,
    Krr,
    Oracle,
    /// What is allocated now: the plan replays it beside the others.
    Current,
}

impl Method {
    /// Every method, in the order tables and charts list them.
    pub const ALL: [Method; 11] = [
        Method::Auto,
        Method::Model,
        Method::Blend,
        Method::LastValue,
        Method::SeasonalNaive,
        Method::MovingAverage,
        Method::HoltWinters,
        Method::Vpa,
        Method::Krr,
        Method::Oracle,
        Method::Current,
    ];

    /// The methods the backtest forecasts with: all but the oracle, which only the plan has.
    pub const BACKTESTED: [Method; 9] = Method::run(0);

    /// The methods that forecast, the model first (`auto` chooses among them, ties to the
    /// earlier); the recommenders only size.
    pub const FORECASTERS: [Method; 6] = Method::run(1);

    /// What forecasts from the history alone, beside the model: the baselines and the
    /// recommenders.
    pub const FROM_HISTORY: [Method; 6] = Method::run(3);

    /// The forecasters that read the history alone: what the model is measured against.
    pub const BASELINES: [Method; 4] = Method::run(3);

    /// `N` methods of [`Method::ALL`] from position `from`: the lists above, kept in its order.
    const fn run<const N: usize>(from: usize) -> [Method; N] {
        let mut out = [Method::Auto; N];
        let mut i = 0;
        while i < N {
            out[i] = Method::ALL[from + i];
            i += 1;
        }
        out
    }

    pub const fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Model => "model",
            Method::Blend => "blend",
            Method::LastValue => "last_value",
            Method::SeasonalNaive => "seasonal_naive",
            Method::MovingAverage => "moving_average",
            Method::HoltWinters => "holt_winters",
            Method::Vpa => "vpa",
            Method::Krr => "krr",
            Method::Oracle => "oracle",
            Method::Current => "current",
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Method::Auto => "auto (chosen on validation)",
            Method::Model => "model",
            Method::Blend => "mean of the model and a baseline",
            Method::LastValue => "last value",
            Method::SeasonalNaive => "seasonal naive",
            Method::MovingAverage => "moving average",
            Method::HoltWinters => "Holt-Winters",
            Method::Vpa => "VPA",
            Method::Krr => "KRR simple",
            Method::Oracle => "oracle (foresight)",
            Method::Current => "allocated now",
        }
    }

    /// Recommenders (and the oracle) size resources; they are compared as plans, not forecasts.
    pub const fn is_recommender(self) -> bool {
        matches!(self, Method::Vpa | Method::Krr | Method::Oracle)
    }

    /// `None` for a name of no method here (an external forecaster's, such as statsforecast's).
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// NumPy's default (linear) percentile of sorted values, `p` in 0..=100: linear between
/// the two nearest ranks. The one percentile of every stage.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// [`percentile`] of `values` (not empty) in any order, exactly as of them sorted: the two
/// order statistics it interpolates between are selected (`values` is reordered), not
/// sorted for, in linear time.
pub fn percentile_unsorted(values: &mut [f64], p: f64) -> f64 {
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let (_, low, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let low = *low;
    let high = match rank.ceil() as usize > lo {
        true => above.iter().copied().min_by(f64::total_cmp).unwrap_or(low),
        false => low,
    };
    low + (high - low) * (rank - lo as f64)
}

/// A problem with one parameter, found by `StageParams::build`.
#[derive(Debug, Clone)]
pub struct ParamProblem {
    /// Path of the parameter below `with:` (`["model", "hidden"]`); empty for the whole block.
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl ParamProblem {
    pub fn new(path: &[&str], message: impl Into<String>, help: impl Into<String>) -> Self {
        ParamProblem {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// The same problem seen from the parameter that holds this one: `hidden` → `model.hidden`.
    pub fn within(mut self, parent: &str) -> Self {
        self.path.insert(0, parent.to_string());
        self
    }
}

/// Column `column` of a batch of table `table`, as type `to`.
fn cast_column(
    b: &arrow::array::RecordBatch,
    table: &'static str,
    column: &'static str,
    to: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef, ContractError> {
    let c = b.column_by_name(column).ok_or(ContractError::MissingColumn { table, column })?;
    arrow::compute::cast(c, to).map_err(|error| ContractError::Type { table, column, error })
}

/// A table that does not hold what its contract says.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the {table} table has no `{column}` column; rebuild it with this version")]
    MissingColumn { table: &'static str, column: &'static str },
    #[error("the {table} table's `{column}` column has the wrong type ({error}); rebuild it with this version")]
    Type { table: &'static str, column: &'static str, error: arrow::error::ArrowError },
    #[error("the features table has no column `{column}`; it has {available}")]
    UnknownColumn { column: String, available: String },
    #[error("the windows table lacks `{0}` in its metadata; rebuild it with features.build")]
    Metadata(&'static str),
    #[error("the windows table points past the end of the features table (row {row} of {rows}); rebuild both")]
    OutOfRange { row: u64, rows: usize },
    #[error(
        "series `{key}` has a missing or non-finite `{column}` at {time} inside a window; clean the input \
         (clean.resample drops NaN) or rebuild the features"
    )]
    NotFinite { key: String, column: String, time: String },
    #[error("unknown part `{0}`; use train, validation or test")]
    UnknownPart(String),
    #[error("{0}")]
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let sorted = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&sorted, 50.0), 3.0);
        assert_eq!(percentile(&sorted, 75.0), 5.0);
        assert_eq!(percentile(&sorted, 25.0), 1.75);
    }

    #[test]
    fn percentiles_of_unsorted_values_are_those_of_them_sorted_bit_for_bit() {
        // A scrambled series with ties, at the percentiles the plan asks for and between.
        let values: Vec<f64> = (0..2016u64).map(|i| ((i * 7919) % 1009) as f64 * 0.37 + (i % 3) as f64).collect();
        for n in [1, 2, 3, 288, 2016] {
            let mut head = values[..n].to_vec();
            head.sort_by(f64::total_cmp);
            for p in [0.0, 12.5, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
                let want = percentile(&head, p);
                let got = percentile_unsorted(&mut values[..n].to_vec(), p);
                assert_eq!(got.to_bits(), want.to_bits(), "{n} values, p{p}");
            }
        }
    }

    #[test]
    fn method_names_parse_back_and_are_what_serde_writes() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(Method::parse("statsforecast_autoets"), None);
        assert_eq!(Method::FORECASTERS[0], Method::Model);
        assert_eq!(Method::BACKTESTED.last(), Some(&Method::Krr));
        assert!(Method::FORECASTERS.iter().all(|m| !m.is_recommender() && *m != Method::Auto));
        assert_eq!(
            Method::FROM_HISTORY,
            [
                Method::LastValue,
                Method::SeasonalNaive,
                Method::MovingAverage,
                Method::HoltWinters,
                Method::Vpa,
                Method::Krr
            ]
        );
    }

    #[test]
    fn lines_are_a_request_and_a_limit_per_resource() {
        for (i, line) in Line::ALL.into_iter().enumerate() {
            assert_eq!(line.index(), i);
            assert_eq!(Line::of(line.resource(), line.name().ends_with("limit")), line);
            assert_eq!(tables::allocation::LINES[i], line.name());
        }
    }
}
