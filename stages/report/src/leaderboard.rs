//! The leaderboards: every method's errors on the test part, per resource and by horizon.

use super::*;

/// A row of `scores` of the test part.
pub(crate) struct Score {
    pub(crate) method: String,
    pub(crate) resource: String,
    pub(crate) scope: String,
    pub(crate) key: String,
    /// `all`, a horizon bucket, or empty on a row of one step.
    pub(crate) bucket: String,
    pub(crate) step: i64,
    pub(crate) metric: String,
    pub(crate) value: f64,
}

/// Every method's errors on the test part, per resource and by horizon step.
pub(crate) fn leaderboard_section(
    doc: &mut Doc,
    scores: &[Score],
    resources: &[String],
    (backtest_summary, backtest): (Value, &BacktestSummary),
) -> Result<(), BoxError> {
    doc.html.section(
        "leaderboard",
        "Leaderboard",
        "Every method forecasts from the same origins of the test part. MASE divides each series' MAE by the in-sample error of the seasonal-naive forecast (of the last value where the history holds no season): below 1 beats it. Direction F1: does the forecast rise when usage rises. Auto forecasts each series with the method that was best on its validation part. Every quantile is conformal: shifted by the residuals of its method on the validation part. VPA and KRR are recommenders, not forecasters: they are compared where they belong, as plans, above.",
    );
    let note = backtest_note(backtest);
    doc.html.paragraph(&note);
    let _ = writeln!(doc.md, "{note}\n");
    doc.metrics.insert("backtest".into(), backtest_summary);
    let mut leaderboard = serde_json::Map::new();
    let _ = writeln!(doc.md, "\n## Leaderboard (test part, median over series unless said)\n");
    for resource in resources {
        leaderboard.insert(resource.clone(), resource_leaderboard(doc, scores, resource)?);
    }
    doc.metrics.insert("leaderboard".into(), Value::Object(leaderboard));
    Ok(())
}

/// The backtest's counts and what `auto` chose, in a sentence.
fn backtest_note(b: &BacktestSummary) -> String {
    let chose: Vec<String> = b.auto_chose().iter().map(|(m, n)| format!("{} {n}", m.label())).collect();
    format!(
        "{} origins over {} series. Auto chose, per series and resource: {}. MASE used the last-value scale for {} series with no point a season earlier in sample; seasonal naive fell back to the last value for {} forecast steps with no value a season before; {} filled-in points were not scored.",
        b.origins,
        b.series,
        chose.join(", "),
        b.mase_scaled_by_last_value,
        b.seasonal_naive_fell_back,
        b.filled_actuals_not_scored
    )
}

/// One resource's leaderboard and its accuracy by horizon (tables and chart); the rows as
/// `metrics.json` holds them.
fn resource_leaderboard(doc: &mut Doc, scores: &[Score], resource: &str) -> Result<Value, BoxError> {
    let columns =
        ["mase", "mae", "rmse", "smape", "direction_f1", "pinball", "coverage_p50", "coverage_p90", "coverage_p99"];
    let value = |m: &str, scope: &str, metric: &str| score_of(scores, m, resource, scope, "all", metric);
    // Ours, then any scored from an `external` file (statsforecast's), by name.
    let external: std::collections::BTreeSet<&str> =
        scores.iter().map(|s| s.method.as_str()).filter(|m| Method::parse(m).is_none()).collect();
    let mut methods: Vec<&str> = Method::ALL
        .into_iter()
        .filter(|m| !m.is_recommender())
        .map(|m| m.name())
        .chain(external)
        .filter(|m| value(m, "median", "mase").is_finite() || value(m, "mean", "mae").is_finite())
        .collect();
    methods.sort_by(|a, b| value(a, "median", "mase").total_cmp(&value(b, "median", "mase")));
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for m in &methods {
        let mut row = vec![method_name(m).to_string(), fmt(value(m, "mean", "mase"))];
        let mut j = serde_json::Map::new();
        j.insert("method".into(), (*m).into());
        j.insert("mase_mean".into(), num(value(m, "mean", "mase")));
        for c in columns {
            row.push(fmt(value(m, "median", c)));
            j.insert(c.into(), num(value(m, "median", c)));
        }
        rows.push(row);
        json_rows.push(Value::Object(j));
    }
    let headers = [
        "method",
        "MASE (mean)",
        "MASE",
        "MAE",
        "RMSE",
        "sMAPE %",
        "direction F1",
        "pinball",
        "cover p50",
        "cover p90",
        "cover p99",
    ];
    doc.titled_table(resource, &headers, &rows);
    horizon_table(doc, scores, resource, &methods);
    horizon_chart(doc, scores, resource, &methods)?;
    Ok(Value::Array(json_rows))
}

/// One score of the test part; NaN where it was not scored.
fn score_of(scores: &[Score], method: &str, resource: &str, scope: &str, bucket: &str, metric: &str) -> f64 {
    scores
        .iter()
        .find(|s| {
            s.method == method && s.resource == resource && s.scope == scope && s.bucket == bucket && s.metric == metric
        })
        .map_or(f64::NAN, |s| s.value)
}

/// Accuracy by how far ahead: each method's mean MASE in the buckets the horizon reaches.
fn horizon_table(doc: &mut Doc, scores: &[Score], resource: &str, methods: &[&str]) {
    let mase = |m: &str, bucket: &str| score_of(scores, m, resource, "mean", bucket, "mase");
    let buckets: Vec<&str> =
        ["1h", "6h", "1d", "more"].into_iter().filter(|b| methods.iter().any(|m| mase(m, b).is_finite())).collect();
    let rows: Vec<Vec<String>> = methods
        .iter()
        .map(|m| std::iter::once(method_name(m).to_string()).chain(buckets.iter().map(|b| fmt(mase(m, b)))).collect())
        .collect();
    let headers: Vec<String> = std::iter::once("method".to_string())
        .chain(buckets.iter().map(|b| format!("MASE (mean), up to {b} ahead")))
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    doc.titled_table(&format!("{resource} by horizon"), &headers, &rows);
}

/// Each method's median MASE by horizon step, for one resource.
fn horizon_chart(doc: &mut Doc, scores: &[Score], resource: &str, methods: &[&str]) -> Result<(), BoxError> {
    let steps: i64 = scores.iter().map(|s| s.step).max().unwrap_or(0);
    let lines = methods
        .iter()
        .map(|m| Line {
            name: method_name(m).into(),
            color: color(m),
            points: (1..=steps)
                .map(|st| {
                    (
                        st as f64,
                        scores
                            .iter()
                            .find(|s| {
                                &s.method == m
                                    && s.resource == resource
                                    && s.scope == "median"
                                    && s.step == st
                                    && s.metric == "mase"
                            })
                            .map_or(f64::NAN, |s| s.value),
                    )
                })
                .collect(),
            markers: true,
            bold: *m == Method::Model.name(),
        })
        .collect();
    doc.html.chart(
        &format!("horizon-{resource}"),
        &Chart {
            title: format!("{resource}: median MASE by horizon step"),
            x_label: "steps ahead".into(),
            y_label: "MASE".into(),
            time_x: false,
            log_x: false,
            lines,
            bands: vec![],
        },
        "The original project reported errors per forecast length: how fast each method degrades further ahead.",
    )?;
    Ok(())
}

pub(crate) fn read_scores(batches: &[RecordBatch]) -> Result<Vec<Score>, BoxError> {
    let c = Cols { batches, table: scores::NAME };
    let (method, resource, scope) =
        (c.strings(scores::METHOD)?, c.strings(scores::RESOURCE)?, c.strings(scores::SCOPE)?);
    let (key, metric) = (c.strings(scores::KEY)?, c.strings(scores::METRIC)?);
    let (step, value) = (c.ints(scores::STEP)?, c.floats(scores::VALUE)?);
    let (part, bucket) = (c.strings(scores::PART)?, c.strings(scores::BUCKET)?);
    Ok((0..method.len())
        .filter(|&i| part[i] == "test")
        .map(|i| Score {
            method: method[i].clone(),
            resource: resource[i].clone(),
            scope: scope[i].clone(),
            key: key[i].clone(),
            bucket: bucket[i].clone(),
            step: step[i],
            metric: metric[i].clone(),
            value: value[i],
        })
        .collect())
}
