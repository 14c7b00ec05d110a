use super::*;
use applearner_pipeline::parse_quantity;

#[test]
fn quantities_parse_and_format_like_kubernetes() {
    assert_eq!(parse_quantity("250m"), Some(0.25));
    assert_eq!(parse_quantity("2"), Some(2.0));
    assert_eq!(parse_quantity("-1"), None);
    assert_eq!(parse_quantity("64Mi"), Some(64.0 * MIB));
    assert_eq!(parse_quantity("1G"), Some(1e9));
    assert_eq!(parse_quantity("8Gi"), Some(8.0 * MIB * 1024.0));
    assert_eq!(parse_quantity("1e3"), Some(1000.0));
    assert_eq!(parse_quantity("lots"), None);
    assert_eq!(format_cpu(0.035), "35m");
    assert_eq!(format_cpu(2.0), "2");
    assert_eq!(format_memory(64.0 * MIB), "64Mi");
    assert_eq!(format_memory(1000.0), "1000");
}

#[test]
fn policy_floors_rounds_and_caps_changes() {
    let p = Policy { floor: 0.01, step: 0.005, hold_ms: 30, min_change: 0.1 };
    assert!((p.round(0.0) - 0.01).abs() < 1e-12);
    assert!((p.round(0.0121) - 0.015).abs() < 1e-12);
    assert!((p.round(0.015) - 0.015).abs() < 1e-12);
    // t=0 sets 0.1; t=10 wants +50 % but the hold (30) blocks it; t=30 may change;
    // t=40 wants +5 %: below min_change; t=60 drops.
    let (r, changes) = p.apply(&[0, 10, 30, 40, 60], &[0.1, 0.15, 0.15, 0.157, 0.05]);
    let expect = [0.1, 0.1, 0.15, 0.15, 0.05];
    for (a, b) in r.iter().zip(expect) {
        assert!((a - b).abs() < 1e-9, "{r:?}");
    }
    assert_eq!(changes, 2);
}

#[test]
fn replay_of_a_hand_made_series_gives_the_known_answer() {
    // Request 2 cores for 4 one-hour steps of usage 1, 2, 3, 0.5 cores:
    // provisioned 8, used 6.5, slack 1 + 0 + 0 + 1.5 = 2.5 core-hours (31.25 %),
    // under-provisioned 1 step of 4 (25 %).
    let mut r = Replay::default();
    for used in [1.0, 2.0, 3.0, 0.5] {
        r.add(2.0, 2.0, used, 1.0);
    }
    assert_eq!((r.provisioned, r.used, r.slack), (8.0, 6.5, 2.5));
    assert_eq!(r.slack_pct(), 31.25);
    assert_eq!(r.under_pct(), 25.0);
    // A limit above the request: usage 3 no longer crosses it.
    let mut r = Replay::default();
    r.add(2.0, 4.0, 3.0, 1.0);
    assert_eq!(r.under_steps, 0);
}

#[test]
fn slack_is_read_off_the_curve_at_matched_under_provisioning() {
    // (under %, slack %): more headroom, less under-provisioning, more slack.
    let curve = [(20.0, 10.0), (10.0, 30.0), (0.0, 60.0), (10.0, 40.0)];
    assert_eq!(slack_at(&curve, 15.0), Some(20.0));
    // At 10 % two settings: the one with less slack counts.
    assert_eq!(slack_at(&curve, 10.0), Some(30.0));
    assert_eq!(slack_at(&curve, 5.0), Some(45.0));
    assert_eq!(slack_at(&curve, 25.0), None);
}

#[test]
fn a_hand_made_plan_replays_to_the_known_answer() {
    // Two origins an hour apart, each forecasting two half-hour steps (p90 column);
    // planning interval one hour: the request is the peak p90 of each hour.
    const H: i64 = 3_600_000;
    let f = Forecasts {
        origins: vec![0, H],
        times: vec![vec![H / 2, H], vec![3 * H / 2, 2 * H]],
        actual: vec![vec![0.10, 0.30], vec![0.20, 0.05]],
        columns: [("p90".to_string(), vec![vec![0.15, 0.20], vec![0.25, 0.12]])].into(),
    };
    let ivs = intervals(&f, H);
    assert_eq!(ivs.len(), 2);
    let setting =
        Setting { method: "model", label: "p90".into(), default: [true; 2], column: "p90".into(), a: 0.0, b: 0.0 };
    let [want, memory] = wanted(&setting, &ivs, [Some(&f), None], &Usage::default());
    assert_eq!(want, vec![0.20, 0.25]);
    assert!(memory.is_empty());
    // Rounded up to 0.05 cores: 0.20 then 0.25 (a 25 % change, allowed after an hour).
    let policy = Policy { floor: 0.01, step: 0.05, hold_ms: H, min_change: 0.1 };
    let r = replay(&ivs, &f, &want, &policy, 1.0, 1.0, H / 2);
    // Half-hour steps: requested (0.2 + 0.2 + 0.25 + 0.25) / 2 = 0.45 core-hours,
    // used (0.1 + 0.3 + 0.2 + 0.05) / 2 = 0.325, slack (0.1 + 0 + 0.05 + 0.2) / 2 = 0.175;
    // one step of four above the request (0.3 > 0.2); one change.
    assert!((r.provisioned - 0.45).abs() < 1e-12 && (r.used - 0.325).abs() < 1e-12, "{r:?}");
    assert!((r.slack - 0.175).abs() < 1e-12, "{r:?}");
    assert_eq!((r.under_steps, r.steps, r.changes), (1, 4, 1));
    // A one-day hold keeps the first request: 0.2 throughout, and the third step (0.2)
    // is not above it.
    let held = replay(&ivs, &f, &want, &Policy { hold_ms: 24 * H, ..policy }, 1.0, 1.0, H / 2);
    assert_eq!((held.under_steps, held.changes), (1, 0));
    assert!((held.provisioned - 0.4).abs() < 1e-12);
}

#[test]
fn intervals_tile_the_horizons_of_non_overlapping_origins() {
    // Origins 0, 10, 30 with 3 steps of 10: the one at 10 overlaps the first and is skipped.
    let f = Forecasts {
        origins: vec![0, 10, 30],
        times: vec![vec![10, 20, 30], vec![20, 30, 40], vec![40, 50, 60]],
        ..Default::default()
    };
    let ivs = intervals(&f, 20);
    let got: Vec<(i64, Vec<(usize, usize)>)> = ivs.into_iter().map(|i| (i.start, i.cells)).collect();
    assert_eq!(
        got,
        vec![(0, vec![(0, 0), (0, 1)]), (20, vec![(0, 2)]), (30, vec![(2, 0), (2, 1)]), (50, vec![(2, 2)])]
    );
}
