//! Several processes on one store. On a real S3-compatible server and on a local folder, runs
//! started at the same moment — fresh ones, and two with the same run id, as an Argo retry
//! beside a pod still alive would be — all succeed, every artifact matches the digest its
//! manifest records, and each stage is computed once: the others wait for it, then reuse it.
//! A stage run as shards in separate processes (an Argo fan-out) merges into exactly the
//! tables an unsharded run writes.

use std::collections::BTreeMap;

use crate::support::s3::S3;
use crate::support::{applearner_cmd, files_below, manifest_digests as digests};

#[test]
#[ignore = "full tier: needs an S3 server (moto); .ci/run installs it and runs it"]
fn concurrent_runs_on_one_store_do_not_corrupt_each_other() {
    let s3 = S3::start("concurrent");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("runs").display().to_string();
    let env = s3.env();
    for store in [s3.url("runs"), local.clone()] {
        let set = format!("store={store}");
        let children: Vec<_> = [None, None, Some("shared"), Some("shared")]
            .iter()
            .map(|run_id| {
                let mut args = vec!["run", "configs/quickstart.yaml", "--until", "features", "--set", &set];
                args.extend(run_id.iter().flat_map(|id| ["--run-id", id]));
                applearner_cmd(&args, &env)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ids = Vec::new();
        let mut ran: BTreeMap<String, usize> = BTreeMap::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{store}: {stdout}{stderr}");
            let id = stdout.lines().find_map(|l| l.strip_prefix("run ")?.strip_suffix(" succeeded")).unwrap();
            ids.push(id.to_string());
            for line in stdout.lines().filter(|l| l.contains(" ran in ")) {
                *ran.entry(line.split_whitespace().next().unwrap().to_string()).or_default() += 1;
            }
        }
        // Every stage was computed once in all: the others waited for it and reused it.
        assert_eq!(ran.values().collect::<Vec<_>>(), [&1, &1, &1], "{store}: {ran:?}");
        assert_eq!(ids[2], "shared");
        assert_ne!(ids[0], ids[1], "two fresh runs got one id");

        let manifest = |id: &str| match store.strip_prefix("s3://concurrent/") {
            Some(prefix) => s3.get(&format!("{prefix}/{id}/manifest.json")),
            None => std::fs::read(format!("{store}/{id}/manifest.json")).unwrap(),
        };
        let expected = digests(&manifest(&ids[0]));
        assert_eq!(expected.len(), 9, "ingest (2 tables), clean (4), features (3 tables): {expected:?}");
        for id in &ids {
            assert_eq!(digests(&manifest(id)), expected, "{store}: run {id}");
            let out = applearner_cmd(&["verify", id, "--store", &store], &env).output().unwrap();
            assert!(out.status.success(), "{store} {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // A store without conditional puts still runs, and says what it cannot guard.
        if store.starts_with("s3://") {
            let mut plain = env.clone();
            plain.push(("AWS_CONDITIONAL_PUT", "disabled".into()));
            let out = applearner_cmd(&["run", "configs/quickstart.yaml", "--until", "ingest", "--set", &set], &plain)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && stderr.contains("concurrent runs are not guarded"), "{stderr}");
        }
        // Nothing is left holding a lease.
        if store == local {
            let leases: Vec<_> = files_below(dir.path())
                .into_iter()
                .map(|p| p.display().to_string())
                .filter(|p| p.ends_with("_lease") || p.ends_with(".lease"))
                .collect();
            assert!(leases.is_empty(), "{leases:?}");
        }
    }
}

#[test]
#[ignore = "full tier: needs an S3 server (moto); .ci/run installs it and runs it"]
fn shards_run_apart_then_merged_equal_the_unsharded_run() {
    let s3 = S3::start("shards");
    let env = s3.env();
    // Two stores, so that neither run finds the other's results in its cache.
    let run_in = |prefix: &str, args: &[&str]| {
        let store = format!("store={}", s3.url(prefix));
        let mut all = vec!["run", "configs/quickstart.yaml", "--set", &store];
        all.extend(args);
        applearner_cmd(&all, &env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let check = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    let run = |args: &[&str]| run_in("fan", args);
    check(run_in("whole", &["--until", "features", "--run-id", "whole"]));
    // Three pods, one shard each, at once; then the merge; then the stages after it.
    let shards: Vec<_> = (0..3)
        .map(|i| {
            run(&["--set", "ingest.shards=3", "--run-id", "fan", "--stage", "ingest", "--shard", &format!("{i}/3")])
        })
        .collect();
    shards.into_iter().for_each(|c| {
        check(c);
    });
    let merged = check(run(&["--set", "ingest.shards=3", "--run-id", "fan", "--stage", "ingest"]));
    assert!(merged.contains("merging"), "{merged}");
    assert!(!merged.contains("shard=\"0/3\" running"), "the merge reran a shard: {merged}");
    // Clean fans out too, by workload: four shards of the 53 workloads, then the merge.
    let sets = ["--set", "ingest.shards=3", "--set", "clean.shards=4", "--run-id", "fan"];
    let clean_shard = |i: usize| {
        let shard = format!("{i}/4");
        run(&[&sets[..], &["--stage", "clean", "--shard", &shard]].concat())
    };
    let shards: Vec<_> = (0..4).map(clean_shard).collect();
    shards.into_iter().for_each(|c| {
        check(c);
    });
    check(run(&[&sets[..], &["--stage", "clean"]].concat()));
    let rest = check(run(&[&sets[..], &["--until", "features"]].concat()));
    assert!(rest.contains("features             ran"), "{rest}");
    let whole = digests(&s3.get("whole/whole/manifest.json"));
    let fan = digests(&s3.get("fan/fan/manifest.json"));
    assert_eq!(fan, whole, "the sharded run's tables differ from the unsharded one's");
    let shard: serde_json::Value = serde_json::from_slice(&s3.get("fan/fan/ingest/shards/1-of-3/_stage.json")).unwrap();
    let rows = shard["outputs"]["series"]["rows"].as_u64().unwrap();
    assert!(rows > 30 && rows < 206, "shard 1 of 3 holds a part of the 206 series: {rows}");
    let shard: serde_json::Value = serde_json::from_slice(&s3.get("fan/fan/clean/shards/2-of-4/_stage.json")).unwrap();
    let series = shard["summary"]["series"].as_u64().unwrap();
    assert!(series > 3 && series < 53, "shard 2 of 4 cleans a part of the 53 workloads: {series}");

    // A shard must match the config.
    let text = check_fails(run(&["--run-id", "fan", "--stage", "ingest", "--shard", "0/3"]));
    assert!(text.contains("--shard 0/3: stage `ingest` has `shards: 1` in the config"), "{text}");
}

fn check_fails(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}
