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
}
