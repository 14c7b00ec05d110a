//! Golden files: what a small fixed pipeline on the shipped data writes for people
//! (`report.md`), for machines (`metrics.json`) and a few of its tables as `applearner show`
//! prints them, compared byte for byte with `tests/golden/`. After a change that is meant
//! to alter them, regenerate with `APPLEARNER_BLESS=1 cargo test golden` and review the diff.

use std::path::Path;

use crate::support::applearner;

/// The quickstart with a small LSTM trained from scratch: seconds, not a minute.
const SMALL: &[&str] = &[
    "train.init_from=null",
    "train.model={kind: lstm, hidden: 8, layers: 1}",
    "train.train={epochs: 1, max_train_windows: 2000}",
];

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/small").join(name);
    if std::env::var_os("APPLEARNER_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with APPLEARNER_BLESS=1 cargo test golden", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{name} differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}\nIf the change is meant, regenerate with APPLEARNER_BLESS=1 cargo test golden",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or(""),
            actual.lines().nth(first).unwrap_or("")
        );
    }
}

#[test]
fn golden_report_metrics_and_tables_of_a_small_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let store_set = format!("store={store}");
    let mut args = vec!["run", "configs/quickstart.yaml", "--run-id", "golden", "--set", &store_set];
    for s in SMALL {
        args.extend(["--set", s]);
    }
    let out = applearner(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.path().join("golden");
    check("report.md", &std::fs::read_to_string(run.join("report/report.md")).unwrap());
    check("metrics.json", &std::fs::read_to_string(run.join("report/metrics.json")).unwrap());
    for (table, rows) in
        [("clean/resampled", "6"), ("features/scalers", "6"), ("plan/plan_comparison", "20"), ("plan/plan", "6")]
    {
        let path = format!("golden/{table}.parquet");
        let out = applearner(&["show", &path, "--store", store, "--rows", rows]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        check(&format!("{}.txt", table.replace('/', "-")), &String::from_utf8(out.stdout).unwrap());
    }
}
