//! The engine with test stages: DAG runs, parallelism, the cache, partial runs, validation.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use applearner_pipeline::run::{RunStatus, Status};
use applearner_pipeline::{PipelineError, RunOptions, Selection, Store};

use crate::support::{digests, pipeline, problems, run_with, values};

const CHAIN: &str = "
name: chain
seed: 7
stages:
  source:
    uses: test.source
    with: {rows: 100}
  double:
    uses: test.scale
    with: {factor: 2}
  triple:
    uses: test.scale
    inputs: {numbers: source.numbers}
    with: {factor: 3}
";

fn store_in(dir: &Path) -> Store {
    Store::open(dir.join("runs").to_str().unwrap()).unwrap()
}

#[test]
fn a_dag_runs_in_order_and_writes_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let p = pipeline(CHAIN, &[]);
    let report = run_with(&p, &store, RunOptions::default()).unwrap();
    assert_eq!(report.manifest.status, RunStatus::Succeeded);
    let names: Vec<&str> = report.manifest.stages.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(names, ["source", "double", "triple"]);
    let run = report.run_id.clone();
    let source = values(&store, &format!("{run}/source/numbers.parquet"));
    let doubled = values(&store, &format!("{run}/double/scaled.parquet"));
    assert_eq!(source.len(), 100);
    assert!(source.iter().zip(&doubled).all(|(a, b)| (a * 2.0 - b).abs() < 1e-12));
    // The manifest and the lock are in the store, and the manifest names its inputs.
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.get(&format!("{run}/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["stages"][1]["inputs"]["numbers"]["from"], "source.numbers");
    assert_eq!(manifest["stages"][0]["outputs"]["numbers"]["rows"], 100);
    let lock = String::from_utf8(store.get(&format!("{run}/config.lock.yaml")).unwrap().to_vec()).unwrap();
    assert!(lock.contains("factor: 3"), "{lock}");
}

#[test]
fn independent_stages_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
name: parallel
stages:
  left:
    uses: test.rendezvous
    with: {group: parallel-test, expect: 2, timeout_ms: 10000}
  right:
    uses: test.rendezvous
    with: {group: parallel-test, expect: 2, timeout_ms: 10001}
";
    // Each waits until the other has started: this only completes if both run at once.
    // (Their parameters differ: identical work is computed once, see below.)
    let report =
        run_with(&pipeline(yaml, &[]), &store_in(dir.path()), RunOptions { jobs: 2, ..Default::default() }).unwrap();
    assert!(report.manifest.stages.iter().all(|r| r.status == Status::Ran));
}

#[test]
fn identical_work_in_two_stages_is_computed_once() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
name: twins
stages:
  one:
    uses: test.source
    with: {rows: 50}
  two:
    uses: test.source
    with: {rows: 50}
";
    // Started together, the second waits for the first's lease on the work, then reuses it.
    let report =
        run_with(&pipeline(yaml, &[]), &store_in(dir.path()), RunOptions { jobs: 2, ..Default::default() }).unwrap();
    let statuses: Vec<Status> = report.manifest.stages.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == Status::Ran).count(), 1, "{statuses:?}");
    let d = digests(&report);
    assert_eq!(d[0].1, d[1].1);
}

#[test]
fn jobs_bound_the_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
name: serial
stages:
  left:
    uses: test.rendezvous
    with: {group: serial-test, expect: 2, timeout_ms: 300}
  right:
    uses: test.rendezvous
    with: {group: serial-test, expect: 2, timeout_ms: 300}
";
    let p = pipeline(yaml, &[]);
    let store = store_in(dir.path());
    let err = applearner_pipeline::run::run(
        &p,
        "",
        &store,
        &RunOptions { jobs: 1, ..Default::default() },
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("only 1 of 2 stages"), "{err}");
    // The failure is recorded, and the second stage never started.
    let runs = applearner_pipeline::run::list_runs(&store).unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].stages.is_empty());
}

#[test]
fn a_panicking_stage_fails_the_run_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
name: panics
stages:
  source:
    uses: test.source
    with: {rows: 3}
  scale:
    uses: test.scale
    with: {factor: 2, panic: index out of bounds}
";
    let store = store_in(dir.path());
    let err = run_with(&pipeline(yaml, &[]), &store, RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("stage `scale` failed: panicked"), "{err}");
    assert!(err.to_string().contains("index out of bounds"), "{err}");
    let runs = applearner_pipeline::run::list_runs(&store).unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    // What committed before the panic stays committed.
    assert_eq!(runs[0].stages.len(), 1);
    assert_eq!(runs[0].stages[0].stage, "source");
}

#[test]
fn a_rerun_is_cached_and_a_parameter_change_reruns_what_depends_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let first = run_with(&pipeline(CHAIN, &[]), &store, RunOptions::default()).unwrap();
    let second = run_with(&pipeline(CHAIN, &[]), &store, RunOptions::default()).unwrap();
    assert_ne!(first.run_id, second.run_id);
    for r in &second.manifest.stages {
        assert_eq!(r.status, Status::Cached, "{}", r.stage);
        assert_eq!(r.produced_by, first.run_id);
    }
    assert_eq!(digests(&first), digests(&second));
    // The cached outputs were copied into the new run: it stands on its own.
    assert!(store.exists(&format!("{}/double/scaled.parquet", second.run_id)).unwrap());

    let changed = run_with(&pipeline(CHAIN, &["double.factor=5"]), &store, RunOptions::default()).unwrap();
    let status = |name: &str| changed.record(name).unwrap().status;
    assert_eq!(status("source"), Status::Cached);
    assert_eq!(status("double"), Status::Ran);
    assert_eq!(status("triple"), Status::Cached);

    let forced =
        run_with(&pipeline(CHAIN, &[]), &store, RunOptions { force: vec!["source".into()], ..Default::default() })
            .unwrap();
    assert_eq!(forced.record("source").unwrap().status, Status::Ran);
    // Same bytes again, so what reads them is still cached.
    assert_eq!(forced.record("double").unwrap().status, Status::Cached);
}

#[test]
fn a_changed_source_file_misses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let file = dir.path().join("input.txt");
    std::fs::write(&file, "one").unwrap();
    let yaml = format!(
        "name: f\nstages:\n  source:\n    uses: test.source\n    with: {{rows: 3, file: '{}'}}\n",
        file.display()
    );
    run_with(&pipeline(&yaml, &[]), &store, RunOptions::default()).unwrap();
    let again = run_with(&pipeline(&yaml, &[]), &store, RunOptions::default()).unwrap();
    assert_eq!(again.record("source").unwrap().status, Status::Cached);
    std::fs::write(&file, "two").unwrap();
    let changed = run_with(&pipeline(&yaml, &[]), &store, RunOptions::default()).unwrap();
    assert_eq!(changed.record("source").unwrap().status, Status::Ran);
}

#[test]
fn set_overrides_are_typed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let p = pipeline(CHAIN, &["source.rows=4", "seed=11", "triple.factor=0.5"]);
    assert_eq!(p.seed, 11);
    let report = run_with(&p, &store, RunOptions::default()).unwrap();
    assert_eq!(report.record("source").unwrap().outputs["numbers"].rows, Some(4));
    assert_eq!(report.manifest.overrides, ["source.rows=4", "seed=11", "triple.factor=0.5"]);
    assert_eq!(report.manifest.seed, 11);
    let text = problems(CHAIN, &["source.rows=many"]);
    assert!(text.contains("--set source.rows=many") && text.contains("invalid type"), "{text}");
    let text = problems(CHAIN, &["sorce.rows=3"]);
    assert!(text.contains("there is no stage `sorce`") && text.contains("did you mean `source`?"), "{text}");
}

#[test]
fn stage_with_a_missing_input_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let p = pipeline(CHAIN, &[]);
    let options =
        RunOptions { run_id: Some("job-1".into()), selection: Selection::Stage("double".into()), ..Default::default() };
    let err = run_with(&p, &store, options.clone()).unwrap_err();
    assert!(matches!(err, PipelineError::MissingInputs { .. }));
    let text = err.to_string();
    assert!(text.contains("stage `double` reads the output of `source`, which is not committed"), "{text}");
    assert!(text.contains("--run-id job-1 --stage source"), "{text}");
    assert!(!store.exists("job-1/manifest.json").unwrap(), "nothing may be written");

    // As a Kubernetes Job per stage would: source first, then double in the same run.
    let source = RunOptions { selection: Selection::Stage("source".into()), ..options.clone() };
    run_with(&p, &store, source).unwrap();
    let report = run_with(&p, &store, options).unwrap();
    assert_eq!(report.record("double").unwrap().status, Status::Ran);
    assert!(report.record("triple").is_none());
}

#[test]
fn until_and_from_select_ancestors_and_descendants() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let p = pipeline(CHAIN, &[]);
    let until =
        RunOptions { run_id: Some("r".into()), selection: Selection::Until("double".into()), ..Default::default() };
    let report = run_with(&p, &store, until).unwrap();
    let names: Vec<&str> = report.manifest.stages.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(names, ["source", "double"]);
    let from = RunOptions {
        run_id: Some("r".into()),
        selection: Selection::From("source".into()),
        force: vec!["*".into()],
        ..Default::default()
    };
    let report = run_with(&p, &store, from).unwrap();
    assert!(report.manifest.stages.iter().all(|r| r.status == Status::Ran));
    let err = run_with(&p, &store, RunOptions { selection: Selection::Stage("dubble".into()), ..Default::default() })
        .unwrap_err();
    assert_eq!(err.to_string(), "there is no stage `dubble` in the pipeline; did you mean `double`?");
}

#[test]
fn a_cycle_and_three_typos_are_reported_together_with_positions() {
    let yaml = "
name: broken
stagse: {}
stages:
  a:
    uses: test.scale
    inputs: {numbers: b.scaled}
    with: {factor: 1}
  b:
    uses: test.scale
    inputs: {numbers: a.scaled}
    with: {factr: 2}
  c:
    uses: test.sourse
  d:
    uses: test.source
    with: {rows: 0}
";
    let text = problems(yaml, &[]);
    let expected = [
        "test.yaml:3:1: unknown key `stagse` in the pipeline",
        "did you mean `stages`?",
        "test.yaml:12:12: unknown parameter `factr` of test.scale",
        "did you mean `factor`?",
        "test.yaml:14:11: unknown stage kind `test.sourse`",
        "did you mean `test.source`?",
        "test.yaml:17:18: stage `d` (test.source): rows must be positive",
    ];
    for e in expected {
        assert!(text.contains(e), "missing `{e}` in:\n{text}");
    }
    // `b` is refused for its typo, so the loop a → b → a is reported once b parses: check
    // the cycle on its own too.
    let cycle = "
name: loop
stages:
  a:
    uses: test.scale
    inputs: {numbers: b.scaled}
    with: {factor: 1}
  b:
    uses: test.scale
    inputs: {numbers: c.scaled}
    with: {factor: 2}
  c:
    uses: test.scale
    inputs: {numbers: a.scaled}
    with: {factor: 2}
  stray:
    uses: test.scale
    with: {factor: 1}
";
    let text = problems(cycle, &[]);
    assert!(text.contains("test.yaml:4:3: the stages form a cycle: `a` → `c` → `b` → `a`"), "{text}");
    assert!(text.contains("stage `stray` (test.scale) reads `numbers`, but no stage writes it"), "{text}");
}

#[test]
fn ambiguous_inputs_name_the_candidates() {
    let yaml = "
name: two-sources
stages:
  one: {uses: test.source, with: {rows: 1}}
  two: {uses: test.source, with: {rows: 2}}
  scale: {uses: test.scale, with: {factor: 1}}
";
    let text = problems(yaml, &[]);
    assert!(text.contains("reads `numbers`, which 2 stages write"), "{text}");
    assert!(text.contains("`one.numbers`, `two.numbers`"), "{text}");
}

#[test]
fn anchors_aliases_and_merge_keys_are_allowed() {
    let yaml = "
name: anchors
stages:
  source: {uses: test.source, with: &small {rows: 3}}
  again: {uses: test.source, with: *small}
  double: {uses: test.scale, inputs: {numbers: source.numbers}, with: &scale {factor: 2}}
  more:
    uses: test.scale
    inputs: {numbers: again.numbers}
    with:
      <<: *scale
      factor: 4
";
    let p = pipeline(yaml, &[]);
    let params = |name: &str| p.stages[p.index_of(name).unwrap()].params.clone();
    assert_eq!(params("again"), serde_json::json!({"rows": 3, "file": null}));
    assert_eq!(params("more"), serde_json::json!({"factor": 4.0, "pause_once": null, "panic": null}));
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut yaml = String::from("name: bomb\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        yaml.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 9].join(", ")));
    }
    yaml.push_str("stages: {s: {uses: test.source, with: {rows: 1}}}\n");
    let started = Instant::now();
    let text = problems(&yaml, &[]);
    assert!(text.contains("budget") || text.contains("alias"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "the bomb was expanded");
}

#[test]
fn deeply_nested_yaml_is_refused_not_recursed_into() {
    let yaml = format!(
        "name: deep\nstages:\n  s:\n    uses: test.source\n    with: {{rows: {}{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let text = problems(&yaml, &[]);
    assert!(text.contains("recursion limit"), "{text}");
}

#[test]
fn two_clean_runs_give_identical_digests() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run_with(&pipeline(CHAIN, &[]), &store_in(a.path()), RunOptions::default()).unwrap();
    let second = run_with(&pipeline(CHAIN, &[]), &store_in(b.path()), RunOptions::default()).unwrap();
    assert!(second.manifest.stages.iter().all(|r| r.status == Status::Ran));
    assert_eq!(digests(&first), digests(&second));
    assert_eq!(digests(&first).len(), 3);
    let reseeded = run_with(&pipeline(CHAIN, &["seed=8"]), &store_in(b.path()), RunOptions::default()).unwrap();
    assert_ne!(digests(&first), digests(&reseeded));
}

/// Runs in a child process (see `a_killed_run_reruns_to_the_same_result`), which is killed
/// while this pipeline's `slow` stage is running.
#[test]
#[ignore = "helper process of a_killed_run_reruns_to_the_same_result"]
fn killed_run_child() {
    let dir = std::env::var("APPLEARNER_KILL_DIR").expect("run by a_killed_run_reruns_to_the_same_result");
    let dir = Path::new(&dir);
    let p = pipeline(&killable(dir), &[]);
    let _ = run_with(&p, &store_in(dir), RunOptions { run_id: Some("killed".into()), ..Default::default() });
}

fn killable(dir: &Path) -> String {
    format!(
        "name: killable\nstages:\n  source: {{uses: test.source, with: {{rows: 50}}}}\n  slow:\n    uses: test.scale\n    with: {{factor: 2, pause_once: '{}'}}\n  after: {{uses: test.scale, inputs: {{numbers: source.numbers}}, with: {{factor: 4}}}}\n",
        dir.join("marker").display()
    )
}

#[test]
fn a_killed_run_reruns_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "engine::killed_run_child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env("APPLEARNER_KILL_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = dir.path().join("marker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the child never reached the slow stage");
        assert!(child.try_wait().unwrap().is_none(), "the child exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();

    let store = store_in(dir.path());
    assert!(store.exists("killed/source/_stage.json").unwrap(), "source finished before the kill");
    assert!(!store.exists("killed/slow/_stage.json").unwrap(), "slow must not look committed");
    assert!(!store.exists("killed/manifest.json").unwrap(), "the manifest is written last");

    let p = pipeline(&killable(dir.path()), &[]);
    let rerun = run_with(&p, &store, RunOptions { run_id: Some("killed".into()), ..Default::default() }).unwrap();
    assert_eq!(rerun.record("source").unwrap().status, Status::Cached);
    assert_eq!(rerun.record("slow").unwrap().status, Status::Ran);
    let clean_dir = tempfile::tempdir().unwrap();
    std::fs::write(clean_dir.path().join("marker"), "no pause").unwrap();
    let clean =
        run_with(&pipeline(&killable(clean_dir.path()), &[]), &store_in(clean_dir.path()), RunOptions::default())
            .unwrap();
    // The marker path differs between the two configs, so compare outputs, not cache keys.
    assert_eq!(digests(&rerun), digests(&clean));
}

/// A run cancelled while a stage runs (Ctrl-C sets the flag) ends as cancelled, not failed,
/// whatever error the stage's own check returned; nothing after it starts.
#[test]
fn a_cancelled_run_is_cancelled_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&killable(dir.path()), &[]);
    let store = store_in(dir.path());
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let marker = dir.path().join("marker");
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !marker.exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let options = RunOptions { run_id: Some("c".into()), jobs: 1, ..Default::default() };
        applearner_pipeline::run::run(&p, "", &store, &options, &cancel)
    });
    let error = result.expect_err("the run stops");
    assert!(error.is_cancellation(), "{error}");
    let manifest: serde_json::Value = serde_json::from_slice(&store.get("c/manifest.json").unwrap()).unwrap();
    assert_eq!(manifest["status"], "cancelled");
    let stages: Vec<&str> =
        manifest["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["source"], "only what finished before the cancel is committed");
}
