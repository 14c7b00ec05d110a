use super::*;
use arrow::array::{Float32Array, Int64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{Field, Schema};
use std::collections::HashMap;

/// 40 rows of one series (cpu = row), in batches of 7; windows of lookback 3 and horizon 2
/// at every row, the first 20 train, then 10 validation and the rest test.
fn tables() -> (Vec<RecordBatch>, RecordBatch) {
    let rows = 40;
    let schema = Arc::new(Schema::new(vec![
        Field::new(feature_table::TIMESTAMP, DataType::Int64, false),
        Field::new("cpu", DataType::Float32, true),
    ]));
    let features = (0..rows)
        .step_by(7)
        .map(|from| {
            let r = from..(from + 7).min(rows);
            let times = Int64Array::from_iter_values(r.clone().map(|i| i as i64 * 60_000));
            let cpu = Float32Array::from_iter_values(r.map(|i| i as f32));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(times), Arc::new(cpu)]).unwrap()
        })
        .collect();
    // Runs of windows one row apart: 20 train, 10 validation, 6 test.
    let runs = [("train", 0u64, 20u64), ("validation", 20, 10), ("test", 30, 6)];
    let metadata = HashMap::from([
        (window_table::LOOKBACK_KEY.to_string(), "3".to_string()),
        (window_table::HORIZON_KEY.to_string(), "2".to_string()),
        (window_table::STRIDE_KEY.to_string(), "1".to_string()),
    ]);
    let schema = Schema::new(vec![
        Field::new(window_table::SPLIT, DataType::Utf8, false),
        Field::new(window_table::KEY, DataType::Utf8, false),
        Field::new(window_table::START, DataType::UInt64, false),
        Field::new(window_table::ORIGIN, DataType::Int64, false),
        Field::new(window_table::WINDOWS, DataType::UInt32, false),
    ])
    .with_metadata(metadata);
    let windows = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(runs.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(runs.iter().map(|_| "a"))),
            Arc::new(UInt64Array::from_iter_values(runs.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(runs.iter().map(|r| (r.1 as i64 + 2) * 60_000))),
            Arc::new(UInt32Array::from_iter_values(runs.iter().map(|r| r.2 as u32))),
        ],
    )
    .unwrap();
    (features, windows)
}

fn set(parts: &[Part]) -> WindowSet {
    let (features, windows) = tables();
    let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
    let cpu = ["cpu".to_string()];
    WindowSet::of_parts(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, parts).unwrap()
}

#[test]
fn a_set_of_some_parts_holds_only_their_rows_and_reads_the_same_windows() {
    let (all, held) = (set(&Part::ALL), set(&[Part::Validation, Part::Test]));
    // Validation windows start at row 20 and read rows 20..25 on; test ends at row 40.
    assert_eq!((all.times.len(), held.times.len()), (40, 20));
    assert_eq!(held.runs, [(20, 0)]);
    assert!(held.part(Part::Train).is_empty());
    for part in [Part::Validation, Part::Test] {
        let which: Vec<usize> = (0..all.part(part).len()).collect();
        assert_eq!(held.part(part), all.part(part));
        let (mut x, mut y, mut x2, mut y2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        all.batch(part, &which, &mut x, &mut y);
        held.batch(part, &which, &mut x2, &mut y2);
        assert_eq!((&x, &y), (&x2, &y2));
        // The window at row s reads cpu s, s+1, s+2 and forecasts s+3, s+4.
        let s = all.part(part)[0].start as f32;
        // Its origin is the time of its last input row (60 s a row).
        assert!(all.part(part).iter().all(|w| w.origin_ms == (w.start as i64 + 2) * 60_000));
        assert_eq!((&x[..3], &y[..2]), (&[s, s + 1.0, s + 2.0][..], &[s + 3.0, s + 4.0][..]));
        held.last_values(part, &which, &mut x2);
        all.last_values(part, &which, &mut x);
        assert_eq!(x, x2);
    }
    assert_eq!(held.step_ms(), Some(60_000));
}

#[test]
fn origins_are_picked_on_the_clock_not_from_the_first_window() {
    let all = set(&Part::ALL);
    let origins = |part: Part, stride: usize| -> Vec<i64> {
        all.every(part, stride, 0).iter().map(|&i| all.part(part)[i].origin_ms / 60_000).collect()
    };
    // Test origins are minutes 32..=37, validation 22..=31 (a row a minute).
    assert_eq!(origins(Part::Test, 2), [32, 34, 36]);
    assert_eq!(origins(Part::Test, 5), [35]);
    assert_eq!(origins(Part::Test, 7), [35]);
    assert_eq!(origins(Part::Validation, 5), [25, 30]);
    assert_eq!(origins(Part::Validation, 4), [24, 28]);
    let latest: Vec<usize> = all.every(Part::Validation, 4, 1);
    assert_eq!(all.part(Part::Validation)[latest[0]].origin_ms / 60_000, 28);
}

#[test]
fn a_subsample_of_training_windows_holds_only_the_rows_they_read() {
    let (features, windows) = tables();
    let counts = windows_per_part([Ok::<_, std::convert::Infallible>(windows.clone())]).unwrap();
    assert_eq!(counts.per_part, [20, 10, 6]);
    let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
    let cpu = ["cpu".to_string()];
    let keep = |c: &Candidate| c.part != Part::Train || c.index == 0 || c.index == 10;
    let set = WindowSet::of_windows(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, &keep).unwrap();
    // Training windows 0 and 10 read rows 0..5 and 10..15; validation and test 20..40.
    assert_eq!(set.runs, [(0, 0), (10, 5), (20, 10)]);
    let starts: Vec<usize> = set.part(Part::Train).iter().map(|w| w.start).collect();
    assert_eq!(starts, [0, 10]);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    set.batch(Part::Train, &[0, 1], &mut x, &mut y);
    assert_eq!((x, y), (vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0], vec![3.0, 4.0, 13.0, 14.0]));
    assert_eq!((set.part(Part::Validation).len(), set.part(Part::Test).len()), (10, 6));
}

#[test]
fn the_grid_step_is_read_within_a_segment_not_across_series_or_gaps() {
    let schema = Arc::new(Schema::new(vec![
        Field::new(feature_table::KEY, DataType::Utf8, false),
        Field::new(feature_table::SEGMENT, DataType::UInt32, false),
        Field::new(feature_table::TIMESTAMP, DataType::Int64, false),
    ]));
    // a's segments 0 and 1 are 1 min apart across the gap; b starts 30 s after a ends.
    let key = StringArray::from(vec!["a", "a", "a", "a", "b", "b"]);
    let segment = UInt32Array::from(vec![0, 0, 1, 1, 0, 0]);
    let time = Int64Array::from(vec![0, 300_000, 360_000, 660_000, 690_000, 990_000]);
    let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(key), Arc::new(segment), Arc::new(time)]).unwrap();
    let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
    assert_eq!(grid_step_ms([ok(b.slice(0, 1)), ok(b)]).unwrap(), Some(300_000));
    assert_eq!(grid_step_ms([ok(RecordBatch::new_empty(schema))]).unwrap(), None);
}

#[test]
fn each_candidate_knows_its_place_in_its_run() {
    let (features, windows) = tables();
    let counts = windows_per_part([Ok::<_, std::convert::Infallible>(windows.clone())]).unwrap();
    assert_eq!((counts.horizon, counts.stride), (2, 1));
    let ok = |b: RecordBatch| Ok::<_, std::convert::Infallible>(b);
    let cpu = ["cpu".to_string()];
    let keep = |c: &Candidate| c.part == Part::Validation && c.in_run % counts.horizon == 0;
    let set = WindowSet::of_windows(features.into_iter().map(ok), [ok(windows)], &cpu, &cpu, &keep).unwrap();
    let starts: Vec<usize> = set.part(Part::Validation).iter().map(|w| w.start).collect();
    assert_eq!(starts, [20, 22, 24, 26, 28]);
    assert!(set.part(Part::Train).is_empty() && set.part(Part::Test).is_empty());
}
