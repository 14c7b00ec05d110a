//! The plan stage's tables: the plan backtest, the comparison at matched risk and the plan ahead.

use super::*;
use applearner_contracts::tables::{plan as pt, plan_backtest as pb, plan_comparison as pc};

pub(super) fn backtest_table(
    settings: &[Setting],
    totals: &BTreeMap<(usize, &str), Replay>,
    per_series: &BTreeMap<(usize, &str, String), Replay>,
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let mut c = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut v: [Vec<f64>; 7] = Default::default();
    let rows = totals
        .iter()
        .map(|((s, r), x)| (*s, *r, String::new(), x))
        .chain(per_series.iter().map(|((s, r, k), x)| (*s, *r, k.clone(), x)));
    for (s, resource, key, x) in rows {
        c.0.push(settings[s].method.to_string());
        c.1.push(settings[s].label.clone());
        c.2.push(if settings[s].default[usize::from(resource == "memory")] { "yes" } else { "no" }.to_string());
        c.3.push(resource.to_string());
        c.4.push(key);
        for (slot, value) in v.iter_mut().zip([
            x.provisioned,
            x.used,
            x.slack,
            x.slack_pct(),
            x.under_pct(),
            x.under_steps as f64,
            x.changes as f64,
        ]) {
            slot.push(value);
        }
    }
    let [provisioned, used, slack, slack_pct, under_pct, under_steps, changes] = v;
    TableBuilder::default()
        .strings(pb::METHOD, c.0)
        .strings(pb::SETTING, c.1)
        .strings(pb::DEFAULT, c.2)
        .strings(pb::RESOURCE, c.3)
        // Empty: all series together.
        .strings(pb::KEY, c.4)
        // Core-hours for CPU, GiB-hours for memory.
        .floats(pb::PROVISIONED_HOURS, provisioned)
        .floats(pb::USED_HOURS, used)
        .floats(pb::SLACK_HOURS, slack)
        .floats(pb::SLACK_PCT, slack_pct)
        .floats(pb::UNDER_PROVISIONED_PCT, under_pct)
        .floats(pb::UNDER_PROVISIONED_STEPS, under_steps)
        .floats(pb::CHANGES, changes)
        .finish()
}

pub struct Comparison {
    pub resource: &'static str,
    pub baseline: &'static str,
    pub baseline_under: f64,
    pub baseline_slack: f64,
    pub model_slack: Option<f64>,
}

pub(super) fn comparison_table(
    settings: &[Setting],
    totals: &BTreeMap<(usize, &str), Replay>,
) -> Result<(SchemaRef, RecordBatch, Vec<Comparison>), BoxError> {
    let mut out = Vec::new();
    for resource in ["cpu", "memory"] {
        let curve: Vec<(f64, f64)> = totals
            .iter()
            .filter(|((s, r), _)| *r == resource && settings[*s].method == "model")
            .map(|(_, x)| (x.under_pct(), x.slack_pct()))
            .collect();
        for baseline in ["vpa", "krr"] {
            let Some((_, x)) = totals
                .iter()
                .find(|((s, r), _)| *r == resource && settings[*s].method == baseline && settings[*s].default[0])
            else {
                continue;
            };
            out.push(Comparison {
                resource,
                baseline,
                baseline_under: x.under_pct(),
                baseline_slack: x.slack_pct(),
                model_slack: slack_at(&curve, x.under_pct()),
            });
        }
    }
    let (schema, batch) = TableBuilder::default()
        .strings(pc::RESOURCE, out.iter().map(|c| c.resource.to_string()).collect())
        .strings(pc::BASELINE, out.iter().map(|c| c.baseline.to_string()).collect())
        .floats(pc::BASELINE_UNDER_PROVISIONED_PCT, out.iter().map(|c| c.baseline_under).collect())
        .floats(pc::BASELINE_SLACK_PCT, out.iter().map(|c| c.baseline_slack).collect())
        // Null where the model's curve does not reach that under-provisioned time.
        .floats(pc::MODEL_SLACK_PCT, out.iter().map(|c| c.model_slack.unwrap_or(f64::NAN)).collect())
        .finish()?;
    Ok((schema, batch, out))
}

pub(super) fn plan_table(plan: &[WorkloadPlan]) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let rows: Vec<(&WorkloadPlan, &Planned)> =
        plan.iter().flat_map(|w| w.intervals.iter().map(move |i| (w, i))).collect();
    let mut t = TableBuilder::default()
        .strings(pt::KEY, rows.iter().map(|(w, _)| w.key.clone()).collect())
        .strings(pt::NAMESPACE, rows.iter().map(|(w, _)| w.namespace.clone()).collect())
        .strings(pt::WORKLOAD, rows.iter().map(|(w, _)| w.workload.clone()).collect())
        .strings(pt::CONTAINER, rows.iter().map(|(w, _)| w.container.clone()).collect())
        .times(pt::FROM, rows.iter().map(|(_, i)| i.from).collect())
        .times(pt::UNTIL, rows.iter().map(|(_, i)| i.until).collect());
    // Columns only for the resources planned.
    if rows.iter().any(|(_, i)| i.requests[0].is_some()) {
        t = t.floats(pt::CPU_REQUEST_CORES, rows.iter().map(|(_, i)| i.requests[0].unwrap_or(f64::NAN)).collect());
    }
    if rows.iter().any(|(_, i)| i.requests[1].is_some()) {
        t = t
            .floats(pt::MEMORY_REQUEST_BYTES, rows.iter().map(|(_, i)| i.requests[1].unwrap_or(f64::NAN)).collect())
            .floats(pt::MEMORY_LIMIT_BYTES, rows.iter().map(|(_, i)| i.limit.unwrap_or(f64::NAN)).collect());
    }
    t.finish()
}
