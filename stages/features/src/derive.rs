//! One series' features, computed in a pass over its points: the split, the transform, the
//! scaling fitted on its training part, calendar sin/cos, lags, rolling and season
//! statistics. `features.build` feeds it the `resampled` table a series at a time.
//!
//! The arithmetic is the one the SQL of earlier versions did (sequential sums, Welford's
//! running variance, added then retracted as a window slides), in f64 until the float32
//! output, so the tables agree with theirs to the last bit of nearly every value.

use applearner_contracts::percentile;
use applearner_pipeline::arrow::array::Float32Builder;

use crate::{Calendar, Cut, FeaturesParams, Scale, Transform};

/// The points of one series in time order: per value column its raw values, per row its
/// segment and time in ms.
#[derive(Debug, Default)]
pub struct Points {
    pub segments: Vec<u32>,
    pub times: Vec<i64>,
    pub values: Vec<Vec<f64>>,
}

/// What one series gives: per row its part (index into train, validation, test), per value
/// column the scaler fitted on the training part (none: it has no training points).
pub struct Derived {
    pub parts: Vec<u8>,
    pub scalers: Option<Vec<(f64, f64)>>,
}

/// The derived features' names, after the value columns (calendar, then per column lags and
/// rolling mean/std, then per column the season lags and means), and the warm-up: the steps
/// at a segment's start they need before they are defined.
pub fn names(params: &FeaturesParams, columns: &[String]) -> (Vec<String>, u32) {
    let (mut names, mut warmup) = (Vec::new(), 0);
    for cal in &params.calendar {
        let name = match cal {
            Calendar::Hour => "hour",
            Calendar::Weekday => "weekday",
        };
        names.extend([format!("{name}_sin"), format!("{name}_cos")]);
    }
    for c in columns {
        for lag in &params.lags {
            names.push(format!("{c}_lag{lag}"));
            warmup = warmup.max(*lag);
        }
        for r in &params.rolling {
            names.extend([format!("{c}_mean{r}"), format!("{c}_std{r}")]);
            warmup = warmup.max(r - 1);
        }
    }
    for c in columns {
        for season in &params.season_lags {
            names.extend([format!("{c}_season{season}"), format!("{c}_season{season}_mean")]);
            warmup = warmup.max(season - 1);
        }
    }
    (names, warmup)
}

/// Appends the series' features to `out` (one builder per feature, in [`names`]' order after
/// the value columns) and returns its parts and scalers; nothing is appended to a series
/// without training points.
pub fn derive(points: &Points, params: &FeaturesParams, cut: Cut, out: &mut [Float32Builder]) -> Derived {
    let runs = segment_runs(&points.segments);
    let parts = parts(&runs, &points.times, cut);
    let x: Vec<Vec<f64>> =
        points.values.iter().map(|v| v.iter().map(|&v| transform(params.transform, v)).collect()).collect();
    let Some(scalers) = x.iter().map(|x| fit(params.scale, x, &parts)).collect::<Option<Vec<_>>>() else {
        return Derived { parts, scalers: None };
    };
    let z: Vec<Vec<f64>> =
        x.iter().zip(&scalers).map(|(x, (center, scale))| x.iter().map(|v| (v - center) / scale).collect()).collect();
    let mut out = out.iter_mut();
    for z in &z {
        out.next().expect("a builder per feature").extend(z.iter().map(|&v| Some(v as f32)));
    }
    for cal in &params.calendar {
        let angles: Vec<f64> = points.times.iter().map(|&t| angle(*cal, t)).collect();
        out.next().expect("sin").extend(angles.iter().map(|a| Some(a.sin() as f32)));
        out.next().expect("cos").extend(angles.iter().map(|a| Some(a.cos() as f32)));
    }
    for z in &z {
        for &lag in &params.lags {
            per_run(&runs, z, out.next().expect("lag"), |z, b| lagged(z, lag as usize, b));
        }
        for &r in &params.rolling {
            let mean = out.next().expect("mean");
            per_run(&runs, z, mean, |z, b| rolling(z, r as usize, b, Stat::Mean));
            per_run(&runs, z, out.next().expect("std"), |z, b| rolling(z, r as usize, b, Stat::Std));
        }
    }
    let horizon = params.windows.horizon as usize;
    for z in &z {
        for &season in &params.season_lags {
            let (season, lag) = (season as usize, season as usize - horizon);
            per_run(&runs, z, out.next().expect("season"), |z, b| lagged(z, lag, b));
            per_run(&runs, z, out.next().expect("season mean"), |z, b| season_mean(z, season, lag, b));
        }
    }
    Derived { parts, scalers: Some(scalers) }
}

/// The `[start, end)` rows of each segment (consecutive rows with one segment number).
fn segment_runs(segments: &[u32]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if segments[run.0] == *s => run.1 = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// Each row's part: by fractions of its segment (the last rows are test), or by cut-offs.
fn parts(runs: &[(usize, usize)], times: &[i64], cut: Cut) -> Vec<u8> {
    let mut parts = Vec::with_capacity(times.len());
    for &(start, end) in runs {
        let n = (end - start) as f64;
        for i in 0..end - start {
            parts.push(match cut {
                Cut::Fractions { validation, test } => {
                    let i = i as f64;
                    if i >= n - (n * test).round() {
                        2
                    } else if i >= n - (n * (validation + test)).round() {
                        1
                    } else {
                        0
                    }
                }
                Cut::Times { validation_ms, test_ms } => {
                    let t = times[start + i];
                    u8::from(t >= validation_ms) + u8::from(t >= test_ms)
                }
            });
        }
    }
    parts
}

fn transform(t: Transform, v: f64) -> f64 {
    match t {
        Transform::None => v,
        Transform::Log1p => (1.0 + v).ln(),
    }
}

/// Centre and scale from the training rows; a constant training part (no spread) scales by
/// 1 rather than divide by 0. None without training rows.
fn fit(scale: Scale, x: &[f64], parts: &[u8]) -> Option<(f64, f64)> {
    let train: Vec<f64> = x.iter().zip(parts).filter(|(_, p)| **p == 0).map(|(v, _)| *v).collect();
    if train.is_empty() {
        return None;
    }
    let (center, spread) = match scale {
        Scale::Zscore => {
            let mut w = Welford::default();
            train.iter().for_each(|v| w.add(*v));
            (train.iter().sum::<f64>() / train.len() as f64, w.variance().sqrt())
        }
        Scale::Minmax => {
            let (min, max) = train.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
            (min, max - min)
        }
        Scale::Robust => {
            let mut sorted = train;
            sorted.sort_by(f64::total_cmp);
            (percentile(&sorted, 50.0), percentile(&sorted, 75.0) - percentile(&sorted, 25.0))
        }
        Scale::None => (0.0, 1.0),
    };
    Some((center, if spread > 0.0 { spread } else { 1.0 }))
}

/// The angle of a time in the day or the week; 1970-01-01 was a Thursday: day 0 is weekday 3
/// counting from Monday.
fn angle(cal: Calendar, t: i64) -> f64 {
    const DAY: i64 = 86_400_000;
    let in_day = (t % DAY) as f64 / DAY as f64;
    match cal {
        Calendar::Hour => 2.0 * std::f64::consts::PI * (t % DAY) as f64 / DAY as f64,
        Calendar::Weekday => 2.0 * std::f64::consts::PI * (((t / DAY + 3) % 7) as f64 + in_day) / 7.0,
    }
}

/// Runs `feature` over each segment's rows: windows never reach across a segment's start.
fn per_run(
    runs: &[(usize, usize)],
    z: &[f64],
    out: &mut Float32Builder,
    feature: impl Fn(&[f64], &mut Float32Builder),
) {
    for &(start, end) in runs {
        feature(&z[start..end], out);
    }
}

fn lagged(z: &[f64], lag: usize, out: &mut Float32Builder) {
    out.extend((0..z.len()).map(|i| i.checked_sub(lag).map(|j| z[j] as f32)));
}

enum Stat {
    Mean,
    Std,
}

/// The trailing mean or population standard deviation of the last `r` rows; null until `r`
/// rows are there (a partial window would mean something else).
fn rolling(z: &[f64], r: usize, out: &mut Float32Builder, stat: Stat) {
    let mut w = Welford::default();
    for i in 0..z.len() {
        w.add(z[i]);
        if i >= r {
            w.retract(z[i - r]);
        }
        out.append_option((i + 1 >= r).then(|| match stat {
            Stat::Mean => w.mean() as f32,
            // A sliding variance is updated by subtraction, so a flat stretch can come out
            // a hair below zero; its square root would be NaN. Clamp it at zero.
            Stat::Std => w.variance().max(0.0).sqrt() as f32,
        }));
    }
}

/// The mean of rows `[i - season + 1, i - lag]`: the horizon a season before the one
/// forecast at row i; null until a whole season is there.
fn season_mean(z: &[f64], season: usize, lag: usize, out: &mut Float32Builder) {
    let mut w = Welford::default();
    for i in 0..z.len() {
        if i >= lag {
            w.add(z[i - lag]);
        }
        if i >= season {
            w.retract(z[i - season]);
        }
        out.append_option((i + 1 >= season).then(|| w.mean() as f32));
    }
}

/// A running sum and Welford's mean and squared deviations, with values added and removed.
#[derive(Default)]
struct Welford {
    count: f64,
    sum: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn add(&mut self, v: f64) {
        self.count += 1.0;
        self.sum += v;
        let delta = v - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (v - self.mean);
    }

    fn retract(&mut self, v: f64) {
        self.count -= 1.0;
        self.sum -= v;
        let delta = self.mean - v;
        self.mean += delta / self.count;
        self.m2 -= delta * (self.mean - v);
    }

    fn mean(&self) -> f64 {
        self.sum / self.count
    }

    fn variance(&self) -> f64 {
        self.m2 / self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use applearner_pipeline::arrow::array::Array;

    #[test]
    fn sliding_statistics_match_their_definitions() {
        let z: Vec<f64> = (0..50).map(|i| ((i * 7) % 11) as f64 * 0.37 - 1.0).collect();
        let (mut mean, mut std, mut season) = (Float32Builder::new(), Float32Builder::new(), Float32Builder::new());
        rolling(&z, 5, &mut mean, Stat::Mean);
        rolling(&z, 5, &mut std, Stat::Std);
        season_mean(&z, 12, 9, &mut season);
        let (mean, std, season) = (mean.finish(), std.finish(), season.finish());
        for i in 0..z.len() {
            if i < 4 {
                assert!(mean.is_null(i) && std.is_null(i));
            } else {
                let w = &z[i - 4..=i];
                let m = w.iter().sum::<f64>() / 5.0;
                let s = (w.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 5.0).sqrt();
                assert!((mean.value(i) as f64 - m).abs() < 1e-6 && (std.value(i) as f64 - s).abs() < 1e-6, "{i}");
            }
            if i < 11 {
                assert!(season.is_null(i));
            } else {
                let m = z[i - 11..=i - 9].iter().sum::<f64>() / 3.0;
                assert!((season.value(i) as f64 - m).abs() < 1e-6, "{i}");
            }
        }
    }
}
