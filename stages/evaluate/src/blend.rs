//! The model blended with a baseline: per series and target, the mean of the model's
//! forecast and that of the baseline that forecast best on validation. Forecasts that err
//! differently average to smaller errors than either makes alone. Chosen on the validation
//! part (BENCHMARKS.md, "Blending the model with a baseline"): equal weights won there over
//! weights picked per series, which chase noise; the test and ahead parts only receive the
//! validation part's choice.

use applearner_contracts::Method;
use std::collections::BTreeMap;

use crate::backtest::{Track, Tracks};

/// The model's weight.
const WEIGHT: f64 = 0.5;

/// Per (series, target): the baseline the model is blended with.
pub type Blends = BTreeMap<(String, String), Method>;

/// Per series the model forecasts, the baseline with the lowest mean absolute error on the
/// validation tracks (ties go to the earlier in [`Method::BASELINES`]).
pub fn fit(validation: &Tracks) -> Blends {
    let mut out = Blends::new();
    for (_, key, column) in validation.keys().filter(|(m, _, _)| *m == Method::Model) {
        let mae = |m: Method| Some(validation.get(&(m, key.clone(), column.clone()))?.mae()).filter(|e| e.is_finite());
        let scored = Method::BASELINES.into_iter().filter_map(|m| Some((m, mae(m)?)));
        if let Some((best, _)) = scored.min_by(|a, b| a.1.total_cmp(&b.1)) {
            out.insert((key.clone(), column.clone()), best);
        }
    }
    out
}

/// Adds the `blend` tracks of a part for the series `blends` has a blend for.
pub fn add(tracks: &mut Tracks, blends: &Blends) {
    for ((key, column), &baseline) in blends {
        let (Some(model), Some(other)) = (
            tracks.get(&(Method::Model, key.clone(), column.clone())),
            tracks.get(&(baseline, key.clone(), column.clone())),
        ) else {
            continue;
        };
        if let Some(mixed) = mix(model, other, WEIGHT) {
            tracks.insert((Method::Blend, key.clone(), column.clone()), mixed);
        }
    }
}

/// `w` × the model's track + (1 − w) × the baseline's, origin by origin (`None` where they
/// forecast from different origins). The model's quantiles are blended with the baseline's
/// point forecast, keeping their spread; conformal calibration then moves them as it does
/// every forecaster's.
fn mix(model: &Track, other: &Track, w: f64) -> Option<Track> {
    if model.origins != other.origins || model.forecast.len() != other.forecast.len() {
        return None;
    }
    let forecast = model.forecast.iter().zip(&other.forecast).map(|(m, b)| w * m + (1.0 - w) * b).collect();
    let levels = (model.quantiles.len() / model.forecast.len().max(1)).max(1);
    let quantiles = (0..model.quantiles.len()).map(|i| w * model.quantiles[i] + (1.0 - w) * other.forecast[i / levels]);
    let (origins, last, actual) = (model.origins.clone(), model.last.clone(), model.actual.clone());
    Some(Track { origins, horizon: model.horizon, last, actual, forecast, quantiles: quantiles.collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn track(actual: &[f64], forecast: &[f64]) -> Track {
        let n = actual.len();
        Track {
            origins: (0..n as i64).collect(),
            horizon: 1,
            last: vec![0.0; n],
            actual: Arc::new(actual.to_vec()),
            forecast: forecast.to_vec(),
            quantiles: Vec::new(),
        }
    }

    #[test]
    fn the_model_is_averaged_with_the_best_baseline_on_validation() {
        // The model errs +4, the last value −4 and the moving average −10: the mean of the
        // model and the last value forecasts exactly.
        let key = |m: Method| (m, "a".to_string(), "cpu".to_string());
        let actual = [10.0, 20.0, 30.0];
        let mut validation = Tracks::new();
        validation.insert(key(Method::Model), track(&actual, &[14.0, 24.0, 34.0]));
        validation.insert(key(Method::LastValue), track(&actual, &[6.0, 16.0, 26.0]));
        validation.insert(key(Method::MovingAverage), track(&actual, &[0.0, 10.0, 20.0]));
        let blends = fit(&validation);
        assert_eq!(blends[&("a".to_string(), "cpu".to_string())], Method::LastValue);
        add(&mut validation, &blends);
        assert_eq!(validation[&key(Method::Blend)].forecast, actual);
    }

    #[test]
    fn quantiles_keep_the_models_spread_around_the_blended_point() {
        let mut model = track(&[1.0], &[10.0]);
        model.quantiles = vec![10.0, 12.0];
        let mixed = mix(&model, &track(&[1.0], &[2.0]), 0.75).unwrap();
        assert_eq!((mixed.forecast, mixed.quantiles), (vec![8.0], vec![8.0, 9.5]));
        assert!(mix(&model, &track(&[1.0, 2.0], &[2.0, 3.0]), 0.5).is_none());
    }
}
