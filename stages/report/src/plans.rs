//! The report's lead: the plan at the risk the user stated, measured on the test part against
//! KRR and VPA (at their defaults and tuned to the same risk on validation) and the oracle;
//! how risk spreads across workloads; the trade-off curves; the plan ahead.

use super::*;
use applearner_contracts::Line as PlanLine;
use applearner_contracts::summaries::PlanSavings;
use applearner_contracts::tables::plan_risk;

/// One row of `plan_comparison`.
struct Compared {
    line: String,
    budget: i64,
    target: f64,
    /// Per method of `pc::METHODS`: (risk %, slack %, changes per workload-day).
    methods: Vec<(f64, f64, f64)>,
    best_tuned: String,
    vs_tuned: f64,
    vs_oracle: f64,
    gap_closed: f64,
}

impl Compared {
    fn read(batches: &[RecordBatch]) -> Result<Vec<Compared>, BoxError> {
        let c = Cols { batches, table: pc::NAME };
        let (line, budget, target) = (c.strings(pc::LINE)?, c.ints(pc::BUDGET)?, c.floats(pc::TARGET_PCT)?);
        let mut methods = Vec::new();
        for m in pc::METHODS {
            let col = |suffix: &str| c.floats(&format!("{m}{suffix}"));
            methods.push((col(pc::RISK_PCT)?, col(pc::SLACK_PCT)?, col(pc::CHANGES_PER_DAY)?));
        }
        let (best, vs_tuned) = (c.strings(pc::BEST_TUNED)?, c.floats(pc::SLACK_VS_BEST_TUNED)?);
        let (vs_oracle, gap) = (c.floats(pc::SLACK_VS_ORACLE)?, c.floats(pc::GAP_CLOSED)?);
        Ok((0..line.len())
            .map(|i| Compared {
                line: line[i].clone(),
                budget: budget[i],
                target: target[i],
                methods: methods.iter().map(|(r, s, ch)| (r[i], s[i], ch[i])).collect(),
                best_tuned: best[i].clone(),
                vs_tuned: vs_tuned[i],
                vs_oracle: vs_oracle[i],
                gap_closed: gap[i],
            })
            .collect())
    }

    fn method(&self, name: &str) -> (f64, f64, f64) {
        pc::METHODS.iter().position(|m| *m == name).map_or((f64::NAN, f64::NAN, f64::NAN), |i| self.methods[i])
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{v:.2}") } else { "–".into() }
}

/// `41.2 (0.93 %)`: slack %, with the risk it ran at.
fn slack_risk(m: (f64, f64, f64)) -> String {
    if m.1.is_finite() { format!("{:.1} ({} %)", m.1, pct(m.0)) } else { "–".into() }
}

fn ratio(v: f64) -> String {
    if v.is_finite() { format!("{v:.2}×") } else { "–".into() }
}

/// The lead section: the configured budget's outcome per line, then every budget.
pub(super) fn plans_section(
    doc: &mut Doc,
    backtest: &[RecordBatch],
    comparison: &[RecordBatch],
    summary: &Value,
    plan: &PlanSummary,
) -> Result<(), BoxError> {
    let configured = i64::from(plan.max_changes_per_day);
    let compared = Compared::read(comparison)?;
    doc.html.section(
        "plans",
        "Plans at the risk you stated",
        "Each line (a request: capacity reserved; a limit: where CPU is throttled and memory is OOM-killed) is sized so that usage sits above it at most the stated share of time. The factors were calibrated on the validation part; everything here is measured on the test part, which nothing was chosen on. KRR and VPA run with the same change budget, at their defaults and with their knob (KRR's CPU percentile or memory buffer, VPA's margin) tuned on the validation part to the same risk. The oracle knows the test part's usage: the least slack any plan with that change budget can have at that risk. Slack: reserved minus used, as % of reserved.",
    );
    lead_table(doc, &compared, configured);
    calibration_notes(doc, summary);
    budgets_table(doc, &compared);
    spread_table(doc, backtest, configured)?;
    curves(doc, backtest, configured)?;
    doc.metrics.insert(
        "plans".into(),
        json!(compared.iter().map(|c| {
            let mut j = json!({"line": c.line, "changes_per_day_allowed": c.budget, "target_pct": num(c.target), "best_tuned": c.best_tuned, "slack_vs_best_tuned": num(c.vs_tuned), "slack_vs_oracle": num(c.vs_oracle), "gap_closed": num(c.gap_closed)});
            for (m, (r, s, ch)) in pc::METHODS.iter().zip(&c.methods) {
                j[*m] = json!({"risk_pct": num(*r), "slack_pct": num(*s), "changes_per_day": num(*ch)});
            }
            j
        }).collect::<Vec<_>>()),
    );
    Ok(())
}

/// The configured budget's outcome per line, beside every recommender and the oracle.
fn lead_table(doc: &mut Doc, compared: &[Compared], configured: i64) {
    let lead: Vec<Vec<String>> = compared
        .iter()
        .filter(|c| c.budget == configured)
        .map(|c| {
            let model = c.method("model");
            vec![
                c.line.clone(),
                pct(c.target),
                pct(model.0),
                format!("{:.1}", model.1),
                format!("{:.2}", model.2),
                slack_risk(c.method("current")),
                slack_risk(c.method("krr")),
                slack_risk(c.method("krr_tuned")),
                slack_risk(c.method("vpa")),
                slack_risk(c.method("vpa_tuned")),
                slack_risk(c.method("oracle")),
                ratio(c.vs_tuned),
                pct(100.0 * c.gap_closed),
            ]
        })
        .collect();
    let headers = [
        "line",
        "target %",
        "risk % (test)",
        "slack %",
        "changes / workload-day",
        "allocated now",
        "KRR default",
        "KRR tuned",
        "VPA default",
        "VPA tuned",
        "oracle",
        "slack vs best tuned",
        "gap to oracle closed %",
    ];
    doc.html.h3(&format!("With at most {configured} change(s) per day (slack %, risk % in brackets)"));
    doc.html.table(&headers, &lead);
    let _ = writeln!(doc.md, "\n## Plans at the risk you stated ({configured} change(s) per day)\n");
    md_table(&mut doc.md, &headers, &lead);
}

/// Which rule each line uses, and what calibration could not do: workloads planned with the
/// fleet's factor (no validation data) and workloads no factor brings to the target.
fn calibration_notes(doc: &mut Doc, summary: &Value) {
    let Some(map) = summary.as_object() else { return };
    let mut notes = Vec::new();
    for (key, value) in map {
        if let Some(line) = key.strip_suffix("_rule") {
            notes.push(format!("{line} = {}", value.as_str().unwrap_or("")));
        }
        if let (Some(line), Some(n)) = (key.strip_suffix("_uncalibrated_workloads"), value.as_u64())
            && n > 0
        {
            notes.push(format!("{line}: {n} workload(s) without validation data use the fleet's factor"));
        }
        if let (Some(line), Some(misses)) = (key.strip_suffix("_missing_target"), value.as_array())
            && !misses.is_empty()
        {
            let list: Vec<&str> = misses.iter().filter_map(Value::as_str).collect();
            notes.push(format!("{line}: {} workload(s) miss the target: {}", list.len(), list.join("; ")));
        }
    }
    let text = format!("Lines (k: the factor calibrated on the validation part): {}.", notes.join(". "));
    doc.html.paragraph(&text);
    let _ = writeln!(doc.md, "\n{text}\n");
}

/// Every change budget: the model against the better tuned recommender and the oracle.
fn budgets_table(doc: &mut Doc, compared: &[Compared]) {
    let rows: Vec<Vec<String>> = compared
        .iter()
        .map(|c| {
            let (model, best, oracle) = (c.method("model"), c.method(&c.best_tuned), c.method("oracle"));
            vec![
                c.line.clone(),
                c.budget.to_string(),
                pct(c.target),
                slack_risk(model),
                format!("{} {}", method_name(c.best_tuned.trim_end_matches("_tuned")), slack_risk(best)),
                slack_risk(oracle),
                ratio(c.vs_tuned),
                ratio(c.vs_oracle),
                pct(100.0 * c.gap_closed),
                format!("{} / {}", pct(model.2), pct(best.2)),
            ]
        })
        .collect();
    let headers = [
        "line",
        "changes / day allowed",
        "target %",
        "AppLearner",
        "best tuned recommender",
        "oracle",
        "× best tuned",
        "× oracle",
        "gap closed %",
        "changes / workload-day (AppLearner / recommender)",
    ];
    doc.titled_table("Per change budget", &headers, &rows);
}

/// How the realized risk spreads across workloads (the configured budget): the loop whose
/// factor adapts online beside the fixed calibrated factors.
fn spread_table(doc: &mut Doc, backtest: &[RecordBatch], configured: i64) -> Result<(), BoxError> {
    let b = Cols { batches: backtest, table: pb::NAME };
    let (line, budget, method, key) =
        (b.strings(pb::LINE)?, b.ints(pb::BUDGET)?, b.strings(pb::METHOD)?, b.strings(pb::KEY)?);
    let (variant, target, risk) = (b.strings(pb::VARIANT)?, b.floats(pb::TARGET_PCT)?, b.floats(pb::RISK_PCT)?);
    const VARIANTS: [(&str, &str); 2] = [("adapted", "adapted online"), ("calibrated", "fixed factor")];
    let mut by_line: BTreeMap<(&str, usize), (f64, Vec<f64>)> = BTreeMap::new();
    for i in
        (0..line.len()).filter(|&i| budget[i] == configured && method[i] == Method::Model.name() && !key[i].is_empty())
    {
        let Some(v) = VARIANTS.iter().position(|v| v.0 == variant[i]) else { continue };
        let e = by_line.entry((&line[i], v)).or_insert((target[i], Vec::new()));
        e.1.push(risk[i]);
    }
    let rows: Vec<Vec<String>> = by_line
        .into_iter()
        .map(|((l, v), (t, mut r))| {
            r.sort_by(f64::total_cmp);
            let q = |p: f64| r[((r.len() - 1) as f64 * p).round() as usize];
            let over = r.iter().filter(|v| **v > 2.0 * t).count();
            let cells = [pct(t), r.len().to_string(), pct(q(0.5)), pct(q(0.9)), pct(q(1.0)), over.to_string()];
            [l.to_string(), VARIANTS[v].1.to_string()].into_iter().chain(cells).collect()
        })
        .collect();
    let headers = [
        "line",
        "factor",
        "target %",
        "workloads",
        "median risk %",
        "p90 risk %",
        "max risk %",
        "workloads above 2× target",
    ];
    doc.titled_table("Risk across workloads", &headers, &rows);
    Ok(())
}

/// Per line: slack against risk (log scale) for every setting, the chosen ones marked.
fn curves(doc: &mut Doc, backtest: &[RecordBatch], configured: i64) -> Result<(), BoxError> {
    let b = Cols { batches: backtest, table: pb::NAME };
    let (line, budget, method, variant, key) = (
        b.strings(pb::LINE)?,
        b.ints(pb::BUDGET)?,
        b.strings(pb::METHOD)?,
        b.strings(pb::VARIANT)?,
        b.strings(pb::KEY)?,
    );
    let (risk, slack) = (b.floats(pb::RISK_PCT)?, b.floats(pb::SLACK_PCT)?);
    let mut names: Vec<&String> = line.iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        let at = |m: &str, v: &str| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> = (0..line.len())
                .filter(|&i| {
                    &line[i] == name
                        && budget[i] == configured
                        && key[i].is_empty()
                        && method[i] == m
                        && variant[i] == v
                })
                .map(|i| (risk[i], slack[i]))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        };
        let lines = tradeoff_lines(&at);
        doc.html.chart(
            &format!("tradeoff-{name}"),
            &Chart {
                title: format!("{name}: slack against time above the line ({configured} change(s) per day)"),
                x_label: "time above the line, % (log scale)".into(),
                y_label: "slack % of reserved".into(),
                time_x: false,
                log_x: true,
                lines,
                bands: vec![],
            },
            "Lower left is better; operators decide in the left part (≤ 1 %). Curves are drawn on the test part; the marked points were chosen on validation.",
        )?;
    }
    Ok(())
}

/// One line per method's sweep, and a marked point for each chosen or default setting;
/// `at(method, variant)` gives the points.
fn tradeoff_lines(at: &dyn Fn(&str, &str) -> Vec<(f64, f64)>) -> Vec<Line> {
    let mut lines = Vec::new();
    for m in [Method::Model, Method::Krr, Method::Vpa] {
        lines.push(Line {
            name: format!("{} settings", m.label()),
            color: color(m.name()),
            points: at(m.name(), "sweep"),
            markers: true,
            bold: false,
        });
    }
    for (m, v, label) in [
        (Method::Model, "calibrated", "AppLearner, calibrated"),
        (Method::Model, "fixed", "AppLearner, fixed"),
        (Method::Krr, "tuned", "KRR tuned"),
        (Method::Vpa, "tuned", "VPA tuned"),
        (Method::Krr, "default", "KRR default"),
        (Method::Vpa, "default", "VPA default"),
        (Method::Oracle, "oracle", "oracle"),
    ] {
        let points = at(m.name(), v);
        if !points.is_empty() {
            lines.push(Line {
                name: label.into(),
                color: color(m.name()),
                points,
                markers: true,
                bold: v != "default",
            });
        }
    }
    lines
}

/// What is allocated now beside what the plan sets: totals, then the workloads with the
/// largest cost change, their pain signals and flags. Said plainly when the data holds no
/// allocation.
pub(super) fn current_section(doc: &mut Doc, recs: &[RecordBatch], plan: &PlanSummary) -> Result<(), BoxError> {
    let r = Cols { batches: recs, table: rt::NAME };
    let workloads = r.strings(rt::KEY)?.len();
    let with = plan.savings.workloads_with_allocation;
    let intro = current_intro(&plan.savings, workloads);
    doc.html.section("current", "What is allocated now, and what the plan changes", &intro);
    let _ = writeln!(doc.md, "\n## What is allocated now, and what the plan changes\n\n{intro}\n");
    if with == 0 {
        // The plan ahead below lists the planned values; there is nothing to set beside them.
        return Ok(());
    }
    let rows = current_rows(&r, 25)?;
    let headers = [
        "workload",
        "kind",
        "CPU request",
        "memory request",
        "memory limit",
        "Δ cores",
        "Δ GiB",
        "Δ cost / month",
        "allocation changes",
        "OOM kills",
        "throttled %",
        "flags",
    ];
    let title = format!(
        "Largest changes ({} of {workloads}; all in `recommendations.parquet`, or `applearner plan RUN`)",
        rows.len()
    );
    doc.titled_table(&title, &headers, &rows);
    Ok(())
}

/// The section's first paragraph: the totals and flags, or that there is no allocation.
fn current_intro(s: &PlanSavings, workloads: usize) -> String {
    let with = s.workloads_with_allocation;
    if with == 0 {
        return format!(
            "The data holds no allocation series (kube-state-metrics' kube_pod_container_resource_requests and _limits), so this run cannot say what its plan saves: none of the {workloads} workloads has a current request or limit to compare with. Ingest them beside the usage (the default live queries do) to see current → planned, the savings and the flags."
        );
    }
    format!(
        "{with} of {workloads} workloads have an allocation (their latest requests and limits are shown; the replay above used what was allocated at each step). Over those, CPU requests go from {:.2} to {:.2} cores and memory requests from {:.1} to {:.1} GiB: {:+.2} per month at the configured prices. {} workload(s) were OOM-killed, {} throttled above the threshold; {} have a CPU request and {} a memory request below the plan's; usage went above the CPU limit in {} and above the memory limit in {}; {} allocated workload(s) have no plan (no usage left after cleaning).",
        s.current_cpu_request_cores,
        s.planned_cpu_request_cores,
        s.current_memory_request_gib,
        s.planned_memory_request_gib,
        s.cost_change_per_month,
        s.flagged_oom_killed,
        s.flagged_throttled,
        s.flagged_cpu_request_below_plan,
        s.flagged_memory_request_below_plan,
        s.flagged_cpu_above_limit,
        s.flagged_memory_above_limit,
        s.allocated_workloads_not_planned,
    )
}

/// The first `top` recommendations as table cells.
fn current_rows(r: &Cols, top: usize) -> Result<Vec<Vec<String>>, BoxError> {
    let (key, kind, flags) = (r.strings(rt::KEY)?, r.strings(rt::KIND)?, r.strings(rt::FLAGS)?);
    let floats = |name: &str| r.floats(name).unwrap_or_else(|_| vec![f64::NAN; key.len()]);
    let pair = |line: &str, unit: &str, scale: f64, suffix: &str| {
        let (now, planned) =
            (floats(&format!("{}{line}_{unit}", rt::CURRENT)), floats(&format!("{}{line}_{unit}", rt::PLANNED)));
        let show = |v: f64| if v.is_finite() { format!("{:.0}{suffix}", v / scale) } else { "?".into() };
        (0..key.len()).map(|i| format!("{} → {}", show(now[i]), show(planned[i]))).collect::<Vec<_>>()
    };
    let columns = [
        pair(PlanLine::CpuRequest.name(), "cores", 1e-3, "m"),
        pair(PlanLine::MemoryRequest.name(), "bytes", 1048576.0, "Mi"),
        pair(PlanLine::MemoryLimit.name(), "bytes", 1048576.0, "Mi"),
    ];
    let signed = |v: f64| if v.is_finite() { format!("{v:+.2}") } else { "–".into() };
    let changes = [floats(rt::CPU_CHANGE_CORES), floats(rt::MEMORY_CHANGE_GIB), floats(rt::COST_CHANGE_PER_MONTH)];
    let (kills, throttled, moved) = (floats(rt::OOM_KILLS), floats(rt::THROTTLED_PCT), r.ints(rt::ALLOCATION_CHANGES)?);
    Ok((0..key.len().min(top))
        .map(|i| {
            let mut row = vec![key[i].clone(), kind[i].clone()];
            row.extend(columns.iter().map(|c| c[i].clone()));
            row.extend(changes.iter().map(|c| signed(c[i])));
            row.extend([
                moved[i].to_string(),
                format!("{:.0}", kills[i]),
                pct(throttled[i]),
                flags[i].replace(',', ", "),
            ]);
            row
        })
        .collect())
}

/// The plan ahead, one row per workload; returns the rows.
pub(super) fn plan_ahead_section(doc: &mut Doc, plan: &[RecordBatch]) -> Result<usize, BoxError> {
    let p = Cols { batches: plan, table: pt::NAME };
    let (pk, from, until) = (p.strings(pt::KEY)?, p.ints(pt::FROM)?, p.ints(pt::UNTIL)?);
    // Only the lines planned have columns.
    let optional = |name: &str| p.floats(name).unwrap_or_else(|_| vec![f64::NAN; pk.len()]);
    let columns = [
        (pt::CPU_REQUEST_CORES, 1e-3, "m"),
        (pt::CPU_LIMIT_CORES, 1e-3, "m"),
        (pt::MEMORY_REQUEST_BYTES, 1048576.0, "Mi"),
        (pt::MEMORY_LIMIT_BYTES, 1048576.0, "Mi"),
    ];
    let values: Vec<Vec<f64>> = columns.iter().map(|c| optional(c.0)).collect();
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    let rows: Vec<Vec<String>> = (0..pk.len())
        .map(|i| {
            let mut row = vec![pk[i].clone(), time(from[i]), time(until[i])];
            for (c, v) in columns.iter().zip(&values) {
                row.push(if v[i].is_finite() { format!("{:.0}{}", v[i] / c.1, c.2) } else { "–".into() });
            }
            row
        })
        .collect();
    let headers = ["workload", "from (UTC)", "until", "CPU request", "CPU limit", "memory request", "memory limit"];
    doc.html.section(
        "plan",
        "The plan ahead",
        "From the forecast past the end of the data, held until the next change the budget allows. `patches.yaml` and `vpa.yaml` beside this report hold it as Kubernetes objects; on Kubernetes ≥ 1.33 a resize applies in place (kubectl patch pod --subresource resize, or VPA's InPlaceOrRecreate mode), so hourly budgets need no restarts.",
    );
    doc.html.table(&headers, &rows);
    let _ = writeln!(doc.md, "\n## The plan ahead\n");
    md_table(&mut doc.md, &headers, &rows);
    Ok(rows.len())
}

/// Per line and UTC day of the test part, as the plan's loop ran (`plan_risk`): how many
/// workloads it sized, the share within 2× the target and the worst.
pub(super) fn risk_per_day(doc: &mut Doc, risk: &[RecordBatch]) -> Result<(), BoxError> {
    let b = Cols { batches: risk, table: plan_risk::NAME };
    let (line, day, target) = (b.strings(plan_risk::LINE)?, b.ints(plan_risk::DAY)?, b.floats(plan_risk::TARGET_PCT)?);
    let (steps, above) = (b.ints(plan_risk::STEPS)?, b.ints(plan_risk::ABOVE)?);
    // (line, day) → (target, workloads, within 2× the target, worst risk)
    let mut by: BTreeMap<(&str, i64), (f64, usize, usize, f64)> = BTreeMap::new();
    for i in (0..line.len()).filter(|&i| steps[i] > 0) {
        let r = 100.0 * above[i] as f64 / steps[i] as f64;
        let e = by.entry((&line[i], day[i])).or_insert((target[i], 0, 0, 0.0));
        *e = (e.0, e.1 + 1, e.2 + usize::from(r <= 2.0 * target[i]), e.3.max(r));
    }
    let date = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
    };
    let rows: Vec<Vec<String>> = by
        .into_iter()
        .map(|((l, d), (t, n, within, worst))| {
            let share = 100.0 * within as f64 / n as f64;
            vec![l.to_string(), date(d), pct(t), n.to_string(), format!("{share:.0}"), pct(worst)]
        })
        .collect();
    if !rows.is_empty() {
        let headers = ["line", "day (UTC)", "target %", "workloads", "within 2× target %", "worst risk %"];
        doc.titled_table("Risk per day, as the loop ran", &headers, &rows);
    }
    Ok(())
}
