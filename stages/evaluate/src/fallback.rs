//! `auto` leaving a degraded model, causally. At each origin of the test part and ahead, a
//! series whose `auto` took the model, and whose model has trailed its best baseline by more
//! than the degradation (mean absolute error over the test forecasts that ended by then, at
//! least [`MIN_ENDED`] of them), takes that baseline's forecast there instead. A refresh at
//! some hour knows exactly the forecasts that ended by it, so hourly refreshes and a later
//! replay of the same hours fall back at the same origins.

use applearner_contracts::Method;
use std::collections::BTreeMap;

use crate::backtest::{Track, Tracks};

/// Ended forecasts needed before the model's error is trusted to be worse.
pub const MIN_ENDED: usize = 12;

/// Where `auto` falls back in one part: (series, target) → (origin index, baseline).
pub type Switches = BTreeMap<(String, String), Vec<(usize, Method)>>;

/// The origins of `part` where `auto` (which took the model for the series in `on_model`)
/// falls back, judged on the test part's tracks `test`; `span_ms` is a forecast's length.
pub fn switches<'a>(
    test: &Tracks,
    part: &Tracks,
    on_model: impl Iterator<Item = &'a (String, String)>,
    span_ms: i64,
    degradation: f64,
) -> Switches {
    let mut out = Switches::new();
    for (key, column) in on_model {
        let track = |m: Method| test.get(&(m, key.clone(), column.clone()));
        let (Some(origins), Some(scored)) =
            (part.get(&(Method::Model, key.clone(), column.clone())), track(Method::Model))
        else {
            continue;
        };
        let others: Vec<(Method, &Track)> = Method::BASELINES.iter().filter_map(|&m| Some((m, track(m)?))).collect();
        // Per method (the model first): Σ |error| and how many, over the ended forecasts.
        let mut sums = vec![(0.0, 0usize); others.len() + 1];
        let mut ended = 0;
        let mut at = Vec::new();
        for (i, &origin) in origins.origins.iter().enumerate() {
            while ended < scored.origins.len() && scored.origins[ended] + span_ms <= origin {
                for (sum, t) in sums.iter_mut().zip(std::iter::once(scored).chain(others.iter().map(|o| o.1))) {
                    add_errors(sum, t, ended);
                }
                ended += 1;
            }
            let mae = |(s, n): (f64, usize)| if n > 0 { s / n as f64 } else { f64::NAN };
            let best = (0..others.len()).filter(|&b| mae(sums[b + 1]).is_finite());
            let best = best.min_by(|&a, &b| mae(sums[a + 1]).total_cmp(&mae(sums[b + 1])));
            if let Some(b) =
                best.filter(|&b| ended >= MIN_ENDED && mae(sums[0]) > (1.0 + degradation) * mae(sums[b + 1]))
            {
                at.push((i, others[b].0));
            }
        }
        if !at.is_empty() {
            out.insert((key.clone(), column.clone()), at);
        }
    }
    out
}

/// Adds forecast `i`'s absolute errors (where the actual is known) to `sum`.
fn add_errors(sum: &mut (f64, usize), t: &Track, i: usize) {
    let h = t.horizon;
    for (a, f) in t.actual[i * h..(i + 1) * h].iter().zip(&t.forecast[i * h..(i + 1) * h]) {
        if a.is_finite() && f.is_finite() {
            *sum = (sum.0 + (a - f).abs(), sum.1 + 1);
        }
    }
}

/// Puts each switch's baseline forecast (and quantiles) into the `auto` track of `part`.
pub fn apply(part: &mut Tracks, switches: &Switches) {
    for ((key, column), at) in switches {
        for &(i, method) in at {
            let Some(from) = part.get(&(method, key.clone(), column.clone())).map(|t| copy_of(t, i)) else { continue };
            let Some(auto) = part.get_mut(&(Method::Auto, key.clone(), column.clone())) else { continue };
            let h = auto.horizon;
            auto.forecast[i * h..(i + 1) * h].copy_from_slice(&from.0);
            let per = from.1.len();
            if auto.quantiles.len() >= (i + 1) * per && per > 0 {
                auto.quantiles[i * per..(i + 1) * per].copy_from_slice(&from.1);
            }
        }
    }
}

/// Forecast `i` of `t`: its steps, and its quantiles.
fn copy_of(t: &Track, i: usize) -> (Vec<f64>, Vec<f64>) {
    let h = t.horizon;
    let per = if t.origins.is_empty() { 0 } else { t.quantiles.len() / t.origins.len() };
    (t.forecast[i * h..(i + 1) * h].to_vec(), t.quantiles[i * per..(i + 1) * per].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Hourly one-step forecasts of a flat series at 10: the model off by `model_error`
    /// from `from` on, last value exact.
    fn tracks(origins: usize, from: usize, model_error: f64) -> Tracks {
        let actual = Arc::new(vec![10.0; origins]);
        let track = |forecast: Vec<f64>| Track {
            origins: (0..origins as i64).map(|o| o * 3_600_000).collect(),
            horizon: 1,
            last: vec![10.0; origins],
            actual: actual.clone(),
            forecast,
            quantiles: Vec::new(),
        };
        let model = (0..origins).map(|i| if i >= from { 10.0 + model_error } else { 10.0 }).collect();
        let key = || ("vm".to_string(), "cpu".to_string());
        Tracks::from([
            ((Method::Model, key().0, key().1), track(model)),
            ((Method::Auto, key().0, key().1), track(vec![10.0; origins])),
            ((Method::LastValue, key().0, key().1), track(vec![10.0; origins])),
        ])
    }

    #[test]
    fn auto_leaves_the_model_only_once_enough_ended_forecasts_show_it_worse() {
        let test = tracks(48, 20, 5.0);
        let on = [("vm".to_string(), "cpu".to_string())];
        let found = switches(&test, &test, on.iter(), 3_600_000, 0.1);
        let at: Vec<usize> = found[&on[0]].iter().map(|s| s.0).collect();
        // From origin 20 the model errs by 5; its MAE over the ended forecasts is above
        // 0 × 1.1 as soon as one of them is ended and 12 have ended: origin 21 on.
        assert_eq!(at, (21..48).collect::<Vec<_>>());
        assert!(found[&on[0]].iter().all(|s| s.1 == Method::LastValue));
        // Wrong from the start: it is left once 12 forecasts have ended.
        let wrong = tracks(48, 0, 5.0);
        let found = switches(&wrong, &wrong, on.iter(), 3_600_000, 0.1);
        assert_eq!(found[&on[0]].first().map(|s| s.0), Some(MIN_ENDED));
        // Within the degradation allowed: the model is kept.
        assert!(switches(&tracks(48, 0, 0.0), &test, on.iter(), 3_600_000, 0.1).is_empty());
    }
}
