//! `plan.resources`' parameters.

use super::*;

/// Turns the model's forecasts (`forecasts` of evaluate.backtest, validation and test parts
/// and ahead) into resource plans. Each line (CPU request, optional CPU limit, memory
/// request, memory limit) is sized at the risk you state: the share of time usage may sit
/// above it. A rule (a forecast quantile's peak over the horizon, that peak never below a
/// recent quantile, or the recent quantile alone; limits never below a recent peak) times a
/// factor (per workload, shrunk toward the fleet's, or one for the fleet) that meets the risk
/// on the validation part; rule and factor pooling are chosen there by cross-validation in
/// time. Nothing is chosen on the test part.
/// Writes `plan` (and `plan.csv`: per workload, the lines to set now and how long they hold),
/// `patches.yaml` (strategic-merge patches of each workload's container resources, also valid
/// for server-side apply), `vpa.yaml` (VerticalPodAutoscaler objects holding the plan as their
/// recommendation, update mode Off), `plan_backtest` (per line, change budget, method and
/// setting: slack, time above the line and changes over the test part) and `plan_comparison`
/// (per line and budget: the model against KRR and VPA, default and tuned, and the oracle).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// Whose forecasts plans are sized from: `auto` (per workload and resource, the
    /// backtest's choice on the validation part: the model or a baseline) or `model`.
    #[serde(default)]
    pub forecasts: Forecasts,
    /// CPU: the request at `request_risk` (default 1%); a limit only if `limit_risk` is set
    /// (above it CPU is throttled).
    #[serde(default)]
    pub cpu: ResourceParams,
    /// Memory: the request at `request_risk` (default 1%: above it a pod may be evicted under
    /// node pressure) and the limit at `limit_risk` (default 0.01%: above it it is OOM-killed).
    #[serde(default)]
    pub memory: ResourceParams,
    /// Changes a plan may make in any 24 hours (1: a daily resize; 24 for hourly in-place
    /// pod resize). A value is lowered only after 24 h / this, raised as soon as allowed.
    #[serde(default = "one")]
    pub max_changes_per_day: u32,
    /// No change for a gain under this fraction of the value in force.
    #[serde(default = "default_min_change")]
    pub min_change: f64,
    /// The change budgets the replay compares (the configured one is always included).
    #[serde(default = "default_budgets")]
    pub budgets: Vec<u32>,
    /// What reserved capacity costs, to price the change from the current allocation.
    #[serde(default)]
    pub prices: Prices,
    /// A workload is flagged `throttled` when this share of its CFS periods, on average
    /// over the data, were throttled (default 10%).
    #[serde(default)]
    pub throttled_above: Option<Risk>,
    /// The highest HPA utilization target (in %) the plan sets to keep an HPA's scale point;
    /// a request that would need more is left as it is, and says so.
    #[serde(default = "default_hpa_max_target")]
    pub hpa_max_target: f64,
    /// How fast each workload's factor follows the breaches it has seen since it was
    /// calibrated (adaptive conformal inference on the factor's log; 0: fixed factors).
    /// Default: chosen per line on validation among 0, 0.03, 0.1 and 0.3. The replay of the
    /// test part runs this same loop.
    #[serde(default)]
    pub adapt_rate: Option<f64>,
    /// Keep the loop's state in the store under `state/<name>/` and continue from the latest
    /// there: each refresh decides only what is new since the last one, with the values in
    /// force, the change budget used and the factors it left.
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Forecasts {
    #[default]
    Auto,
    Model,
}

impl Forecasts {
    pub(crate) fn method(self) -> &'static str {
        match self {
            Forecasts::Auto => Method::Auto.name(),
            Forecasts::Model => Method::Model.name(),
        }
    }
}

/// How one resource's lines are sized.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceParams {
    /// The share of time usage may exceed the request: `1%`.
    #[serde(default)]
    pub request_risk: Option<Risk>,
    /// The share of time usage may exceed the limit: `0.01%` (memory's default).
    #[serde(default)]
    pub limit_risk: Option<Risk>,
    /// Instead of a risk: the request from this forecast (`p90`, `point`) × (1 + `margin`),
    /// uncalibrated.
    #[serde(default)]
    pub source: Option<QuantileSource>,
    /// With `source`: headroom on top of it, as a fraction (0.1 = +10 %).
    #[serde(default)]
    pub margin: f64,
    /// The smallest value: CPU as `10m` or cores (default 10m), memory as `32Mi` or bytes
    /// (default 32Mi).
    #[serde(default)]
    pub min: Option<Quantity>,
    /// Values are rounded up to a multiple of this (default 5m, 4Mi).
    #[serde(default)]
    pub step: Option<Quantity>,
    /// The limit is never set above this multiple of the highest usage seen up to the
    /// decision (default 2; `null` for no cap): a limit far above anything ever used
    /// protects nothing and hides a leak. The validation part cannot calibrate a 0.01 % line
    /// per workload, and a fleet factor would otherwise set such limits.
    #[serde(default = "default_limit_cap")]
    pub limit_cap: Option<f64>,
    /// Nor above this, as `64Gi` or `16` cores: the largest node's allocatable, where a pod
    /// above it could never be scheduled.
    #[serde(default)]
    pub limit_max: Option<Quantity>,
}

fn one() -> u32 {
    1
}
fn default_hpa_max_target() -> f64 {
    100.0
}
fn default_limit_cap() -> Option<f64> {
    Some(2.0)
}

impl Default for ResourceParams {
    fn default() -> Self {
        ResourceParams {
            request_risk: None,
            limit_risk: None,
            source: None,
            margin: 0.0,
            min: None,
            step: None,
            limit_cap: default_limit_cap(),
            limit_max: None,
        }
    }
}
fn default_min_change() -> f64 {
    0.1
}
fn default_budgets() -> Vec<u32> {
    vec![1, 4, 24]
}

const DEFAULT_REQUEST_RISK: &str = "1%";
const DEFAULT_MEMORY_LIMIT_RISK: &str = "0.01%";

impl ResourceParams {
    /// The request line and, where set (or memory's default), the limit line.
    pub(crate) fn lines(&self, resource: Resource, problems: &mut Vec<ParamProblem>) -> Vec<Line> {
        let name = resource.name();
        let (floor, step) = if resource == Resource::Cpu { ("10m", "5m") } else { ("32Mi", "4Mi") };
        let q = |v: &Option<Quantity>, d: &str| {
            v.as_ref().map_or_else(|| d.parse::<Quantity>().expect("valid"), Clone::clone).value()
        };
        let (floor, step) = (q(&self.min, floor), q(&self.step, step));
        let default = |r: &str| r.parse::<Risk>().expect("a valid default").fraction();
        let request = match (&self.source, &self.request_risk) {
            (Some(_), Some(_)) => {
                let what = format!("`source` and `request_risk` both size the {name} request");
                problems.push(ParamProblem::new(&[name, "source"], what, "give one of them"));
                Sizing::Risk(default(DEFAULT_REQUEST_RISK))
            }
            (Some(source), None) => {
                if !(self.margin.is_finite() && self.margin >= 0.0) {
                    problems.push(ParamProblem::new(&[name, "margin"], "must be a fraction ≥ 0", "e.g. 0.1 for 10 %"));
                }
                Sizing::Fixed(Rule::Forecast(source.column()), 1.0 + self.margin)
            }
            (None, r) => Sizing::Risk(r.as_ref().map_or_else(|| default(DEFAULT_REQUEST_RISK), Risk::fraction)),
        };
        let names = [false, true].map(|limit| applearner_contracts::Line::of(resource, limit).name());
        let mut lines = vec![Line { name: names[0], resource, sizing: request, floor, step, cap: None }];
        let limit = match (&self.limit_risk, resource) {
            (Some(r), _) => Some(r.fraction()),
            (None, Resource::Memory) => Some(default(DEFAULT_MEMORY_LIMIT_RISK)),
            (None, _) => None,
        };
        let multiple = self.limit_cap.unwrap_or(f64::INFINITY);
        if multiple.is_nan() || multiple < 1.0 {
            let what = "must be at least 1: a limit below the highest usage seen kills or throttles what ran before";
            problems.push(ParamProblem::new(&[name, "limit_cap"], what, "e.g. 2, or null for no cap"));
        }
        let max = self.limit_max.as_ref().map_or(f64::INFINITY, Quantity::value);
        let cap = Some(Cap { multiple, max, step });
        if let Some(r) = limit {
            lines.push(Line { name: names[1], resource, sizing: Sizing::Risk(r), floor, step, cap });
        }
        lines
    }
}
