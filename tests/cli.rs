//! The `applearner` binary as users drive it, on the configs and data shipped in the repo.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::s3::S3;
use crate::support::{applearner, applearner_cmd};

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn configs() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("configs/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn every_shipped_config_validates_and_draws() {
    for config in configs() {
        let out = applearner(&["validate", &config]);
        assert!(out.status.success(), "{config}: {:?}", text(&out));
        for format in ["text", "mermaid", "dot"] {
            let out = applearner(&["dag", &config, "--format", format]);
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{config} {format}: {stderr}");
            assert!(stdout.contains("ingest"), "{config} {format}: {stdout}");
        }
    }
}

#[test]
fn validate_reports_every_problem_with_its_position_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "name: bad\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with:\n      path: [x]\n  clean:\n    use: clean.resample\n",
    )
    .unwrap();
    let out = applearner(&["validate", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let shown = config.display().to_string();
    assert!(stderr.contains(&format!("{shown}:6:7: unknown parameter `path` of ingest.prometheus")), "{stderr}");
    assert!(stderr.contains("did you mean `paths`?"), "{stderr}");
    assert!(stderr.contains(&format!("{shown}:8:5: unknown key `use` in stage `clean`")), "{stderr}");
    assert!(stderr.contains(&format!("{shown}:7:3: stage `clean` has no `uses:`")), "{stderr}");
}

/// A `with:` is checked key by key only when its kind refuses it (a config that builds is
/// not slowed by building every kind's schema): so every kind must refuse unknown keys.
#[test]
fn every_kind_names_an_unknown_parameter() {
    let out = applearner(&["stages"]);
    let (stdout, _) = text(&out);
    let kinds: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(".rs)"))
        .map(|l| l.split_once(" (").unwrap().0)
        .collect();
    assert!(kinds.len() >= 7, "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds {
        let config = dir.path().join("typo.yaml");
        std::fs::write(&config, format!("name: typo\nstages:\n  a:\n    uses: {kind}\n    with: {{colour: 1}}\n"))
            .unwrap();
        let out = applearner(&["validate", config.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{kind}: {stderr}");
        assert!(stderr.contains(&format!("5:12: unknown parameter `colour` of {kind}")), "{kind}: {stderr}");
    }
}

#[test]
fn stages_documents_every_kind_and_its_parameters() {
    let out = applearner(&["stages"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("ingest.prometheus (stages/ingest/src/lib.rs)"), "{stdout}");
    // Every kind names the file that implements it, and the file is there.
    for line in stdout.lines().filter(|l| !l.starts_with(' ') && l.ends_with(".rs)")) {
        let file = line.rsplit_once(" (").unwrap().1.trim_end_matches(')');
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(file).is_file(), "{line}");
    }
    assert!(stdout.contains("paths: list of string = []"), "{stdout}");
    assert!(stdout.contains("format: \"auto\" | \"answer\" | \"legacy\" | \"text\" = \"auto\""), "{stdout}");
    // Nested parameters are documented in place.
    assert!(stdout.contains("        url: string (required)"), "{stdout}");
    assert!(stdout.contains("        step: string = \"60s\""), "{stdout}");
    assert!(stdout.contains("Files, folders (read recursively) or glob patterns"), "{stdout}");
    // Tagged choices list every kind with its own fields.
    let out = applearner(&["stages", "train.fit"]);
    let (stdout, _) = text(&out);
    for kind in ["lstm", "gru", "tcn", "nbeats", "dlinear", "deepar"] {
        assert!(stdout.contains(&format!("        kind: {kind}\n")), "{kind}: {stdout}");
    }
    assert!(stdout.contains("Temporal convolutional network"), "{stdout}");
    assert!(stdout.contains("            quantiles: list of number = [0.5,0.9,0.95,0.99]"), "{stdout}");
    let out = applearner(&["stages", "ingest.prometeus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
#[ignore = "full tier: needs an S3 server (moto) and Chromium; .ci/run installs it and runs it"]
fn the_quickstart_runs_caches_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs");
    let store_set = format!("store={}", store.display());
    let run = |run_id: &str| applearner(&["run", "configs/quickstart.yaml", "--set", &store_set, "--run-id", run_id]);

    let out = run("first");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("ingest") && stdout.contains("ran in"), "{stdout}");
    let manifest = |id: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(store.join(format!("{id}/manifest.json"))).unwrap()).unwrap()
    };
    let first = manifest("first");
    let summary = &first["stages"][0]["summary"];
    // data/README.md: 103 series and 94,451 points per metric.
    assert_eq!(summary["series"], 206);
    assert_eq!(summary["points"], 2 * 94_451);
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["overrides"][0], store_set.as_str());

    let out = run("second");
    let (stdout, _) = text(&out);
    assert!(stdout.contains("cached (from run first)"), "{stdout}");

    // A clean run in a fresh store on object storage (a real S3-compatible server, the
    // credentials from the environment) gives the same bytes.
    let s3 = S3::start("applearner");
    let s3_store = s3.url("team/runs");
    let out = applearner_cmd(
        &["run", "configs/quickstart.yaml", "--set", &format!("store={s3_store}"), "--run-id", "x"],
        &s3.env(),
    )
    .output()
    .unwrap();
    let (_, run_log) = text(&out);
    assert!(out.status.success(), "{run_log}");
    let fresh: serde_json::Value = serde_json::from_slice(&s3.get("team/runs/x/manifest.json")).unwrap();
    assert_eq!(
        s3.get("team/runs/x/report/report.html"),
        std::fs::read(store.join("first/report/report.html")).unwrap(),
        "the report on S3 is the local one"
    );
    let out = applearner_cmd(&["verify", "x", "--store", &s3_store], &s3.env()).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("artifacts match their manifest"), "{stdout}{stderr}");
    let manifest = String::from_utf8(s3.get("team/runs/x/manifest.json")).unwrap();
    let lock = String::from_utf8(s3.get("team/runs/x/config.lock.yaml")).unwrap();
    for (key, value) in s3.env() {
        if key.contains("SECRET") || key.contains("KEY_ID") {
            assert!(![&manifest, &lock, &run_log].iter().any(|t| t.contains(&value)), "{key} leaked");
        }
    }
    // Every stage: ingest, DataFusion's cleaning and features, training (seeded, on the
    // CPU), the backtest, the plans and the report, bit for bit.
    let stages = first["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest", "clean", "features", "train", "evaluate", "plan", "report"]);
    for (i, stage) in stages.iter().enumerate() {
        assert_eq!(fresh["stages"][i]["status"], "ran");
        assert_eq!(fresh["stages"][i]["outputs"], moved(&stage["outputs"], "first", "x"), "{}", stage["stage"]);
    }

    // What comes out: forecasts scored against every baseline, plans, the report.
    let evaluate = &stages[4]["summary"];
    // The shipped model, and auto's per-series choice on validation, ahead of the naive
    // scale on test (MASE < 1, 0.41 when measured), auto no worse than the model alone, and
    // p90 covering about 90 %.
    let score = |k: &str| evaluate[k].as_f64().unwrap_or_else(|| panic!("{k} in {evaluate}"));
    assert!(score("auto_mase_cpu") < 0.6 && score("auto_mase_memory") < 0.6, "{evaluate}");
    assert!(score("auto_mase_cpu") <= 1.05 * score("model_mase_cpu"), "{evaluate}");
    assert!((0.8..0.97).contains(&score("auto_coverage_p90_cpu")), "{evaluate}");
    assert!(evaluate["origins"].as_u64().unwrap() > 1000, "{evaluate}");
    let plan = &stages[5]["summary"];
    assert_eq!(plan["workloads"], 53, "{plan}");
    let report = store.join("first/report");
    check_report(&report.join("report.html"), &dir.path().join("report.png"));
    let patches = std::fs::read_to_string(store.join("first/plan/patches.yaml")).unwrap();
    assert_eq!(patches.matches("kind: Deployment").count(), 53);
    assert!(patches.contains("  name: cartservice\n  namespace: online-boutique\n"), "{patches}");

    // A plan source the model does not forecast is named, with what it does forecast.
    let out = applearner(&["run", "configs/quickstart.yaml", "--set", &store_set, "--set", "plan.cpu={source: p95}"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("cpu.source `p95`: the model forecasts [point, p50, p90, p99]"), "{stderr}");
    // A request sized two ways is refused before anything runs.
    let out = applearner(&["validate", "configs/quickstart.yaml", "--set", "plan.cpu.source=p90"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("`source` and `request_risk` both size the cpu request"), "{stderr}");
    // So is a risk no plan can meet, at the line that set it.
    let out = applearner(&["validate", "configs/quickstart.yaml", "--set", "plan.memory.limit_risk=100%"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("plan.memory.limit_risk") && stderr.contains("above 0 and below 100 %"), "{stderr}");

    let out = applearner(&["show", "first/ingest/samples.parquet", "--store", store.to_str().unwrap(), "--rows", "3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("188902 rows"), "{stdout}");
    assert!(
        stdout.contains("timestamp: Timestamp(ms, \"UTC\")") || stdout.contains("timestamp: Timestamp(Millisecond"),
        "{stdout}"
    );

    // The lock file reproduces the run: same outputs, bit for bit.
    let lock = store.join("first/config.lock.yaml");
    let third = dir.path().join("third");
    let out = applearner(&[
        "run",
        lock.to_str().unwrap(),
        "--set",
        &format!("store={}", third.display()),
        "--run-id",
        "first",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let relocked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(third.join("first/manifest.json")).unwrap()).unwrap();
    assert_eq!(relocked["stages"][0]["outputs"], first["stages"][0]["outputs"]);
    assert_eq!(relocked["stages"][0]["cache_key"], first["stages"][0]["cache_key"]);

    let out = applearner(&["runs", "--store", store.to_str().unwrap()]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("first") && stdout.contains("second") && stdout.contains("succeeded"), "{stdout}");
}

/// Opens the report in headless Chromium: it loads without a console message, every chart
/// is an inline SVG in the rendered page, nothing would be fetched, and a screenshot is taken.
fn check_report(html: &Path, screenshot: &Path) {
    let page = std::fs::read_to_string(html).unwrap();
    for external in ["src=", "<link", "url(", "<script", "@import"] {
        assert!(!page.contains(external), "the report refers to something outside it: {external}");
    }
    let chromium = |args: &[&str]| {
        let out = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            // Nothing may be fetched: every host name fails to resolve.
            .arg("--host-resolver-rules=MAP * ~NOTFOUND")
            .args(args)
            .arg(format!("file://{}", html.display()))
            .output()
            .expect("Debian's chromium runs the report test: apt-get install chromium (.ci/run does)");
        assert!(out.status.success(), "{:?}", text(&out));
        out
    };
    let out = chromium(&["--dump-dom"]);
    let (dom, log) = text(&out);
    assert!(!log.contains(":CONSOLE"), "the page logged to the console: {log}");
    let charts = [
        "horizon-cpu",
        "horizon-memory",
        "forecast-best-cpu",
        "forecast-median-cpu",
        "forecast-worst-cpu",
        "forecast-best-memory",
        "forecast-median-memory",
        "forecast-worst-memory",
        "tradeoff-cpu_request",
        "tradeoff-memory_request",
        "tradeoff-memory_limit",
    ];
    for id in charts {
        let at = dom.find(&format!("id=\"chart-{id}\"")).unwrap_or_else(|| panic!("chart {id} missing"));
        assert!(dom[at..].trim_start_matches(|c| c != '>').starts_with("><svg"), "chart {id} has no SVG");
    }
    // The answer first: what the plan changes and its risk beside KRR and VPA, then the data
    // and the leaderboards.
    let at = |id: &str| dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("section {id} missing"));
    let order = ["current", "plans", "plan", "data", "leaderboard"].map(at);
    assert!(order.is_sorted(), "sections out of order: {order:?}");
    chromium(&["--hide-scrollbars", "--window-size=1100,3000", &format!("--screenshot={}", screenshot.display())]);
    let png = std::fs::read(screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "screenshot of {} bytes", png.len());
}

/// Recorded outputs as another run id would record them.
fn moved(outputs: &serde_json::Value, from: &str, to: &str) -> serde_json::Value {
    let mut outputs = outputs.clone();
    for out in outputs.as_object_mut().unwrap().values_mut() {
        let path = out["path"].as_str().unwrap().replacen(&format!("{from}/"), &format!("{to}/"), 1);
        out["path"] = path.into();
    }
    outputs
}

#[test]
fn secrets_from_the_environment_never_reach_the_store_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("secret.yaml");
    // A value only the environment knows; a token would come in the same way.
    let secret = "data/nezha-k8s/query_range/memory_bytes";
    std::fs::write(
        &config,
        "name: secret\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {paths: ['${APPLEARNER_SECRET_PATH}']}\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_applearner"))
        .args(["-v", "run", config.to_str().unwrap(), "--set", &format!("store={}", store.display())])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("APPLEARNER_SECRET_PATH", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");
    let mut files = vec![store.clone()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds the secret", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} files were written");
    let lock = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path().join("config.lock.yaml"))
        .find(|p| p.exists())
        .unwrap();
    assert!(std::fs::read_to_string(lock).unwrap().contains("${APPLEARNER_SECRET_PATH}"));
}

#[test]
fn force_takes_an_optional_stage_without_eating_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let store_set = format!("store={}", dir.path().display());
    let out = applearner(&["run", "--force", "configs/quickstart.yaml", "--until", "clean", "--set", &store_set]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out =
        applearner(&["run", "--force=ingest", "configs/quickstart.yaml", "--until", "clean", "--set", &store_set]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("ran in"), "{stdout}");
    let out = applearner(&["run", "--force=ingset", "configs/quickstart.yaml", "--set", &store_set]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `ingest`?"), "{stderr}");
}

#[test]
fn completions_are_generated() {
    let out = applearner(&["completions", "bash"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("_applearner") && stdout.contains("validate"), "{stdout}");
}

/// Regression: with stderr not a terminal (a pod's log, CI) the log lines carried ANSI
/// colour escapes, a long stage said nothing between "running" and "committed", and then
/// every stage logged each tenth of its work, 40 lines for the quickstart's 6 seconds.
#[test]
fn logs_without_a_terminal_are_plain_and_show_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store_set = format!("store={}", dir.path().display());
    let mut args = vec!["run", "configs/quickstart.yaml", "--until", "plan", "--set", &store_set];
    for s in [
        "train.init_from=null",
        "train.model={kind: lstm, hidden: 8, layers: 1}",
        "train.train={epochs: 2, max_train_windows: 500}",
    ] {
        args.extend(["--set", s]);
    }
    let out = applearner(&args);
    let (_, log) = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains('\u{1b}'), "no terminal escapes: {log:?}");
    for line in ["epoch 1/2: train loss", "epoch 2/2: train loss", "committed"] {
        assert!(log.contains(line), "`{line}` in {log}");
    }
    // Stages done within a second log no progress (a line every tenth of each would be
    // dozens); the whole run, a few seconds of work, a few lines at most.
    let progress = log.lines().filter(|l| l.contains("%) stage=")).count();
    assert!(progress <= 10, "{progress} progress lines: {log}");
    assert!(!log.contains("(100%) stage=ingest"), "{log}");
}

/// Regression: the README's main command (`cargo run -- run …`) built our own crates at
/// opt-level 0, where ingest ran 4× slower than in the bench profile. The crates whose
/// loops do the work must be optimised in the dev profile that command uses.
#[test]
fn the_documented_main_command_builds_our_hot_crates_optimised() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("cargo run -- run configs/quickstart.yaml"), "the README's main command changed");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for krate in
        ["ingest", "clean", "features", "evaluate", "train", "contracts", "pipeline"].map(|c| format!("applearner-{c}"))
    {
        let header = format!("[profile.dev.package.{krate}]\n");
        let section = manifest.split(&header).nth(1).unwrap_or_else(|| panic!("no {header} in Cargo.toml"));
        let level = section.lines().find_map(|l| l.strip_prefix("opt-level = ")).unwrap_or("0");
        assert!(["1", "2", "3"].contains(&level), "{krate} is built at opt-level {level} in the dev profile");
    }
}
