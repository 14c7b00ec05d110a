//! Golden tests: small cleaned tables through each step, values worked out by hand.

use applearner_clean::fixtures::*;
use applearner_clean::resample::Cleaned;
use applearner_contracts::{Part, WindowSet};
use applearner_pipeline::arrow::array::{AsArray, RecordBatch};
use applearner_pipeline::arrow::datatypes::{Float32Type, Float64Type, TimestampMillisecondType};

use crate::{self as features, FeaturesParams};

fn build_features(cleaned: &Cleaned, yaml: &str) -> Result<features::Built, String> {
    let p: FeaturesParams = serde_saphyr::from_str(yaml).unwrap();
    let cut = p.cut().map_err(|p| format!("{:?}", p.iter().map(|p| &p.message).collect::<Vec<_>>()))?;
    features::build(&cleaned.batches, &p, cut).map_err(|e| e.to_string())
}

fn two_series() -> Cleaned {
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0 + m as f64 / 50.0);
    rows.extend(series("cpu", "b", 0..60, |m| ((m * 7) % 11) as f64));
    clean(&rows, CPU_ONLY).unwrap()
}

fn column_f32(batches: &[RecordBatch], name: &str) -> Vec<f32> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.unwrap_or(f32::NAN))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn column_str(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn scaling_is_fitted_on_training_points_and_inverts() {
    let cleaned = two_series();
    for (scale, transform) in [("zscore", "none"), ("minmax", "log1p"), ("robust", "none")] {
        let f = build_features(
            &cleaned,
            &format!("scale: {scale}\ntransform: {transform}\ncalendar: []\nwindows: {{lookback: 5, horizon: 2}}\n"),
        )
        .unwrap();
        let raw = rows_of(&cleaned, "cpu");
        let scaled = column_f32(&f.features, "cpu");
        let splits = column_str(&f.features, "split");
        let keys = column_str(&f.features, "key");
        let scalers = &f.scalers;
        let center = scalers.column_by_name("center").unwrap().as_primitive::<Float64Type>();
        let spread = scalers.column_by_name("scale").unwrap().as_primitive::<Float64Type>();
        for (i, r) in raw.iter().enumerate() {
            let s = if keys[i] == "ns/a/app" { 0 } else { 1 };
            let mut back = scaled[i] as f64 * spread.value(s) + center.value(s);
            if transform == "log1p" {
                back = back.exp_m1();
            }
            assert!((back - r.3).abs() < 1e-4 * r.3.abs().max(1.0), "{scale}: {back} vs {}", r.3);
        }
        // The statistics are the training part's: z-scores of train points have mean 0.
        if scale == "zscore" {
            let train: Vec<f64> = scaled
                .iter()
                .zip(&splits)
                .zip(&keys)
                .filter(|((_, s), k)| *s == "train" && *k == "ns/a/app")
                .map(|((v, _), _)| *v as f64)
                .collect();
            let mean = train.iter().sum::<f64>() / train.len() as f64;
            assert!(mean.abs() < 1e-5, "{mean}");
            let all =
                scaled.iter().zip(&keys).filter(|(_, k)| *k == "ns/a/app").map(|(v, _)| *v as f64).sum::<f64>() / 100.0;
            assert!(all.abs() > 0.1, "the trend makes later points larger: fitted on all points would give 0");
        }
    }
}

#[test]
fn split_and_windows_never_look_ahead() {
    let cleaned = two_series();
    let f = build_features(&cleaned, "calendar: [hour]\nlags: [2]\nrolling: [3]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 6, horizon: 3, stride: 2}\n").unwrap();
    let splits = column_str(&f.features, "split");
    // Series a: 100 points → 60 train, 20 validation, 20 test; b: 60 → 36/12/12.
    let count = |key: &str, part: &str| {
        column_str(&f.features, "key").iter().zip(&splits).filter(|(k, s)| *k == key && *s == part).count()
    };
    assert_eq!((count("ns/a/app", "train"), count("ns/a/app", "validation"), count("ns/a/app", "test")), (60, 20, 20));
    assert_eq!((count("ns/b/app", "train"), count("ns/b/app", "validation"), count("ns/b/app", "test")), (36, 12, 12));
    // Lag 2 and a 3-step rolling mean are trailing.
    let cpu = column_f32(&f.features, "cpu");
    let lag = column_f32(&f.features, "cpu_lag2");
    let mean = column_f32(&f.features, "cpu_mean3");
    assert!(lag[0].is_nan() && lag[1].is_nan() && mean[1].is_nan());
    assert_eq!(lag[10], cpu[8]);
    assert!((mean[10] - (cpu[8] + cpu[9] + cpu[10]) / 3.0).abs() < 1e-5);

    let set =
        WindowSet::from_batches(&f.features, std::slice::from_ref(&f.windows), &[], &["cpu".to_string()]).unwrap();
    assert_eq!((set.lookback, set.horizon), (6, 3));
    assert_eq!(set.input_names(), ["cpu", "hour_sin", "hour_cos", "cpu_lag2", "cpu_mean3", "cpu_std3"]);
    for part in Part::ALL {
        let windows = set.part(part);
        assert!(!windows.is_empty(), "{part:?}");
        for w in windows {
            assert!(w.start >= 2 || (w.start >= 62 && w.start < 100) || w.start >= 102, "after the warm-up");
            let targets = &splits[w.start + 6..w.start + 9];
            assert!(targets.iter().all(|s| s == part.name()), "every target of a {part:?} window is in {part:?}");
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        set.batch(part, &[0, windows.len() - 1], &mut x, &mut y);
        assert_eq!((x.len(), y.len()), (2 * 6 * 6, 2 * 3));
        let last = &windows[windows.len() - 1];
        assert_eq!(y[3..], cpu[last.start + 6..last.start + 9]);
        assert_eq!(x[6 * 6..6 * 6 + 1], cpu[last.start..last.start + 1]);
    }
    // Series a's training targets run from row 8 (warm-up 2 + lookback 6) to 59, every 2nd.
    let train_a: Vec<usize> = set.part(Part::Train).iter().filter(|w| &*w.key == "ns/a/app").map(|w| w.start).collect();
    assert_eq!(train_a, (2..=51).step_by(2).collect::<Vec<_>>());
    assert_eq!(f.counts.per_part[0], set.part(Part::Train).len() as u64);
    // The table holds one row per run of windows (series, part); each window's origin is
    // the time of its last input row.
    assert_eq!(f.windows.num_rows(), 6);
    let times: Vec<i64> = f
        .features
        .iter()
        .flat_map(|b| {
            b.column_by_name("timestamp").unwrap().as_primitive::<TimestampMillisecondType>().values().to_vec()
        })
        .collect();
    assert!(set.part(Part::Test).iter().all(|w| w.origin_ms == times[w.start + 5]));
}

#[test]
fn an_empty_part_is_a_clear_error() {
    let cleaned = two_series();
    let err = build_features(&cleaned, "split: {validation: 0.05, test: 0.2}\nwindows: {lookback: 10, horizon: 8}\n")
        .unwrap_err();
    assert!(err.contains("the validation part has no windows: in all 2 series"), "{err}");
    assert!(err.contains("the longest validation part has 5 points"), "{err}");
    let err = build_features(&cleaned, "split: {validation: 0.5, test: 0.6}\n").unwrap_err();
    assert!(err.contains("leaves nothing to train on"), "{err}");
}

#[test]
fn season_features_hold_only_the_past_and_line_up_with_the_forecast_steps() {
    // Season 10, horizon 3: `cpu_season10` is the value 7 steps back, its mean the 3
    // values before that. Every value is a function of earlier rows only: changing a row
    // changes no season feature at or before it.
    let cleaned = two_series();
    let yaml =
        "calendar: []\nseason_lags: [10]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 4, horizon: 3}\n";
    let f = build_features(&cleaned, yaml).unwrap();
    let (cpu, season, mean) = (
        column_f32(&f.features, "cpu"),
        column_f32(&f.features, "cpu_season10"),
        column_f32(&f.features, "cpu_season10_mean"),
    );
    for t in 10..100 {
        assert_eq!(season[t], cpu[t - 7], "row {t}");
        assert!((mean[t] - (cpu[t - 9] + cpu[t - 8] + cpu[t - 7]) / 3.0).abs() < 1e-5, "row {t}");
    }
    assert!(mean[..9].iter().all(|v| v.is_nan()), "partial frames at the start are left null");
    // At an origin o, the window's last 3 rows carry the values a season before o+1..o+3.
    let set =
        WindowSet::from_batches(&f.features, std::slice::from_ref(&f.windows), &[], &["cpu".to_string()]).unwrap();
    let w = &set.part(Part::Test)[0];
    let origin = w.start + 3;
    for h in 1..=3 {
        assert_eq!(season[origin - 3 + h], cpu[origin + h - 10]);
    }
    // The warm-up is the season: no window reads a row before 9 of a segment.
    assert!(set.part(Part::Train).iter().all(|w| w.start >= 9 || w.start >= 100));
    // Targets in each series' first 9 + 4 rows have no full history: 13 dropped in each.
    assert_eq!(f.counts.short_history, [26, 0, 0]);

    // A changed future leaves every season feature of the past alone.
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0 + m as f64 / 50.0 + bump(m));
    rows.extend(series("cpu", "b", 0..60, |m| ((m * 7) % 11) as f64));
    let g = build_features(&clean(&rows, CPU_ONLY).unwrap(), yaml).unwrap();
    for name in ["cpu_season10", "cpu_season10_mean"] {
        let (before, after) = (column_f32(&f.features, name), column_f32(&g.features, name));
        let same = |a: &f32, b: &f32| a == b || (a.is_nan() && b.is_nan());
        assert!(before[..67].iter().zip(&after[..67]).all(|(a, b)| same(a, b)), "{name}");
        assert_ne!(before[67], after[67], "{name} reads row 60 seven steps later");
    }
}

/// A jump at minute 60 only.
fn bump(m: i64) -> f64 {
    if m == 60 { 100.0 } else { 0.0 }
}

#[test]
fn windows_longer_than_any_segment_are_refused_and_short_history_is_counted() {
    let cleaned = two_series();
    // Series a has 100 points: a lookback of 90 and a horizon of 20 fit nowhere.
    let err = build_features(&cleaned, "calendar: []\nwindows: {lookback: 90, horizon: 20}\n").unwrap_err();
    assert!(err.contains("the longest segment, of series `ns/a/app`, has 100 points"), "{err}");
    assert!(err.contains("Lower `windows.lookback` (90), `windows.horizon` (20)"), "{err}");
    let err =
        build_features(&cleaned, "calendar: []\nseason_lags: [120]\nwindows: {lookback: 4, horizon: 3}\n").unwrap_err();
    assert!(err.contains("Lower `season_lags/lags/rolling (warm-up)` (119)"), "{err}");
    let err = build_features(&cleaned, "season_lags: [3]\nwindows: {lookback: 4, horizon: 3}\n").unwrap_err();
    assert!(err.contains("not longer than the horizon (3 steps)"), "{err}");
    // A lookback longer than the training part: the validation and test windows whose
    // history would start before the segment are dropped and counted, not padded.
    let f = build_features(
        &cleaned,
        "calendar: []\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 30, horizon: 3}\n",
    )
    .unwrap();
    // In each series the first 30 training targets have no 30 steps before them: 60 dropped.
    assert_eq!(f.counts.short_history, [60, 0, 0]);
}

/// Features are built a series at a time: one series above the bound is named with the size
/// it needs, and the bound changes nothing else.
#[test]
fn a_series_above_the_features_bound_is_named() {
    let mut rows: Vec<Row> = Vec::new();
    for (i, pod) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        rows.extend(series("cpu", pod, 0..80, |m| ((m * (i as i64 + 2)) % 9) as f64 + i as f64));
    }
    let cleaned = clean(&rows, CPU_ONLY).unwrap();
    let yaml = "calendar: []\nrolling: [3]\nwindows: {lookback: 6, horizon: 2}\n";
    let whole = build_features(&cleaned, yaml).unwrap();
    let bounded = build_features(&cleaned, &format!("{yaml}max_points_in_memory: 80\n")).unwrap();
    assert_eq!(bounded.features, whole.features);
    assert_eq!(bounded.windows, whole.windows);
    let err = build_features(&cleaned, &format!("{yaml}max_points_in_memory: 50\n")).unwrap_err();
    assert!(err.contains("series `ns/a/app` has 80 points") && err.contains("at least 80"), "{err}");
}

/// Features read `resampled` a series at a time: rows out of key order are refused with the
/// fix, never built into two half series.
#[test]
fn resampled_rows_out_of_order_are_refused() {
    let mut rows: Vec<Row> = series("cpu", "a", 0..80, |m| m as f64);
    rows.extend(series("cpu", "b", 0..80, |m| m as f64));
    let mut cleaned = clean(&rows, CPU_ONLY).unwrap();
    let whole = applearner_pipeline::arrow::compute::concat_batches(&cleaned.schema, &cleaned.batches).unwrap();
    let (a, b) = (whole.slice(0, 80), whole.slice(80, 80));
    cleaned.batches = vec![b.clone(), a, b];
    let err = build_features(&cleaned, "calendar: []\nwindows: {lookback: 6, horizon: 2}\n").unwrap_err();
    assert!(err.contains("not in key and time order at series `ns/a/app`") && err.contains("--force=clean"), "{err}");
}

/// The features table names the covariates and exactly the features derived from them, so
/// a model can leave them out: an input called `hour` is not mistaken for the calendar's
/// `hour_sin`, nor the usage's rolling mean for an input's. Without inputs, no metadata.
#[test]
fn the_features_name_the_covariates_and_their_features_exactly() {
    let mut rows = series("cpu", "a", 0..100, |m| (m as f64 * 0.3).sin() + 2.0);
    rows.extend(series("queue", "a", 0..100, |m| (m % 7) as f64));
    let cleaned = clean(&rows, &format!("{CPU_ONLY}inputs: {{hour: {{metric: queue_metric, as: value}}}}\n")).unwrap();
    let yaml =
        "calendar: [hour]\nrolling: [3]\nsplit: {validation: 0.2, test: 0.2}\nwindows: {lookback: 4, horizon: 2}\n";
    let built = build_features(&cleaned, yaml).unwrap();
    let metadata = built.features[0].schema().metadata().clone();
    assert_eq!(metadata["covariates"], "hour");
    assert_eq!(metadata["covariate_features"], "hour,hour_mean3,hour_std3");
    let plain = build_features(&two_series(), yaml).unwrap();
    assert!(plain.features[0].schema().metadata().is_empty());
}
