//! What the validation part decides for the test part: per series, which method forecasts
//! it best (`auto`), and how far each method's quantiles must move to cover what they claim
//! (split conformal prediction). Both read validation tracks only; nothing here sees a test
//! value.

use applearner_contracts::Method;
use std::collections::BTreeMap;
use std::ops::Range;

use crate::backtest::{Track, Tracks};

/// Per (method, series, target), per quantile level and horizon bucket: what to add to
/// the method's forecast at that level (its own quantile if it has one, else its point
/// forecast) so that, on validation, the level's share of actuals lies at or below it.
pub type Adjustments = BTreeMap<(Method, String, String), Vec<Vec<f64>>>;

/// Fits the adjustments on the validation tracks; `buckets` are ranges of 0-based steps.
pub fn fit(validation: &Tracks, levels: &[f64], buckets: &[Range<usize>]) -> Adjustments {
    let mut out = Adjustments::new();
    for ((method, key, column), t) in validation.iter().filter(|((m, _, _), _)| Method::FORECASTERS.contains(m)) {
        let per_level = levels
            .iter()
            .enumerate()
            .map(|(l, &level)| {
                buckets
                    .iter()
                    .map(|steps| {
                        let residuals = (0..t.origins.len())
                            .flat_map(|n| steps.clone().map(move |h| (n, h)))
                            .map(|(n, h)| t.actual(n)[h] - base(t, n, h, l))
                            .filter(|e| e.is_finite())
                            .collect();
                        conformal_quantile(residuals, level)
                    })
                    .collect()
            })
            .collect();
        out.insert((*method, key.clone(), column.clone()), per_level);
    }
    out
}

/// The forecast a level's adjustment is added to.
fn base(t: &Track, n: usize, h: usize, level: usize) -> f64 {
    t.quantile(n, h, level).unwrap_or(t.forecast(n)[h])
}

/// The `level` quantile of `residuals` with the finite-sample correction of split
/// conformal prediction (rank ⌈(n + 1)·level⌉); 0 with no residuals, so an uncalibrated
/// model keeps its own quantile; the largest residual when the rank passes n.
fn conformal_quantile(mut residuals: Vec<f64>, level: f64) -> f64 {
    if residuals.is_empty() {
        return 0.0;
    }
    residuals.sort_by(f64::total_cmp);
    let n = residuals.len();
    let rank = ((n as f64 + 1.0) * level).ceil() as usize;
    residuals[rank.clamp(1, n) - 1]
}

/// Sets every forecaster's quantiles to its adjusted ones. Without adjustments for a series
/// (no validation forecasts of it) a method keeps its own quantiles, uncalibrated (the
/// model's), or gets none (`NaN`): a plan sized on a missing quantile would be the floor.
pub fn apply(tracks: &mut Tracks, adjustments: &Adjustments, levels: &[f64], buckets: &[Range<usize>]) {
    for ((method, key, column), t) in tracks.iter_mut().filter(|((m, _, _), _)| Method::FORECASTERS.contains(m)) {
        let adjust = adjustments.get(&(*method, key.clone(), column.clone()));
        let bucket_of: Vec<usize> =
            (0..t.horizon).map(|h| buckets.iter().position(|b| b.contains(&h)).unwrap_or(0)).collect();
        let adjusted: Vec<f64> = (0..t.origins.len())
            .flat_map(|n| (0..t.horizon).map(move |h| (n, h)))
            .flat_map(|(n, h)| (0..levels.len()).map(move |l| (n, h, l)))
            .map(|(n, h, l)| match adjust {
                Some(a) => base(t, n, h, l) + a[l][bucket_of[h]],
                None => t.quantile(n, h, l).unwrap_or(f64::NAN),
            })
            .collect();
        t.quantiles = adjusted;
    }
}

/// Per (series, target): the forecaster with the lowest mean absolute error on the
/// validation tracks (ties go to the earlier in [`Method::FORECASTERS`], the model first), and the
/// MAE of every candidate.
pub fn choose(validation: &Tracks) -> BTreeMap<(String, String), (Method, Vec<f64>)> {
    let mut out: BTreeMap<(String, String), (Method, Vec<f64>)> = BTreeMap::new();
    for ((method, key, column), t) in validation {
        let Some(i) = Method::FORECASTERS.iter().position(|m| m == method) else { continue };
        let mae = t.mae();
        let entry = out
            .entry((key.clone(), column.clone()))
            .or_insert((Method::Model, vec![f64::NAN; Method::FORECASTERS.len()]));
        entry.1[i] = mae;
    }
    for (chosen, maes) in out.values_mut() {
        let best = (0..maes.len()).filter(|&i| maes[i].is_finite()).min_by(|&a, &b| maes[a].total_cmp(&maes[b]));
        *chosen = Method::FORECASTERS[best.unwrap_or(0)];
    }
    out
}

/// Adds the `auto` tracks: per series and target, a copy of the chosen method's (the
/// model's where nothing was chosen).
pub fn add_auto(tracks: &mut Tracks, chosen: &BTreeMap<(String, String), (Method, Vec<f64>)>) {
    let keys: Vec<(String, String)> =
        tracks.keys().filter(|(m, _, _)| *m == Method::Model).map(|(_, k, c)| (k.clone(), c.clone())).collect();
    for (key, column) in keys {
        let method = chosen.get(&(key.clone(), column.clone())).map_or(Method::Model, |c| c.0);
        if let Some(t) = tracks.get(&(method, key.clone(), column.clone())).cloned() {
            tracks.insert((Method::Auto, key, column), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(actual: Vec<Vec<f64>>, forecast: Vec<Vec<f64>>) -> Track {
        let (n, horizon) = (actual.len(), actual.first().map_or(0, Vec::len));
        let (actual, forecast) = (std::sync::Arc::new(actual.concat()), forecast.concat());
        Track { origins: (0..n as i64).collect(), horizon, last: vec![0.0; n], actual, forecast, quantiles: Vec::new() }
    }

    #[test]
    fn conformal_quantiles_reach_their_level_on_new_draws() {
        // A point forecast of 0 for noise drawn from one distribution: the adjustments fitted
        // on 20,000 draws cover 50 % and 90 % of 20,000 new ones (within 1.5 points: the
        // sampling error of the fitted quantile is about 0.4 points).
        let mut state = 7u64;
        let mut draw = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            -u.ln() * 3.0 // exponential: skewed, as usage is
        };
        let series = |n: usize, draw: &mut dyn FnMut() -> f64| {
            track((0..n).map(|_| vec![draw(), draw()]).collect(), vec![vec![0.0, 0.0]; n])
        };
        let key = (Method::LastValue, "a".to_string(), "cpu".to_string());
        let validation: Tracks = [(key.clone(), series(10_000, &mut draw))].into_iter().collect();
        let buckets = std::slice::from_ref(&(0..2));
        let adjust = fit(&validation, &[0.5, 0.9], buckets);
        let mut test: Tracks = [(key.clone(), series(10_000, &mut draw))].into_iter().collect();
        apply(&mut test, &adjust, &[0.5, 0.9], buckets);
        let t = &test[&key];
        for (l, level) in [0.5, 0.9].into_iter().enumerate() {
            let points = (0..t.origins.len()).flat_map(|n| (0..2).map(move |h| (n, h)));
            let below = points.filter(|&(n, h)| t.actual(n)[h] <= t.quantile(n, h, l).unwrap()).count();
            let coverage = below as f64 / 20_000.0;
            assert!((coverage - level).abs() < 0.015, "level {level}: {coverage}");
        }
    }

    #[test]
    fn quantiles_move_by_the_residuals_of_their_own_level() {
        // A model whose p90 sits 1 below every actual: the adjustment is +1 at that level.
        let mut t = track(vec![vec![5.0]; 9], vec![vec![4.0]; 9]);
        t.quantiles = vec![4.0; 9];
        let key = (Method::Model, "a".to_string(), "cpu".to_string());
        let tracks: Tracks = [(key.clone(), t)].into_iter().collect();
        let adjust = fit(&tracks, &[0.9], std::slice::from_ref(&(0..1)));
        assert_eq!(adjust[&key], vec![vec![1.0]]);
        assert_eq!(conformal_quantile(vec![], 0.9), 0.0);
        assert_eq!(conformal_quantile(vec![3.0, 1.0, 2.0], 0.99), 3.0);
    }

    #[test]
    fn a_series_without_validation_keeps_the_models_own_quantiles_and_a_baseline_none() {
        let mut model = track(vec![vec![5.0]], vec![vec![4.0]]);
        model.quantiles = vec![6.0];
        let key = |m: Method| (m, "new".to_string(), "cpu".to_string());
        let mut test: Tracks =
            [(key(Method::Model), model), (key(Method::LastValue), track(vec![vec![5.0]], vec![vec![3.0]]))]
                .into_iter()
                .collect();
        apply(&mut test, &Adjustments::new(), &[0.9], std::slice::from_ref(&(0..1)));
        assert_eq!(test[&key(Method::Model)].quantiles, [6.0]);
        assert!(test[&key(Method::LastValue)].quantiles[0].is_nan());
    }

    #[test]
    fn the_choice_reads_validation_only() {
        // On validation the moving average is best for `a`, the model for `b`; `choose`
        // is given nothing else, whatever the test part would say.
        let v = |f: f64| track(vec![vec![1.0, 1.0]; 4], vec![vec![f, f]; 4]);
        let entry = |m: Method, k: &str, f: f64| ((m, k.to_string(), "cpu".to_string()), v(f));
        let validation: Tracks = [
            entry(Method::Model, "a", 1.5),
            entry(Method::MovingAverage, "a", 1.1),
            entry(Method::LastValue, "a", 2.0),
            entry(Method::Model, "b", 1.0),
            entry(Method::MovingAverage, "b", 1.0),
        ]
        .into_iter()
        .collect();
        let chosen = choose(&validation);
        assert_eq!(chosen[&("a".into(), "cpu".into())].0, Method::MovingAverage);
        // A tie goes to the model.
        assert_eq!(chosen[&("b".into(), "cpu".into())].0, Method::Model);
        let mut test: Tracks =
            [entry(Method::Model, "a", 9.0), entry(Method::MovingAverage, "a", 7.0)].into_iter().collect();
        add_auto(&mut test, &chosen);
        assert_eq!(test[&(Method::Auto, "a".into(), "cpu".into())].forecast(0)[0], 7.0);
    }
}
