//! Replaying real usage against requests: the change policy, the planning intervals and
//! what each setting asks for in them, and the totals a replay adds up.

use super::*;
use applearner_contracts::tables::forecasts as f;

/// How forecasts become requests: floor, rounding and how often they may change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub floor: f64,
    pub step: f64,
    pub hold_ms: i64,
    pub min_change: f64,
}

impl Policy {
    pub fn round(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v.max(self.floor) } else { self.floor };
        if self.step > 0.0 { (v / self.step - 1e-9).ceil() * self.step } else { v }
    }

    /// The requests in force over intervals starting at `starts` for the wanted values,
    /// and how many times they changed.
    pub fn apply(&self, starts: &[i64], wanted: &[f64]) -> (Vec<f64>, usize) {
        let mut out = Vec::with_capacity(wanted.len());
        let (mut current, mut since, mut changes) = (None::<f64>, i64::MIN, 0);
        for (&t, &w) in starts.iter().zip(wanted) {
            let w = self.round(w);
            match current {
                Some(c) if (w - c).abs() <= self.min_change * c || t.saturating_sub(since) < self.hold_ms => {}
                Some(_) => {
                    current = Some(w);
                    since = t;
                    changes += 1;
                }
                None => {
                    current = Some(w);
                    since = t;
                }
            }
            out.push(current.expect("set above"));
        }
        (out, changes)
    }
}

/// The outcome of replaying usage against requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Replay {
    /// Σ requested × time, Σ used × time, Σ max(requested − used, 0) × time (unit-hours).
    pub provisioned: f64,
    pub used: f64,
    pub slack: f64,
    /// Steps with usage above the line (request for CPU, limit for memory), and all steps.
    pub under_steps: usize,
    pub steps: usize,
    pub changes: usize,
}

impl Replay {
    /// `line[i]` is what usage `used[i]` must stay under; `request[i]` what was reserved.
    pub fn add(&mut self, request: f64, line: f64, used: f64, hours: f64) {
        self.provisioned += request * hours;
        self.used += used * hours;
        self.slack += (request - used).max(0.0) * hours;
        self.under_steps += usize::from(used > line);
        self.steps += 1;
    }

    pub fn merge(&mut self, other: &Replay) {
        self.provisioned += other.provisioned;
        self.used += other.used;
        self.slack += other.slack;
        self.under_steps += other.under_steps;
        self.steps += other.steps;
        self.changes += other.changes;
    }

    pub fn slack_pct(&self) -> f64 {
        100.0 * self.slack / self.provisioned
    }

    pub fn under_pct(&self) -> f64 {
        100.0 * self.under_steps as f64 / self.steps as f64
    }
}

/// Replays the actual usage in `forecasts` over `intervals` against the requests `policy`
/// makes of `wanted`; `limit` is the limit as a multiple of the request, `unit` the size
/// of the reported unit (1 core, 1 GiB).
pub(super) fn replay(
    intervals: &[Interval],
    forecasts: &Forecasts,
    wanted: &[f64],
    policy: &Policy,
    limit: f64,
    unit: f64,
    step_ms: i64,
) -> Replay {
    let starts: Vec<i64> = intervals.iter().map(|i| i.start).collect();
    let (requests, changes) = policy.apply(&starts, wanted);
    let mut out = Replay { changes, ..Default::default() };
    for (iv, request) in intervals.iter().zip(&requests) {
        for &(n, h) in &iv.cells {
            out.add(request / unit, request * limit / unit, forecasts.actual[n][h] / unit, step_ms as f64 / 3.6e6);
        }
    }
    out
}

/// The model's slack at a given under-provisioned time, read off its trade-off curve
/// (points `(under %, slack %)`) by linear interpolation; `None` outside its range.
pub fn slack_at(curve: &[(f64, f64)], under: f64) -> Option<f64> {
    let mut c: Vec<(f64, f64)> = curve.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    // Per under-provisioned time keep the least slack: the best the model offers there.
    c.dedup_by(|b, a| a.0 == b.0);
    let i = c.iter().position(|p| p.0 >= under)?;
    if c[i].0 == under || i == 0 {
        return (c[i].0 == under).then_some(c[i].1);
    }
    let (a, b) = (c[i - 1], c[i]);
    Some(a.1 + (b.1 - a.1) * (under - a.0) / (b.0 - a.0))
}

/// The model's forecasts of one series and resource, per origin: step times, actuals and
/// every forecast column (`forecast`, `p50`, …).
#[derive(Default)]
pub(super) struct Forecasts {
    pub origins: Vec<i64>,
    pub times: Vec<Vec<i64>>,
    pub actual: Vec<Vec<f64>>,
    pub columns: BTreeMap<String, Vec<Vec<f64>>>,
}

pub(super) type ByKey = BTreeMap<(String, String), Forecasts>;

/// The model's rows of `forecasts`: with actuals (the test part) and past the end (ahead);
/// also the forecast columns and the grid step.
pub(super) fn read_forecasts(batches: &[RecordBatch]) -> Result<(ByKey, ByKey, Vec<String>, i64), BoxError> {
    let (mut past, mut future) = (ByKey::new(), ByKey::new());
    let mut columns = Vec::new();
    let mut step_ms = i64::MAX;
    for b in batches {
        let schema = b.schema();
        columns = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n == "forecast" || n.parse::<QuantileSource>().is_ok())
            .collect();
        let (method, key, resource) =
            (strings(b, f::NAME, f::METHOD)?, strings(b, f::NAME, f::KEY)?, strings(b, f::NAME, f::RESOURCE)?);
        let (origin, time, actual) =
            (ints(b, f::NAME, f::ORIGIN)?, ints(b, f::NAME, f::TIMESTAMP)?, floats(b, f::NAME, f::ACTUAL)?);
        let values: Vec<Vec<f64>> = columns.iter().map(|c| floats(b, f::NAME, c)).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            if method[i] != "model" {
                continue;
            }
            step_ms = step_ms.min(time[i] - origin[i]);
            let map = if actual[i].is_finite() { &mut past } else { &mut future };
            let f = map.entry((key[i].clone(), resource[i].clone())).or_default();
            if f.origins.last() != Some(&origin[i]) {
                f.origins.push(origin[i]);
                f.times.push(Vec::new());
                f.actual.push(Vec::new());
                for c in &columns {
                    f.columns.entry(c.clone()).or_default().push(Vec::new());
                }
            }
            f.times.last_mut().expect("pushed").push(time[i]);
            f.actual.last_mut().expect("pushed").push(actual[i]);
            for (c, v) in columns.iter().zip(&values) {
                f.columns.get_mut(c).expect("made").last_mut().expect("pushed").push(v[i]);
            }
        }
    }
    if step_ms == i64::MAX {
        return Err(EvaluateError::NoModelForecasts.into());
    }
    Ok((past, future, columns, step_ms))
}

/// A planning interval: when it starts and the (origin, step) cells it covers.
pub(super) struct Interval {
    pub start: i64,
    pub cells: Vec<(usize, usize)>,
}

/// Intervals from origins at least a horizon apart, each horizon cut every `interval_ms`.
pub(super) fn intervals(f: &Forecasts, interval_ms: i64) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let mut covered_until = i64::MIN;
    for (n, &o) in f.origins.iter().enumerate() {
        if o < covered_until {
            continue;
        }
        for (h, &t) in f.times[n].iter().enumerate() {
            let start = o + (t - o - 1).div_euclid(interval_ms) * interval_ms;
            match out.last_mut() {
                Some(iv) if iv.start == start => iv.cells.push((n, h)),
                _ => out.push(Interval { start, cells: vec![(n, h)] }),
            }
        }
        covered_until = f.times[n].last().copied().unwrap_or(o);
    }
    out
}

/// What a setting asks for in each interval, CPU and memory.
/// What a setting asks for in each interval, per resource (empty where not forecast).
pub(super) fn wanted(
    s: &Setting,
    intervals: &[Interval],
    forecasts: [Option<&Forecasts>; 2],
    series: &Usage,
) -> [Vec<f64>; 2] {
    let samples = || series.samples();
    let (cpu, memory): (Vec<f64>, Vec<f64>) = match s.method {
        "model" => {
            let peak = |f: Option<&Forecasts>| -> Vec<f64> {
                let Some(f) = f else { return Vec::new() };
                let values = &f.columns[&s.column];
                intervals
                    .iter()
                    .map(|iv| iv.cells.iter().map(|&(n, h)| values[n][h]).fold(f64::MIN, f64::max) * (1.0 + s.a))
                    .collect()
            };
            return [peak(forecasts[0]), peak(forecasts[1])];
        }
        "vpa" => {
            let samples = samples();
            let mut vpa = Vpa::new(VpaSettings { percentile: s.a, ..Default::default() });
            let mut fed = 0;
            intervals
                .iter()
                .map(|iv| {
                    while fed < samples.len() && samples[fed].0 <= iv.start {
                        vpa.add(samples[fed].0, samples[fed].1, samples[fed].2);
                        fed += 1;
                    }
                    vpa.target().unwrap_or((f64::NAN, f64::NAN))
                })
                .unzip()
        }
        _ => {
            let samples = samples();
            let settings = KrrSettings { cpu_percentile: s.a, memory_buffer: s.b, ..Default::default() };
            intervals.iter().map(|iv| krr(&settings, &samples, iv.start).unwrap_or((f64::NAN, f64::NAN))).unzip()
        }
    };
    [cpu, memory]
}
