//! Forecasts users can get without a model, from the raw history at each origin: the last
//! value, the value a season earlier, a moving average and additive Holt-Winters.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use applearner_contracts::{Method, Resource};
use applearner_plan::recommend::{KrrSettings, Vpa, VpaSettings, krr};
use applearner_plan::series::Series;
use applearner_plan::table::Usage;

use crate::backtest::{Track, Tracks};

/// The value a whole number of seasons before `time` and no later than `origin`, if the
/// history holds one (the nearest such season).
pub fn seasonal_naive(series: &Series, origin: i64, time: i64, season: i64) -> Option<f64> {
    if season <= 0 {
        return None;
    }
    let back = (time - origin).div_euclid(season) + i64::from((time - origin).rem_euclid(season) != 0);
    series.at(time - back.max(1) * season)
}

/// Mean of the last `window` values up to and including position `origin`.
pub fn moving_average(values: &[f64], origin: usize, window: usize) -> f64 {
    let from = (origin + 1).saturating_sub(window.max(1));
    let w = &values[from..=origin];
    w.iter().sum::<f64>() / w.len() as f64
}

/// Additive Holt-Winters smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoltWinters {
    pub alpha: f64,
    pub beta: f64,
    /// 0 when the history is too short for a season: Holt's linear trend.
    pub gamma: f64,
    /// Season length in steps; seasonal slots come from the time, so gaps keep them aligned.
    pub period: usize,
}

impl HoltWinters {
    /// Chooses the parameters minimising the one-step error over the positions `history`
    /// (one segment, up to where forecasting starts), as statsforecast's ETS fits on the
    /// history it is given. The season is used only if the history spans two of them.
    pub fn fit(series: &Series, history: Range<usize>, step: i64, period: usize) -> HoltWinters {
        let seasonal = period > 1 && history.len() >= 2 * period;
        let period = if seasonal { period } else { 1 };
        let gammas: &[f64] = if seasonal { &[0.05, 0.1, 0.3] } else { &[0.0] };
        let mut best = (f64::INFINITY, HoltWinters { alpha: 0.5, beta: 0.0, gamma: 0.0, period });
        for &alpha in &[0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0] {
            for &beta in &[0.0, 0.01, 0.05, 0.1] {
                for &gamma in gammas {
                    let hw = HoltWinters { alpha, beta, gamma, period };
                    let mut sse = 0.0;
                    hw.filter(series, step, history.clone(), |_, _| {}, |e| sse += e * e);
                    if sse < best.0 {
                        best = (sse, hw);
                    }
                }
            }
        }
        best.1
    }

    /// Forecasts `horizon` steps ahead of each position in `origins` (ascending, in the
    /// segment that starts at `from`), smoothing from the segment's start.
    pub fn forecast(
        &self,
        series: &Series,
        step: i64,
        from: usize,
        origins: &[usize],
        horizon: usize,
    ) -> Vec<Vec<f64>> {
        let mut out = Vec::with_capacity(origins.len());
        let mut next = origins.iter().peekable();
        let last = origins.last().map_or(from, |o| o + 1);
        self.filter(
            series,
            step,
            from..last,
            |i, state| {
                while next.peek() == Some(&&i) {
                    next.next();
                    let t = series.times[i];
                    out.push(
                        (1..=horizon).map(|h| state.ahead(h as f64, self.slot(t + h as i64 * step, step))).collect(),
                    );
                }
            },
            |_| {},
        );
        out
    }

    fn slot(&self, time: i64, step: i64) -> usize {
        (time.div_euclid(step.max(1))).rem_euclid(self.period as i64) as usize
    }

    /// Runs the smoother over the positions `range`, calling `at(i, state)` after point
    /// `i` and `error(e)` with each one-step error.
    fn filter(
        &self,
        series: &Series,
        step: i64,
        range: Range<usize>,
        mut at: impl FnMut(usize, &State),
        mut error: impl FnMut(f64),
    ) {
        let from = range.start;
        let times = &series.times[range.clone()];
        let y = &series.values[range];
        let Some(&first) = y.first() else { return };
        // Level from the first season, seasonal offsets from its deviations, trend from the
        // change between the first two seasons (or the first two points).
        let init = y.len().min(self.period);
        let mean = |w: &[f64]| w.iter().sum::<f64>() / w.len() as f64;
        let mut state = State { level: mean(&y[..init]), trend: 0.0, season: vec![0.0; self.period] };
        if self.period > 1 {
            for (i, v) in y[..init].iter().enumerate() {
                state.season[self.slot(times[i], step)] = v - state.level;
            }
            if y.len() >= 2 * self.period {
                state.trend = (mean(&y[self.period..2 * self.period]) - state.level) / self.period as f64;
            }
        } else {
            state.level = first;
            state.trend = y.get(1).map_or(0.0, |second| second - first);
        }
        for (i, &v) in y.iter().enumerate() {
            let slot = self.slot(times[i], step);
            if i > 0 {
                error(v - state.ahead(1.0, slot));
            }
            let s = state.season[slot];
            let level = self.alpha * (v - s) + (1.0 - self.alpha) * (state.level + state.trend);
            state.trend = self.beta * (level - state.level) + (1.0 - self.beta) * state.trend;
            state.season[slot] = self.gamma * (v - level) + (1.0 - self.gamma) * s;
            state.level = level;
            at(from + i, &state);
        }
    }
}

struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
}

impl State {
    fn ahead(&self, h: f64, slot: usize) -> f64 {
        self.level + h * self.trend + self.season[slot]
    }
}

/// The forecasts users get without a model, from the same origins as the model's.
pub(crate) struct Baselines<'a> {
    pub(crate) usage: &'a BTreeMap<String, Usage>,
    /// Series whose values cannot be cores or bytes: the recommenders' floors would decide.
    pub(crate) implausible: &'a BTreeSet<(String, Resource)>,
    pub(crate) step: i64,
    pub(crate) horizon: usize,
    pub(crate) season_ms: i64,
    /// Steps of the moving average.
    pub(crate) window: usize,
}

impl Baselines<'_> {
    /// Adds every baseline's and recommender's track beside each model track of one part;
    /// returns how often seasonal naive fell back to the last value. Holt-Winters is fitted
    /// where it was for `fitted_from`'s first origin, where given: the forecast ahead then
    /// equals the one a later replay makes from the same origin.
    pub(crate) fn add(&self, tracks: &mut Tracks, fitted_from: Option<&Tracks>) -> usize {
        let mut fallbacks = 0;
        let model: Vec<(String, String)> =
            tracks.keys().filter(|k| k.0 == Method::Model).map(|(_, k, c)| (k.clone(), c.clone())).collect();
        // In the order of `forecasts` below.
        const METHODS: [Method; 6] = Method::FROM_HISTORY;
        for (key, column) in model {
            let t = &tracks[&(Method::Model, key.clone(), column.clone())];
            let (origins, actual) = (t.origins.clone(), t.actual.clone());
            let series = &self.usage[&key];
            let s = series.column(&column).expect("model tracks exist only for known columns");
            let positions: Vec<usize> = origins.iter().map(|&o| s.position(o).expect("origins are observed")).collect();
            let first = fitted_from.and_then(|f| f.get(&(Method::Model, key.clone(), column.clone())));
            let hw = self.holt_winters_after(s, first.and_then(|f| f.origins.first().copied()), &positions);
            let samples = series.samples();
            let mut vpa = Vpa::new(VpaSettings::default());
            let mut fed = 0;
            let mut out =
                METHODS.map(|_| Track { origins: origins.clone(), actual: actual.clone(), ..Track::new(self.horizon) });
            for (n, (&origin, &pos)) in origins.iter().zip(&positions).enumerate() {
                let last = s.values[pos];
                let seasonal: Vec<f64> = (1..=self.horizon as i64)
                    .map(|h| {
                        seasonal_naive(s, origin, origin + h * self.step, self.season_ms).unwrap_or_else(|| {
                            fallbacks += 1;
                            last
                        })
                    })
                    .collect();
                while fed < samples.len() && samples[fed].0 <= origin {
                    vpa.add(samples[fed].0, samples[fed].1, samples[fed].2);
                    fed += 1;
                }
                let pick = |r: Option<(f64, f64)>| {
                    r.map_or(f64::NAN, |(c, m)| if column == Resource::Cpu.name() { c } else { m })
                };
                let flat = |v: f64| vec![v; self.horizon];
                let forecasts: [Vec<f64>; 6] = [
                    flat(last),
                    seasonal,
                    flat(moving_average(&s.values, pos, self.window)),
                    hw[n].clone(),
                    flat(pick(vpa.target())),
                    flat(pick(krr(&KrrSettings::default(), &samples, origin))),
                ];
                for (track, forecast) in out.iter_mut().zip(forecasts) {
                    track.last.push(last);
                    track.forecast.extend(forecast);
                }
            }
            let unitless = self.implausible.iter().any(|(k, r)| *k == key && r.name() == column);
            for (method, track) in METHODS.into_iter().zip(out) {
                if !(unitless && [Method::Vpa, Method::Krr].contains(&method)) {
                    tracks.insert((method, key.clone(), column.clone()), track);
                }
            }
        }
        fallbacks
    }

    /// Holt-Winters forecasts from each of `positions`, fitted as from `fitted_at` (an
    /// earlier origin) where given.
    fn holt_winters_after(&self, s: &Series, fitted_at: Option<i64>, positions: &[usize]) -> Vec<Vec<f64>> {
        let first = fitted_at.and_then(|o| s.position(o)).filter(|&p| positions.first().is_some_and(|&q| p < q));
        let mut hw = self.holt_winters(s, &first.into_iter().chain(positions.iter().copied()).collect::<Vec<_>>());
        hw.drain(..usize::from(first.is_some()));
        hw
    }

    /// Holt-Winters forecasts from each position of `origins` (ascending): per segment,
    /// fitted on that segment's history up to its first origin, then run through it.
    fn holt_winters(&self, s: &Series, origins: &[usize]) -> Vec<Vec<f64>> {
        let period = (self.season_ms / self.step.max(1)) as usize;
        let mut out = Vec::with_capacity(origins.len());
        let mut i = 0;
        while i < origins.len() {
            let segment = s.segment(origins[i], self.step);
            let end = origins[i..].iter().position(|o| !segment.contains(o)).map_or(origins.len(), |n| i + n);
            let hw = HoltWinters::fit(s, segment.start..origins[i] + 1, self.step, period);
            out.extend(hw.forecast(s, self.step, segment.start, &origins[i..end], self.horizon));
            i = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Series {
        Series::new(values.iter().enumerate().map(|(i, v)| (i as i64 * 60, *v)).collect())
    }

    #[test]
    fn seasonal_naive_looks_back_whole_seasons_by_time() {
        let s = series(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Origin t=180, season 120 s: t=240 → t=120; t=300 → t=180; t=360 is one season
        // after t=240, past the origin, so two seasons back: t=120.
        assert_eq!(seasonal_naive(&s, 180, 240, 120), Some(3.0));
        assert_eq!(seasonal_naive(&s, 180, 300, 120), Some(4.0));
        assert_eq!(seasonal_naive(&s, 180, 360, 120), Some(3.0));
        // No history a season back: none (the caller falls back to the last value).
        assert_eq!(seasonal_naive(&s, 180, 240, 3600), None);
    }

    #[test]
    fn moving_average_takes_what_history_there_is() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(moving_average(&v, 3, 2), 3.5);
        assert_eq!(moving_average(&v, 1, 10), 1.5);
    }

    #[test]
    fn holt_winters_learns_an_exact_seasonal_pattern() {
        // A season of 4 steps repeated: the fitted smoother forecasts it back.
        let pattern = [1.0, 5.0, 2.0, 8.0];
        let values: Vec<f64> = (0..40).map(|i| pattern[i % 4] + 10.0).collect();
        let s = series(&values);
        let hw = HoltWinters::fit(&s, 0..32, 60, 4);
        assert_eq!(hw.period, 4);
        let f = hw.forecast(&s, 60, 0, &[35], 4);
        for (h, v) in f[0].iter().enumerate() {
            assert!((v - values[36 + h]).abs() < 0.2, "step {h}: {v} vs {}", values[36 + h]);
        }
        // Too short for two seasons: no season, Holt's trend on a straight line.
        let line: Vec<f64> = (0..10).map(|i| 2.0 * i as f64).collect();
        let s = series(&line);
        let hw = HoltWinters::fit(&s, 0..10, 60, 8);
        assert_eq!(hw.period, 1);
        let f = hw.forecast(&s, 60, 0, &[9], 2);
        assert!((f[0][1] - 22.0).abs() < 1.0, "{:?}", f[0]);
    }

    #[test]
    fn holt_winters_starts_again_after_a_gap() {
        // A level of 100, a gap of an hour, then a level of 5: smoothing from the second
        // segment's start forecasts 5, not a blend carried across the gap.
        let mut points: Vec<(i64, f64)> = (0..20).map(|i| (i * 60, 100.0)).collect();
        points.extend((0..20).map(|i| (3600 + 1200 + i * 60, 5.0)));
        let s = Series::new(points);
        let seg = s.segment(30, 60);
        assert_eq!(seg, 20..40);
        assert_eq!(s.segment(3, 60), 0..20);
        let hw = HoltWinters::fit(&s, seg.start..35, 60, 1);
        let f = hw.forecast(&s, 60, seg.start, &[35], 3);
        assert!(f[0].iter().all(|v| (v - 5.0).abs() < 1e-9), "{:?}", f[0]);
    }
}
