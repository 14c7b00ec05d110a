//! evaluate.backtest, plan.resources and report.html beyond the quickstart: a univariate
//! point model (CPU only, no quantiles) planned from its point forecast, and the tables read
//! by DuckDB.

use std::process::Command;

use crate::support::applearner;

/// A small CPU-only model trained with MSE: it forecasts `point` and nothing else.
const CPU_POINT: &[&str] = &[
    "train.init_from=null",
    "train.targets=[cpu]",
    "train.model={kind: lstm, hidden: 8, layers: 1}",
    "train.loss={kind: mse}",
    "train.train={epochs: 1, max_train_windows: 1000}",
];

#[test]
#[ignore = "full tier: needs DuckDB; .ci/run installs it and runs it"]
fn a_cpu_only_point_model_is_backtested_planned_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs");
    let store_set = format!("store={}", store.display());
    let run = |run_id: &str, extra: &[&str]| {
        let mut args = vec!["run", "configs/quickstart.yaml", "--run-id", run_id, "--set", &store_set];
        for s in CPU_POINT.iter().chain(extra) {
            args.extend(["--set", s]);
        }
        applearner(&args)
    };

    // The quickstart sizes CPU on p90, which a point model does not forecast: named, with
    // what it does forecast.
    let out = run("p90", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cpu.source `p90`: the model forecasts [point]"), "{stderr}");

    let out = run("point", &["plan.cpu={source: point, margin: 0.5, min: 1m, step: 1m}"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_dir = store.join("point");

    // DuckDB reads what the stages wrote: scores, the plan backtest and the plan.
    let script = r#"
import duckdb, json, sys
d = sys.argv[1]
con = duckdb.connect()
q = lambda sql: con.execute(sql.replace("D/", d + "/")).fetchall()
print(json.dumps({
    "resources": q("select distinct resource from 'D/evaluate/scores.parquet' order by 1"),
    "methods": q("select count(distinct method) from 'D/evaluate/scores.parquet'")[0][0],
    "model_mase": q("select value from 'D/evaluate/scores.parquet' where method = 'model' and scope = 'median' and step = 0 and metric = 'mase'")[0][0],
    "per_step": q("select count(distinct step) from 'D/evaluate/scores.parquet' where scope = 'mean'")[0][0],
    "backtest": q("select distinct resource from 'D/plan/plan_backtest.parquet'"),
    "default": q("select setting from 'D/plan/plan_backtest.parquet' where method = 'model' and \"default\" = 'yes' and key = ''"),
    "plan_columns": [c[0] for c in con.execute("describe select * from '" + d + "/plan/plan.parquet'").fetchall()],
}))
"#;
    let out = Command::new("python3").args(["-c", script, run_dir.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "python3 with duckdb is needed (`pip install duckdb`, as .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["resources"], serde_json::json!([["cpu"]]));
    // The model, five baselines, VPA and KRR.
    assert_eq!(got["methods"], 7);
    assert!(got["model_mase"].as_f64().unwrap() > 0.0, "{got}");
    // All steps together (0) and each of the 10 steps.
    assert_eq!(got["per_step"], 11);
    assert_eq!(got["backtest"], serde_json::json!([["cpu"]]));
    assert_eq!(got["default"], serde_json::json!([["point+50%"]]));
    let columns: Vec<&str> = got["plan_columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(columns.contains(&"cpu_request_cores") && !columns.contains(&"memory_request_bytes"), "{columns:?}");

    // The patches set CPU only; the report shows CPU only.
    let patches = std::fs::read_to_string(run_dir.join("plan/patches.yaml")).unwrap();
    assert!(patches.contains("              cpu: ") && !patches.contains("memory:"), "{patches}");
    let html = std::fs::read_to_string(run_dir.join("report/report.html")).unwrap();
    assert!(html.contains("id=\"chart-tradeoff-cpu\"") && !html.contains("id=\"chart-tradeoff-memory\""));
}
