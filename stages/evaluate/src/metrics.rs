//! Forecast accuracy measures, on plain slices so they can be checked by hand.
//!
//! Undefined values (a MAPE over zero usage, a precision with nothing forecast to rise)
//! are `NaN` and end up as nulls in tables, never as a made-up 0.

/// Mean absolute error.
pub fn mae(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| (a - f).abs()))
}

/// Root mean squared error.
pub fn rmse(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| (a - f).powi(2))).sqrt()
}

/// Mean absolute percentage error, in %, over the points where usage is not zero.
pub fn mape(actual: &[f64], forecast: &[f64]) -> f64 {
    100.0 * mean(actual.iter().zip(forecast).filter(|(a, _)| **a != 0.0).map(|(a, f)| ((a - f) / a).abs()))
}

/// Symmetric MAPE, in % (0 to 200); a point where both are zero counts as no error.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    100.0
        * mean(actual.iter().zip(forecast).map(|(a, f)| {
            let d = a.abs() + f.abs();
            if d == 0.0 { 0.0 } else { 2.0 * (a - f).abs() / d }
        }))
}

/// The scale of MASE: the mean absolute error of the seasonal-naive forecast in sample,
/// `mean |y[t] − y[t − season]|` over the pairs `history` has. `lagged(i)` returns the
/// value a season before point `i`, if the history holds it.
pub fn seasonal_scale(history: &[f64], lagged: impl Fn(usize) -> Option<f64>) -> f64 {
    mean(history.iter().enumerate().filter_map(|(i, y)| lagged(i).map(|l| (y - l).abs())))
}

/// Whether the forecast rises when usage rises, both against the last observed value:
/// precision, recall and F1 of "up". Flat counts as not up.
pub fn direction(last: &[f64], actual: &[f64], forecast: &[f64]) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for ((l, a), f) in last.iter().zip(actual).zip(forecast) {
        match (f > l, a > l) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            (false, false) => {}
        }
    }
    let precision = tp / (tp + fp);
    let recall = tp / (tp + fn_);
    (precision, recall, 2.0 * precision * recall / (precision + recall))
}

/// Pinball (quantile) loss of the forecast quantile `q` at `level`.
pub fn pinball(actual: &[f64], q: &[f64], level: f64) -> f64 {
    mean(actual.iter().zip(q).map(|(a, q)| if a >= q { level * (a - q) } else { (1.0 - level) * (q - a) }))
}

/// Empirical coverage: the share of points at or below the forecast quantile (ideally its level).
pub fn coverage(actual: &[f64], q: &[f64]) -> f64 {
    mean(actual.iter().zip(q).map(|(a, q)| if a <= q { 1.0 } else { 0.0 }))
}

pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Median of the finite values; `NaN` if there are none.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [f64; 4] = [1.0, 2.0, 0.0, 4.0];
    const F: [f64; 4] = [2.0, 2.0, 1.0, 2.0];

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn point_errors_match_hand_computed_values() {
        // errors 1, 0, 1, 2
        close(mae(&A, &F), 1.0);
        close(rmse(&A, &F), (6.0f64 / 4.0).sqrt());
        // zero usage skipped: (100 + 0 + 50) / 3
        close(mape(&A, &F), 50.0);
        // 2·1/3, 0, 2·1/1, 2·2/6 → (2/3 + 0 + 2 + 2/3) / 4
        close(smape(&A, &F), 100.0 * (2.0 / 3.0 + 2.0 + 2.0 / 3.0) / 4.0);
        assert!(mape(&[0.0], &[1.0]).is_nan());
    }

    #[test]
    fn seasonal_scale_uses_the_pairs_the_history_has() {
        // Season 2: pairs (3,1), (5,2), (2,3) → |2| + |3| + |−1| = 6 over 3.
        let y = [1.0, 2.0, 3.0, 5.0, 2.0];
        close(seasonal_scale(&y, |i| i.checked_sub(2).map(|j| y[j])), 2.0);
        assert!(seasonal_scale(&y, |_| None).is_nan());
    }

    #[test]
    fn direction_counts_rises_against_the_last_value() {
        let last = [1.0; 5];
        let actual = [2.0, 2.0, 0.0, 0.0, 2.0];
        let forecast = [2.0, 0.0, 2.0, 0.0, 3.0];
        // tp 2 (0, 4), fp 1 (2), fn 1 (1)
        let (p, r, f1) = direction(&last, &actual, &forecast);
        close(p, 2.0 / 3.0);
        close(r, 2.0 / 3.0);
        close(f1, 2.0 / 3.0);
        // Never forecast to rise: precision undefined, recall 0.
        let (p, r, _) = direction(&last, &actual, &last);
        assert!(p.is_nan());
        close(r, 0.0);
    }

    #[test]
    fn quantile_measures_match_hand_computed_values() {
        // level 0.9, q = 2: a=1 → 0.1·1, a=2 → 0, a=0 → 0.1·2, a=4 → 0.9·2
        close(pinball(&A, &[2.0; 4], 0.9), (0.1 + 0.0 + 0.2 + 1.8) / 4.0);
        close(coverage(&A, &[2.0; 4]), 0.75);
        close(median([3.0, f64::NAN, 1.0, 2.0, 10.0].into_iter()), 2.5);
    }
}
