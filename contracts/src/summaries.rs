//! Stage summaries that other crates read (the report, the CLI): typed, so a renamed or
//! missing key is an error where it is read, not a 0 or a NaN on the page.

use serde::{Deserialize, Serialize};

/// `plan.resources`' summary as the report and `applearner plan` read it: the change budget
/// and what the plan changes against the current allocation, in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub max_changes_per_day: u32,
    #[serde(flatten)]
    pub savings: PlanSavings,
}

/// Totals over the workloads that have both a current allocation and a plan (one pod's
/// requests × its replicas), and how many workloads carry each flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanSavings {
    pub workloads_with_allocation: u64,
    pub workloads_without_allocation: u64,
    pub allocated_workloads_not_planned: u64,
    pub current_cpu_request_cores: f64,
    pub planned_cpu_request_cores: f64,
    pub current_memory_request_gib: f64,
    pub planned_memory_request_gib: f64,
    pub cost_change_per_month: f64,
    pub flagged_oom_killed: u64,
    pub flagged_throttled: u64,
    pub flagged_cpu_request_below_plan: u64,
    pub flagged_memory_request_below_plan: u64,
    pub flagged_cpu_above_limit: u64,
    pub flagged_memory_above_limit: u64,
    pub flagged_owner_unknown: u64,
    pub flagged_job: u64,
    pub flagged_hpa: u64,
}

impl PlanSummary {
    /// From a stage record's summary (a JSON object holding these keys among others).
    pub fn read(summary: &serde_json::Map<String, serde_json::Value>) -> Result<PlanSummary, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(summary.clone()))
    }
}

/// `evaluate.backtest`'s counts as the report reads them; `auto_chose_<method>` (how many
/// series and resources `auto` gave each method) are among the other keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestSummary {
    pub series: u64,
    pub origins: u64,
    pub mase_scaled_by_last_value: u64,
    pub seasonal_naive_fell_back: u64,
    pub filled_actuals_not_scored: u64,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl BacktestSummary {
    /// From a stage record's summary (a JSON object holding these keys among others).
    pub fn read(summary: &serde_json::Map<String, serde_json::Value>) -> Result<BacktestSummary, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(summary.clone()))
    }

    /// Each forecaster `auto` chose somewhere, with how many series and resources it took.
    pub fn auto_chose(&self) -> Vec<(crate::Method, u64)> {
        let count = |m: crate::Method| self.rest.get(&format!("auto_chose_{}", m.name()))?.as_u64();
        crate::Method::FORECASTERS.into_iter().filter_map(|m| Some((m, count(m)?))).collect()
    }
}

/// `clean.resample`'s summary: what cleaning did, for the manifest and the report.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanSummary {
    pub input_points: u64,
    pub non_finite_dropped: u64,
    pub negative_dropped: u64,
    pub input_series: u64,
    /// Series after grouping (pods of one workload count once).
    pub grouped_series: u64,
    /// Grid points holding at least one sample, summed over roles.
    pub grid_points: u64,
    pub filled_points: u64,
    /// Series missing one of the roles entirely.
    pub series_without_all_roles: u64,
    /// Segments before the filters; more than the series where long gaps split them.
    pub segments: u64,
    pub trimmed_points: u64,
    pub short_segments_dropped: u64,
    pub zero_series_dropped: u64,
    pub constant_series_dropped: u64,
    pub series: u64,
    pub output_segments: u64,
    pub points: u64,
    /// Requests, limits and pain series (the `allocation` table), those matching no usage
    /// series or several (left out), and the rows written.
    pub allocation_series: u64,
    pub allocation_series_without_usage: u64,
    pub allocation_series_ambiguous: u64,
    pub allocation_points: u64,
    /// kube-state-metrics' `kube_pod_owner` links, those naming pods without usage, and the
    /// workloads whose pods name no owner or several (left unresolved, never guessed).
    pub owner_series: u64,
    pub owner_series_without_usage: u64,
    pub workloads_without_owner: u64,
    /// HPAs attached to the workloads they scale, those whose target has no usage, and the
    /// namespaces with quotas but no workloads.
    pub hpas: u64,
    pub hpas_without_usage: u64,
    pub quota_namespaces_without_workloads: u64,
    /// Series of the model inputs (`inputs:`), those matching no usage series or several
    /// (left out), the counter resets in rate inputs, and the series cleaned without one
    /// input or more (0 there, flagged filled).
    pub covariate_series: u64,
    pub covariate_series_without_usage: u64,
    pub covariate_series_ambiguous: u64,
    pub covariate_counter_resets: u64,
    pub series_without_an_input: u64,
    /// Per input, the series without it: said in the warnings (a shard's numbers add up,
    /// a map would not).
    #[serde(skip)]
    pub without_input: std::collections::BTreeMap<String, u64>,
}

impl CleanSummary {
    /// From a stage record's summary (a JSON object holding these keys among others).
    pub fn read(summary: &serde_json::Map<String, serde_json::Value>) -> Result<CleanSummary, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(summary.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_an_error_naming_it() {
        let mut summary =
            serde_json::to_value(PlanSummary { max_changes_per_day: 24, savings: PlanSavings::default() })
                .unwrap()
                .as_object()
                .unwrap()
                .clone();
        summary.insert("other".into(), 1.into());
        assert_eq!(PlanSummary::read(&summary).unwrap().max_changes_per_day, 24);
        summary.remove("flagged_hpa");
        assert!(PlanSummary::read(&summary).unwrap_err().to_string().contains("flagged_hpa"));
    }

    #[test]
    fn the_backtest_counts_read_back_with_what_auto_chose_in_the_forecasters_order() {
        let summary = serde_json::json!({"series": 4, "origins": 90, "mase_scaled_by_last_value": 0,
            "seasonal_naive_fell_back": 2, "filled_actuals_not_scored": 1, "auto_chose_moving_average": 1,
            "auto_chose_model": 3, "retrain": false});
        let read = BacktestSummary::read(summary.as_object().unwrap()).unwrap();
        assert_eq!(read.auto_chose(), [(crate::Method::Model, 3), (crate::Method::MovingAverage, 1)]);
        let mut renamed = summary.as_object().unwrap().clone();
        renamed.remove("origins");
        assert!(BacktestSummary::read(&renamed).unwrap_err().to_string().contains("origins"));
    }
}
