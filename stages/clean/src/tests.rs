//! Golden tests: small tables through each operation, values worked out by hand.

use applearner_pipeline::arrow::array::{AsArray, TimestampMillisecondArray};
use applearner_pipeline::arrow::datatypes::Float64Type;

use crate::fixtures::*;
use crate::resample::{self, Cleaned};

#[test]
fn resampling_aggregates_each_step() {
    // Two samples per minute: at :00 and :30, values m and m + 10.
    let mut rows = Vec::new();
    for m in 0..4 {
        rows.push(("cpu", "p", m * MIN + 30_000, m as f64 + 10.0));
        rows.push(("cpu", "p", m * MIN, m as f64));
    }
    let cases = [
        ("mean", [5.0, 6.0, 7.0, 8.0]),
        ("max", [10.0, 11.0, 12.0, 13.0]),
        ("min", [0.0, 1.0, 2.0, 3.0]),
        ("last", [10.0, 11.0, 12.0, 13.0]),
        ("sum", [10.0, 12.0, 14.0, 16.0]),
        ("p90", [9.0, 10.0, 11.0, 12.0]),
    ];
    for (agg, expected) in cases {
        let c = clean(&rows, &format!("{CPU_ONLY}aggregate: {agg}\n")).unwrap();
        let got: Vec<f64> = rows_of(&c, "cpu").iter().map(|r| r.3).collect();
        assert_eq!(got, expected, "{agg}");
        assert_eq!(rows_of(&c, "cpu").iter().map(|r| r.2).collect::<Vec<_>>(), [0, 1, 2, 3], "aligned to the grid");
    }
    // A 5-minute grid puts minutes 0-4 in one bin.
    let c = clean(&series("cpu", "p", 0..10, |m| m as f64), "step: 5m\nroles: [cpu]\nmin_points: 1\n").unwrap();
    assert_eq!(rows_of(&c, "cpu").iter().map(|r| (r.2, r.3)).collect::<Vec<_>>(), [(0, 2.0), (5, 7.0)]);
}

#[test]
fn short_gaps_are_filled_and_long_ones_split() {
    // Minutes 0-4, then 7-9 (2 missing: filled), then 20-22 (10 missing: split).
    let minutes: Vec<i64> = (0..5).chain(7..10).chain(20..23).collect();
    let rows = series("cpu", "p", minutes, |m| m as f64 * 2.0);
    let c = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\n")).unwrap();
    let got = rows_of(&c, "cpu");
    let filled: Vec<_> = got.iter().filter(|r| r.4).map(|r| (r.2, r.3)).collect();
    assert_eq!(filled, [(5, 10.0), (6, 12.0)], "linear between 8 and 14");
    assert_eq!(got.iter().filter(|r| r.1 == 0).count(), 10);
    assert_eq!(got.iter().filter(|r| r.1 == 1).map(|r| r.2).collect::<Vec<_>>(), [20, 21, 22]);
    assert_eq!(c.counts.filled_points, 2);
    assert_eq!(c.counts.segments, 2);

    let ffill = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\nfill: ffill\n")).unwrap();
    assert_eq!(rows_of(&ffill, "cpu").iter().filter(|r| r.4).map(|r| r.3).collect::<Vec<_>>(), [8.0, 8.0]);
    let zero = clean(&rows, &format!("{CPU_ONLY}max_gap: 3m\nfill: zero\n")).unwrap();
    assert_eq!(rows_of(&zero, "cpu").iter().filter(|r| r.4).map(|r| r.3).collect::<Vec<_>>(), [0.0, 0.0]);
    // A gap one step longer than max_gap is not filled.
    let tight = clean(&rows, &format!("{CPU_ONLY}max_gap: 1m\n")).unwrap();
    assert_eq!(tight.counts.filled_points, 0);
    assert_eq!(tight.counts.segments, 3);
}

#[test]
fn filters_trim_and_drop_what_cannot_be_learned() {
    let mut rows = series("cpu", "long", 0..20, |m| (m % 3) as f64);
    rows.extend(series("cpu", "long", 40..45, |m| m as f64)); // a 5-point segment
    rows.extend(series("cpu", "flat", 0..20, |_| 0.25));
    rows.extend(series("cpu", "idle", 0..20, |_| 0.0));
    let c = clean(&rows, "step: 1m\nroles: [cpu]\nmin_points: 10\ntrim: 2\n").unwrap();
    let got = rows_of(&c, "cpu");
    assert!(got.iter().all(|r| r.0 == "ns/long/app"), "only the varying series is left");
    assert_eq!(got.first().unwrap().2, 2, "two points trimmed from the start");
    assert_eq!(got.last().unwrap().2, 17, "and from the end");
    assert_eq!(got.len(), 16);
    let k = &c.counts;
    assert_eq!((k.segments, k.short_segments_dropped, k.zero_series_dropped, k.constant_series_dropped), (4, 1, 1, 1));
    assert_eq!(k.trimmed_points, 4 * 4);
    assert_eq!((k.series, k.output_segments, k.points), (1, 1, 16));

    let kept =
        clean(&rows, "step: 1m\nroles: [cpu]\nmin_points: 10\ndrop_constant: false\ndrop_zero: false\n").unwrap();
    assert_eq!(kept.counts.series, 3);
}

#[test]
fn pods_group_into_workloads() {
    // Two replicas of one Deployment, then a new ReplicaSet's pod after a rollout.
    let mut rows = series("cpu", "web-5f55b6cf68-77cfw", 0..5, |_| 1.0);
    rows.extend(series("cpu", "web-5f55b6cf68-jpzbd", 2..5, |m| m as f64));
    rows.extend(series("cpu", "web-84cbf6c798-qmx8k", 5..8, |_| 3.0));
    rows.extend(series("cpu", "db-0", 0..8, |m| m as f64));
    let sum = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload, aggregate: sum}}\n")).unwrap();
    let web: Vec<_> = rows_of(&sum, "cpu").into_iter().filter(|r| r.0 == "ns/web/app").map(|r| r.3).collect();
    assert_eq!(web, [1.0, 1.0, 3.0, 4.0, 5.0, 3.0, 3.0, 3.0]);
    assert_eq!(sum.counts.series, 2);
    assert_eq!(sum.counts.input_series, 4);
    assert!(rows_of(&sum, "cpu").iter().any(|r| r.0 == "ns/db/app"));
    assert_eq!(sum.schema.metadata()["applearner.replicas"], "sum");
    let max = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload, aggregate: max}}\n")).unwrap();
    let web: Vec<_> = rows_of(&max, "cpu").into_iter().filter(|r| r.0 == "ns/web/app").map(|r| r.3).collect();
    assert_eq!(web, [1.0, 1.0, 2.0, 3.0, 4.0, 3.0, 3.0, 3.0]);
    let per_pod = clean(&rows, CPU_ONLY).unwrap();
    assert_eq!(per_pod.counts.series, 4);
    let by_labels = clean(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [namespace]}}\n")).unwrap();
    assert_eq!(by_labels.counts.series, 1);
}

/// Each row's `replicas`: per key, the pods present at each step.
fn replicas_of(c: &Cleaned, key: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for b in &c.batches {
        let keys = b.column_by_name("key").unwrap().as_string::<i32>();
        let n =
            b.column_by_name("replicas").unwrap().as_primitive::<applearner_pipeline::arrow::datatypes::UInt32Type>();
        out.extend((0..b.num_rows()).filter(|&i| keys.value(i) == key).map(|i| n.value(i)));
    }
    out
}

/// Regression: the quickstart grouped pods with `aggregate: sum`, the default, so a
/// Deployment with 3 overlapping replicas got the whole workload's usage as each pod's
/// request. By default a step now holds one pod's size (the busiest replica), and the
/// replicas present are counted beside it.
#[test]
fn replicas_are_not_summed_into_one_pods_request() {
    let mut rows = Vec::new();
    for (pod, level) in [("api-7d9f8c6b5d-x7k2p", 1.0), ("api-7d9f8c6b5d-b9f4z", 2.0), ("api-7d9f8c6b5d-q2w8n", 3.0)] {
        rows.extend(series("cpu", pod, (0..6).filter(|&m| m != 3 || level == 1.0), move |m| level + 0.1 * m as f64));
    }
    // The third replica scaled away after minute 4; minute 3 of two replicas is missing.
    rows.retain(|r| !(r.1 == "api-7d9f8c6b5d-q2w8n" && r.2 > 4 * MIN));
    let c = clean(&rows, &format!("{CPU_ONLY}group: {{by: workload}}\n")).unwrap();
    let api: Vec<f64> = rows_of(&c, "cpu").into_iter().filter(|r| r.0 == "ns/api/app").map(|r| r.3).collect();
    // Never the sum (6.0 at minute 0): the busiest pod's usage.
    assert_eq!(api, [3.0, 3.1, 3.2, 1.3, 3.4, 2.5]);
    assert_eq!(replicas_of(&c, "ns/api/app"), [3, 3, 3, 1, 3, 2]);
    assert_eq!(c.schema.metadata()["applearner.replicas"], "max");
}

/// Regression: `clean.resample` keyed series by namespace/pod/container only, so node
/// series told apart by `instance` (or VMs by `machine_id`) were summed into one series
/// keyed `""` without a word.
#[test]
fn distinct_series_are_never_silently_merged() {
    let node = |instance: &'static str| vec![("instance", instance), ("job", "node")];
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..5 {
        rows.push(("cpu", node("node-a:9100"), m * MIN, 1.0 + m as f64));
        rows.push(("cpu", node("node-b:9100"), m * MIN, 10.0 + m as f64));
        rows.push(("cpu", vec![("machine_id", "m1")], m * MIN, 100.0 + m as f64));
        rows.push(("cpu", pod_labels("web-5f55b6cf68-77cfw"), m * MIN, 2.0 + m as f64));
        rows.push(("cpu", pod_labels("web-5f55b6cf68-jpzbd"), m * MIN, 3.0 + m as f64));
    }
    let rows_by_key = |c: &Cleaned| {
        let mut keys: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for r in rows_of(c, "cpu") {
            keys.entry(r.0).or_default().push(r.3);
        }
        keys
    };
    let series = clean_labelled(&rows, CPU_ONLY).unwrap();
    let keys = rows_by_key(&series);
    // The nodes and the machine share no namespace/pod/container: every label that differs
    // among them (instance, job, machine_id) names them, each with the labels it has.
    assert_eq!(keys["instance=node-a:9100/job=node"], [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(keys["instance=node-b:9100/job=node"], [10.0, 11.0, 12.0, 13.0, 14.0]);
    assert_eq!(keys["machine_id=m1"], [100.0, 101.0, 102.0, 103.0, 104.0]);
    assert_eq!(keys.len(), 5, "{:?}", keys.keys());
    assert_eq!(series.counts.series, 5);
    // Grouping into workloads joins the two web pods (one pod's size: the busiest), and only them.
    let workloads = rows_by_key(&clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: workload}}\n")).unwrap());
    assert_eq!(workloads["ns/web/app"], [3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(workloads["instance=node-a:9100/job=node"], [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(workloads.len(), 4, "{:?}", workloads.keys());
    // Any label can group, including those kept only in the `labels` JSON column.
    let by_job = clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [job]}}\n")).unwrap();
    // (the two nodes of job `node` together: the busier at each step).
    assert_eq!(rows_by_key(&by_job)["node"], [10.0, 11.0, 12.0, 13.0, 14.0]);
    assert!(by_job.warnings.iter().any(|w| w.contains("3 series have no `job` label")), "{:?}", by_job.warnings);
    let err = clean_labelled(&rows, &format!("{CPU_ONLY}group: {{by: labels, labels: [rack]}}\n")).unwrap_err();
    assert!(err.contains("no input series has the label `rack`"), "{err}");
}

#[test]
fn roles_align_on_the_grid() {
    let mut rows = series("cpu", "a", 0..10, |m| m as f64);
    rows.extend(series("memory", "a", 3..12, |m| 100.0 * m as f64));
    rows.extend(series("cpu", "lonely", 0..10, |m| m as f64));
    let c = clean(&rows, "step: 1m\nmin_points: 1\n").unwrap();
    let cpu = rows_of(&c, "cpu");
    let memory = rows_of(&c, "memory");
    assert_eq!(cpu.iter().map(|r| r.2).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>(), "rows with both roles");
    assert_eq!(memory.iter().map(|r| r.3).collect::<Vec<_>>(), (3..10).map(|m| 100.0 * m as f64).collect::<Vec<_>>());
    assert_eq!(c.counts.series_without_all_roles, 1);
    assert_eq!(c.counts.series, 1);
}

#[test]
fn bad_values_are_dropped_and_counted() {
    let mut rows = series("cpu", "p", 0..10, |m| m as f64);
    rows[2].3 = f64::NAN;
    rows[3].3 = f64::INFINITY;
    rows[4].3 = -1.0;
    let c = clean(&rows, &format!("{CPU_ONLY}fill: zero\n")).unwrap();
    assert_eq!((c.counts.non_finite_dropped, c.counts.negative_dropped), (2, 1));
    assert_eq!(rows_of(&c, "cpu").iter().filter(|r| r.4).map(|r| r.2).collect::<Vec<_>>(), [2, 3, 4]);
}

#[test]
fn bad_input_is_refused_clearly() {
    let err = clean(&[], CPU_ONLY).unwrap_err();
    assert!(err.contains("no samples of role cpu"), "{err}");
    let nan = series("cpu", "p", 0..5, |_| f64::NAN);
    let err = clean(&nan, CPU_ONLY).unwrap_err();
    assert!(err.contains("all 5 samples of role cpu are NaN or infinite"), "{err}");
    // One point is a segment too short to keep.
    let err = clean(&series("cpu", "p", 0..1, |_| 1.0), "step: 1m\nroles: [cpu]\nmin_points: 2\n").unwrap_err();
    assert!(
        err.contains("nothing is left after cleaning") && err.contains("1 segments were shorter than min_points = 2"),
        "{err}"
    );
    let err = clean(&series("cpu", "p", 0..5, |m| m as f64), "step: 1m\naggregate: median\n").unwrap_err();
    assert!(err.contains("unknown aggregation `median`"), "{err}");
    // A step finer than the data warns (and still works).
    let coarse = series("cpu", "p", (0..10).map(|m| m * 5), |m| m as f64);
    let c = clean(&coarse, "step: 1m\nroles: [cpu]\nmin_points: 1\nmax_gap: 10m\n").unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("finer than the data's resolution (about 300 s")), "{:?}", c.warnings);
}

/// (key, signal, minute, value) of every `allocation` row.
fn allocation_rows(c: &Cleaned) -> Vec<(String, String, i64, f64)> {
    let mut out = Vec::new();
    for b in &c.allocation {
        let (key, signal) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
        let ts = b.column(2).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let v = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((key.value(i).to_string(), signal.value(i).to_string(), ts.value(i) / MIN, v.value(i)));
        }
    }
    out
}

/// Requests, limits, restarts, OOM kills and throttling of two pods of one Deployment land
/// on the workload's key, combined as its usage is; a duplicate scrape counts once; series
/// of a workload with no usage, or matching two keys, are counted and left out.
#[test]
fn allocation_aligns_to_the_workloads_and_counts_what_it_cannot_place() {
    let pod = |p: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("namespace", "ns"), ("pod", p), ("container", "app")];
        l.extend_from_slice(extra);
        l
    };
    let (a, b) = ("web-5f55b6cf68-77cfw", "web-5f55b6cf68-jpzbd");
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..40 {
        let t = m * MIN;
        for p in [a, b] {
            rows.push(("cpu", pod(p, &[]), t, 0.1 + (m % 3) as f64 * 0.01));
            rows.push(("memory", pod(p, &[]), t, 1e8 + (m % 5) as f64));
            // Pod a's request rises from 0.2 to 0.3 at minute 20; b stays at 0.25.
            let request = if p == a && m >= 20 {
                0.3
            } else if p == a {
                0.2
            } else {
                0.25
            };
            rows.push(("cpu_request", pod(p, &[("resource", "cpu")]), t, request));
        }
        // A second kube-state-metrics replica scrapes pod a's request again.
        rows.push((
            "cpu_request",
            pod(a, &[("resource", "cpu"), ("instance", "ksm-2")]),
            t,
            if m >= 20 { 0.3 } else { 0.2 },
        ));
        // Pod b restarts at minutes 10 (OOM) and 30 (another reason); its counter resets at 35.
        let restarts = match m {
            0..10 => 0.0,
            10..30 => 1.0,
            30..35 => 2.0,
            _ => 1.0,
        };
        rows.push(("restarts", pod(b, &[]), t, restarts));
        rows.push(("oom_killed", pod(b, &[]), t, if (10..30).contains(&m) { 1.0 } else { 0.0 }));
        rows.push(("cpu_throttled", pod(a, &[]), t, if m < 20 { 0.5 } else { 0.0 }));
        // A workload without usage.
        rows.push(("memory_limit", pod("gone-0", &[("resource", "memory")]), t, 2e8));
    }
    let c = clean_labelled(&rows, "step: 1m\nmin_points: 1\ngroup: {by: workload}\n").unwrap();
    let all = allocation_rows(&c);
    assert!(all.iter().all(|r| r.0 == "ns/web/app"), "every row on the workload's key");
    let signal = |s: &str| all.iter().filter(|r| r.1 == s).map(|r| (r.2, r.3)).collect::<Vec<_>>();
    // One pod's request (the larger of the two), written where it changes: 0.25 from minute 0,
    // 0.3 from minute 20.
    assert_eq!(signal("cpu_request"), [(0, 0.25), (20, 0.3)]);
    assert_eq!(signal("restarts"), [(10, 1.0), (30, 1.0), (35, 1.0)]);
    assert_eq!(signal("oom_kills"), [(10, 1.0)]);
    let throttled = signal("cpu_throttled");
    assert_eq!((throttled[0], throttled[39]), ((0, 0.5), (39, 0.0)));
    assert_eq!((c.counts.allocation_series, c.counts.allocation_series_without_usage), (7, 1));
    assert_eq!(c.counts.allocation_points, all.len() as u64);

    // Two usage series of one container told apart by `node`: a request without `node`
    // could be either, and is left out.
    let two = [
        ("cpu", pod("p", &[("node", "n1")]), 0, 1.0),
        ("cpu", pod("p", &[("node", "n2")]), 0, 2.0),
        ("cpu_request", pod("p", &[("resource", "cpu")]), 0, 1.0),
        ("cpu_request", pod("p", &[("resource", "cpu"), ("node", "n2")]), 0, 1.0),
    ];
    let c = clean_labelled(&two, CPU_ONLY).unwrap();
    assert_eq!(c.counts.allocation_series_ambiguous, 1);
    assert_eq!(allocation_rows(&c).iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["ns/p/app/node=n2"]);
}

/// Six pods (one with a gap, one constant): cleaned whole, a few series at a time under a
/// small memory bound, and as three shards, the rows and the counts are the same.
#[test]
fn cleaning_in_groups_or_shards_gives_what_cleaning_whole_gives() {
    let pods = ["a", "b", "c", "d", "e", "f"];
    let mut rows: Vec<Row> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let minutes = (0..60).filter(|m| i != 2 || !(20..30).contains(m));
        rows.extend(series("cpu", pod, minutes, |m| if i == 5 { 1.0 } else { ((m * (i as i64 + 3)) % 7) as f64 }));
    }
    let yaml = "step: 1m\nroles: [cpu]\nmin_points: 5\n";
    let whole = clean(&rows, yaml).unwrap();
    let rows: Vec<LabelledRow> = rows.iter().map(|r| (r.0, pod_labels(r.1), r.2, r.3)).collect();
    // 130 points: at most two 60-point pods at a time.
    let bounded = clean_labelled(&rows, &format!("{yaml}max_points_in_memory: 130\n")).unwrap();
    assert_eq!(rows_of(&bounded, "cpu"), rows_of(&whole, "cpu"));
    assert_eq!(bounded.counts, whole.counts);
    assert_eq!(whole.counts.constant_series_dropped, 1);

    let shard = |i: u64| move |key: &str| blake3::hash(key.as_bytes()).as_bytes()[0] as u64 % 3 == i;
    let (mut merged, mut counts) = (Vec::new(), serde_json::Map::new());
    for i in 0..3 {
        let keep = shard(i);
        let part = clean_scoped(&rows, yaml, resample::Scope { shard: Some(&keep) }).unwrap();
        merged.extend(rows_of(&part, "cpu"));
        for (k, v) in serde_json::to_value(&part.counts).unwrap().as_object().unwrap() {
            let sum = counts.get(k).and_then(|c: &serde_json::Value| c.as_u64()).unwrap_or(0) + v.as_u64().unwrap();
            counts.insert(k.clone(), sum.into());
        }
    }
    merged.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    assert_eq!(merged, rows_of(&whole, "cpu"));
    // Summed as the shard merge sums them; the series grouped count once per shard.
    assert_eq!(serde_json::Value::Object(counts), serde_json::to_value(&whole.counts).unwrap());

    // A shard with no series is empty and says so; a pod above the bound is named.
    let none = |_: &str| false;
    let empty = clean_scoped(&rows, yaml, resample::Scope { shard: Some(&none) }).unwrap();
    assert!(empty.batches.is_empty() && empty.warnings[0].contains("holds no series"), "{:?}", empty.warnings);
    let err = clean_labelled(&rows, &format!("{yaml}max_points_in_memory: 50\n")).unwrap_err();
    assert!(err.contains("series `ns/a/app` has 60 input points") && err.contains("raise it to at least 60"), "{err}");
}

/// A model input: a pod's network counter becomes bytes per second on its container's rows
/// (a reset counted, the value after it counted whole); a workload without it gets 0,
/// flagged filled and counted; one on a pod of two containers, or on a pod without usage,
/// is left out and counted; it never decides which rows exist.
#[test]
fn inputs_are_rates_on_the_usage_grid_and_what_cannot_be_placed_is_counted() {
    let labels = |pod: &'static str, container: Option<&'static str>| {
        let mut l = vec![("namespace", "ns"), ("pod", pod)];
        l.extend(container.map(|c| ("container", c)));
        l
    };
    let mut rows: Vec<LabelledRow> = Vec::new();
    for m in 0..6 {
        for (pod, container) in [("a", "app"), ("b", "app"), ("c", "app"), ("c", "side")] {
            rows.push(("cpu", labels(pod, Some(container)), m * MIN, 0.1 + 0.01 * (m % 2) as f64));
        }
    }
    // Pod a's counter: +600 bytes a minute, reset at minute 3 (to 100), then +600 again.
    for (m, bytes) in [(0, 0.0), (1, 600.0), (2, 1200.0), (3, 100.0), (4, 700.0)] {
        rows.push(("net", labels("a", None), m * MIN, bytes));
    }
    rows.push(("net", labels("c", None), 0, 5.0));
    rows.push(("net", labels("gone", None), 0, 5.0));
    let yaml = format!("{CPU_ONLY}inputs: {{net_rx: {{metric: net_metric, as: rate, fill: zero, unit: bytes}}}}\n");
    let c = clean_labelled(&rows, &yaml).unwrap();
    assert_eq!(c.schema.field_with_name("net_rx").unwrap().metadata()["unit"], "bytes/s");
    let of = |key: &str| -> Vec<(i64, f64, bool)> {
        rows_of(&c, "net_rx").into_iter().filter(|r| r.0 == key).map(|r| (r.2, r.3, r.4)).collect()
    };
    // Minute 0 has no earlier sample to make a rate from; minute 5 has no sample: 0, filled.
    assert_eq!(
        of("ns/a/app"),
        [
            (0, 0.0, true),
            (1, 10.0, false),
            (2, 10.0, false),
            (3, 100.0 / 60.0, false),
            (4, 10.0, false),
            (5, 0.0, true)
        ]
    );
    assert!(of("ns/b/app").iter().all(|r| r.1 == 0.0 && r.2), "b has no input: 0, flagged");
    // Every usage row is there, with or without the input.
    assert_eq!(rows_of(&c, "cpu").len(), 4 * 6);
    let counts = &c.counts;
    assert_eq!(counts.covariate_series, 3);
    assert_eq!((counts.covariate_series_ambiguous, counts.covariate_series_without_usage), (1, 1));
    assert_eq!(counts.covariate_counter_resets, 1);
    assert_eq!(counts.series_without_an_input, 3, "b and c's two containers");
    assert!(c.warnings.iter().any(|w| w.contains("match several usage series")), "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.starts_with("3 series have no `net_rx` input")), "{:?}", c.warnings);
    // Shards count their own: the sums are the whole's.
    let mut summed = [0u64; 5];
    for i in 0..3 {
        let keep = move |key: &str| blake3::hash(key.as_bytes()).as_bytes()[0] as u64 % 3 == i;
        let part = clean_scoped(&rows, &yaml, resample::Scope { shard: Some(&keep) }).unwrap().counts;
        let each = [part.covariate_series, part.covariate_series_without_usage, part.covariate_series_ambiguous];
        let each = [each[0], each[1], each[2], part.covariate_counter_resets, part.series_without_an_input];
        summed.iter_mut().zip(each).for_each(|(s, e)| *s += e);
    }
    assert_eq!(summed, [3, 1, 1, 1, 3]);

    // A metric the data lacks: an error naming the input and the metrics it has.
    let yaml = format!("{CPU_ONLY}inputs: {{net_rx: {{metric: container_network_receive_bytes_total, as: rate}}}}\n");
    let error = clean_labelled(&rows, &yaml).unwrap_err();
    assert!(error.contains("`net_rx`") && error.contains("cpu_metric, net_metric"), "{error}");
    // Names that cannot be columns, and a metric feeding two inputs, are refused.
    let bad = format!("{CPU_ONLY}inputs: {{cpu: {{metric: a, as: value}}, x: {{metric: a, as: rate}}}}\n");
    let problems = params(&bad).plan().unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
}
