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

    // A request sized on p90, which a point model does not forecast: named, with what it
    // does forecast.
    let out = run("p90", &["plan.cpu={source: p90, margin: 0.1}"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cpu.source `p90`: the model forecasts [point]"), "{stderr}");

    // Sized by risk (the default), from the point forecast and the recent history.
    let out = run("point", &[]);
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
    "model_mase": q("select value from 'D/evaluate/scores.parquet' where part = 'test' and method = 'model' and scope = 'median' and bucket = 'all' and metric = 'mase'")[0][0],
    "validation_methods": q("select count(distinct method) from 'D/evaluate/scores.parquet' where part = 'validation'")[0][0],
    "buckets": q("select distinct bucket from 'D/evaluate/scores.parquet' where step = 0 order by 1"),
    "choices": q("select count(*), count(distinct method) > 0 from 'D/evaluate/choices.parquet'")[0],
    "auto_is_chosen": q("""select count(*) from 'D/evaluate/choices.parquet' c join 'D/evaluate/forecasts.parquet' a
        on a.key = c.key and a.resource = c.resource and a.part = 'test' and a.method = 'auto'
        join 'D/evaluate/forecasts.parquet' m on m.key = a.key and m.resource = a.resource and m.part = 'test'
        and m.method = c.method and m.origin = a.origin and m.step = a.step where m.forecast <> a.forecast""")[0][0],
    "per_step": q("select count(distinct step) from 'D/evaluate/scores.parquet' where scope = 'mean'")[0][0],
    "mae_recomputed": q("""select count(*), max(abs(s.value - f.mae)), max(s.value) from (select key, resource,
        avg(abs(forecast - actual)) mae from 'D/evaluate/forecasts.parquet' where part = 'test' and method = 'model'
        and not isnan(actual) group by key, resource) f join 'D/evaluate/scores.parquet' s on s.key = f.key
        and s.resource = f.resource and s.part = 'test' and s.method = 'model' and s.scope = 'series'
        and s.bucket = 'all' and s.metric = 'mae' and s.step = 0""")[0],
    "lines": q("select distinct line from 'D/plan/plan_backtest.parquet'"),
    "calibrated": q("select count(*) from 'D/plan/plan_backtest.parquet' where method = 'model' and variant = 'calibrated' and key = ''")[0][0],
    "methods_replayed": q("select distinct method from 'D/plan/plan_backtest.parquet' order by 1"),
    "comparison": q("select line, changes_per_day_allowed from 'D/plan/plan_comparison.parquet' order by 2"),
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
    // auto, the model, its blend with a baseline, four baselines, VPA and KRR; auto is not
    // scored on the validation part it was chosen on.
    assert_eq!(got["methods"], 9);
    assert_eq!(got["validation_methods"], 8);
    // 10 minutes ahead: all steps, and the one bucket the horizon reaches.
    assert_eq!(got["buckets"], serde_json::json!([["1h"], ["all"]]));
    // One choice per series, and auto forecasts exactly as the method chosen for it.
    assert!(got["choices"][0].as_i64().unwrap() > 0 && got["choices"][1] == true, "{got}");
    assert_eq!(got["auto_is_chosen"], 0);
    // Each series' MAE as scored equals DuckDB's from the forecasts the backtest wrote.
    let mae = &got["mae_recomputed"];
    assert_eq!(mae[0], 53, "{got}");
    assert!(mae[1].as_f64().unwrap() <= 1e-9 * mae[2].as_f64().unwrap(), "{got}");
    let mase = got["model_mase"].as_f64().unwrap();
    assert!(mase.is_finite() && (0.05..3.0).contains(&mase), "{got}");
    // All steps together (0) and each of the 10 steps.
    assert_eq!(got["per_step"], 11);
    // CPU only: its request line (no CPU limit unless asked), on budgets 1, 4 and 24.
    assert_eq!(got["lines"], serde_json::json!([["cpu_request"]]));
    assert_eq!(got["calibrated"], 3);
    assert_eq!(got["methods_replayed"], serde_json::json!([["krr"], ["model"], ["oracle"], ["vpa"]]));
    assert_eq!(got["comparison"], serde_json::json!([["cpu_request", 1], ["cpu_request", 4], ["cpu_request", 24]]));
    let columns: Vec<&str> = got["plan_columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(columns.contains(&"cpu_request_cores") && !columns.contains(&"memory_request_bytes"), "{columns:?}");

    // The patches set CPU only; the report shows CPU only.
    let patches = std::fs::read_to_string(run_dir.join("plan/patches.yaml")).unwrap();
    assert!(patches.contains("              cpu: ") && !patches.contains("memory:"), "{patches}");
    let html = std::fs::read_to_string(run_dir.join("report/report.html")).unwrap();
    assert!(html.contains("id=\"chart-tradeoff-cpu_request\"") && !html.contains("id=\"chart-tradeoff-memory"));

    // Forecasts made elsewhere are scored by the same code on the same origins: a copy of
    // the last-value forecasts under another name scores exactly as the last value.
    let external = dir.path().join("external.parquet");
    let copy = format!(
        "import duckdb; duckdb.connect().execute(\"copy (select key, resource, origin, step, 'copied' as method, forecast \
         from '{}/evaluate/forecasts.parquet' where part = 'test' and method = 'last_value') to '{}'\")",
        run_dir.display(),
        external.display()
    );
    let out = Command::new("python3").args(["-c", &copy]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One series at a time (a group each): the same forecasts and scores as all at once.
    let set = format!("evaluate.external={}", external.display());
    let out = run("external", &[&set, "evaluate.windows_per_group=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compare = format!(
        "import duckdb; print(duckdb.connect().execute(\"select count(*), count(*) filter (where a.value is not distinct from b.value) \
         from '{0}/evaluate/scores.parquet' a join '{0}/evaluate/scores.parquet' b using (part, resource, scope, key, bucket, step, metric) \
         where a.method = 'copied' and b.method = 'last_value'\").fetchall()[0])",
        store.join("external").display()
    );
    let out = Command::new("python3").args(["-c", &compare]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (rows, same) = text.trim().trim_matches(|c| c == '(' || c == ')').split_once(", ").unwrap();
    assert!(rows.parse::<u32>().unwrap() > 10 && rows == same, "{text}");
    let same = r#"
import duckdb, sys
c = duckdb.connect()
q = lambda run, t, w: f"select * from '{sys.argv[1]}/{run}/evaluate/{t}.parquet' where {w}"
for t, w in [("forecasts", "true"), ("scores", "method <> 'copied'")]:
    a, b = q("point", t, "true"), q("external", t, w)
    print(t, c.execute(f"select (select count(*) from (({a}) except all ({b}))), (select count(*) from (({b}) except all ({a})))").fetchone())
"#;
    let out = Command::new("python3").args(["-c", same, store.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "forecasts (0, 0)\nscores (0, 0)\n", "{}", String::from_utf8_lossy(&out.stderr));
    // And it stands in the report's leaderboard beside ours.
    let report = std::fs::read_to_string(store.join("external/report/report.md")).unwrap();
    assert!(report.lines().any(|l| l.starts_with("| copied |")), "{report}");
}

/// Four VMs with their provisioned requests and limits (the shipped bitbrains slice, whose
/// memory allocation changes mid-window in two), one of them also exported as a node (its
/// usage under node_exporter-style names and `instance` labels), and a request for a VM that
/// has no usage: every step from ingest to the plan's table.
#[test]
#[ignore = "full tier: needs DuckDB; .ci/run installs it and runs it"]
fn a_cluster_with_its_allocation_and_a_node_is_planned_beside_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let slice = |f: &str| format!("data/bitbrains-rnd/query_range/{f}");
    // vm-0018's real usage as a node's, and a VM that only has a request.
    let mut extra = String::from("# TYPE node_cpu_usage_cores gauge\n");
    let answer = |f: &str| -> serde_json::Value {
        let mut text = String::new();
        let gz = std::fs::read(format!("{}/20130708T000000Z_20130710T000000Z.json.gz", slice(f))).unwrap();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    for (folder, name) in [("cpu_cores", "node_cpu_usage_cores"), ("memory_bytes", "node_memory_working_set_bytes")] {
        if name.starts_with("node_memory") {
            extra.push_str(&format!("# TYPE {name} gauge\n"));
        }
        let a = answer(folder);
        let vm = a["data"]["result"].as_array().unwrap().iter().find(|s| s["metric"]["pod"] == "vm-0018").unwrap();
        for p in vm["values"].as_array().unwrap() {
            let (t, v) = (p[0].as_i64().unwrap() * 1000, p[1].as_str().unwrap());
            extra.push_str(&format!("{name}{{instance=\"vm-0018:9100\",job=\"node\"}} {v} {t}\n"));
        }
    }
    extra.push_str("# TYPE kube_pod_container_resource_requests gauge\n");
    extra.push_str("kube_pod_container_resource_requests{namespace=\"bitbrains-rnd\",pod=\"vm-9999\",container=\"vm\",resource=\"cpu\"} 2 1373241600000\n");
    let extra_file = dir.path().join("node.prom");
    std::fs::write(&extra_file, extra).unwrap();

    let store = dir.path().join("runs");
    let sets = [
        format!("store={}", store.display()),
        format!("ingest.paths=[{}, {}]", slice(""), extra_file.display()),
        "clean.step=5m".into(),
        "clean.max_gap=15m".into(),
        "clean.trim=0".into(),
        "clean.min_points=100".into(),
        "clean.group={by: series}".into(),
        "features.rolling=[6]".into(),
        "features.split={validation: 0.25, test: 0.25}".into(),
        "features.windows={lookback: 12, horizon: 6, stride: 1}".into(),
        "train.init_from=null".into(),
        "train.model={kind: lstm, hidden: 8, layers: 1}".into(),
        "train.train={epochs: 1, max_train_windows: 1000}".into(),
        "evaluate.season=1h".into(),
    ];
    let mut args = vec!["run", "configs/quickstart.yaml", "--run-id", "cluster"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = applearner(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The run ends with the plan's table: current → planned, totals over the allocated.
    assert!(stdout.contains("5 workloads, 4 with an allocation"), "{stdout}");
    assert!(stdout.contains("bitbrains-rnd/vm-0004/vm") && stdout.contains(" → "), "{stdout}");
    assert!(stdout.contains("instance=vm-0018:9100/job=node (node)"), "{stdout}");
    assert!(stdout.contains("total over the 4 with an allocation: cpu requests"), "{stdout}");

    let run_dir = store.join("cluster");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("clean/_stage.json")).unwrap()).unwrap();
    // 4 VMs × 4 lines, and the request of the VM without usage, counted.
    assert_eq!(record["summary"]["allocation_series"], 17);
    assert_eq!(record["summary"]["allocation_series_without_usage"], 1);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("plan/_stage.json")).unwrap()).unwrap();
    let s = &record["summary"];
    assert_eq!(
        (s["workloads_with_allocation"].as_u64(), s["workloads_without_allocation"].as_u64()),
        (Some(4), Some(1))
    );
    // The VMs were provisioned far above their use: the plan gives capacity back.
    assert!(s["planned_cpu_request_cores"].as_f64() < s["current_cpu_request_cores"].as_f64(), "{s}");
    assert!(s["cost_change_per_month"].as_f64().unwrap() < 0.0, "{s}");

    // For machines: every column, one object per workload; the node is planned, not patched.
    let store_arg = store.display().to_string();
    let plan = |format: &str| applearner(&["plan", "cluster", "--store", &store_arg, "-o", format]);
    let json: serde_json::Value = serde_json::from_slice(&plan("json").stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let node = rows.iter().find(|r| r["kind"] == "node").unwrap();
    assert_eq!(node["flags"], "no_allocation");
    assert!(node["current_cpu_request_cores"].is_null() && node["planned_cpu_request_cores"].as_f64() > Some(0.0));
    let vm = rows.iter().find(|r| r["key"] == "bitbrains-rnd/vm-0004/vm").unwrap();
    assert!(vm["current_memory_request_bytes"].as_f64() > Some(0.0) && vm["cost_change_per_month"].is_number(), "{vm}");
    let csv = String::from_utf8(plan("csv").stdout).unwrap();
    assert!(
        csv.starts_with("key,kind,current_cpu_request_cores,planned_cpu_request_cores,") && csv.lines().count() == 6
    );
    let yaml = String::from_utf8(plan("yaml").stdout).unwrap();
    assert_eq!(yaml.matches("kind: node").count(), 1, "{yaml}");
    let patches = std::fs::read_to_string(run_dir.join("plan/patches.yaml")).unwrap();
    assert!(patches.contains("name: vm-0004") && !patches.contains("vm-0018:9100"), "{patches}");

    // The replay scores what each VM had at each step beside the model.
    let comparison = Command::new("python3")
        .args(["-c", "import duckdb, sys; print(duckdb.connect().execute(f\"select count(*) from '{sys.argv[1]}' where current_slack_pct > 0\").fetchall()[0][0])"])
        .arg(run_dir.join("plan/plan_comparison.parquet"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&comparison.stdout).trim().parse::<u32>().unwrap() >= 3, "{comparison:?}");
    let report = std::fs::read_to_string(run_dir.join("report/report.md")).unwrap();
    assert!(
        report.contains("## What is allocated now, and what the plan changes") && report.contains("4 of 5 workloads")
    );
}
