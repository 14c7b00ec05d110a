//! What a planner knows at each decision: the model's forecast peaks, the recent peak, what
//! KRR and VPA would recommend; and the usage that followed until the next decision.

use super::*;
use crate::recommend::{KrrSettings, Vpa, VpaSettings};
use crate::series::Series;
use applearner_contracts::tables::forecasts as f;
use applearner_contracts::{percentile, percentile_unsorted};
use applearner_pipeline::arrow::array::{AsArray, Scalar, StringArray};
use applearner_pipeline::arrow::compute::filter_record_batch;
use applearner_pipeline::arrow::compute::kernels::cmp::eq;
use applearner_pipeline::arrow::datatypes::DataType;
use applearner_pipeline::columns::column;

/// A way to size a line before its multiplier: each is replayed, and the model's are
/// calibrated, from what was known at each decision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// The peak of a forecast column (`forecast`, `p90`, …) over the horizon.
    Forecast(String),
    /// That peak (scaled by the factor), never below a recent quantile (not scaled): a
    /// forecast never below what just happened.
    ForecastOrRecent(String, Recent),
    /// A quantile of the usage over the last hours.
    Recent(Recent),
    /// KRR `simple`: CPU at this percentile (in tenths of a percent) of its history, memory
    /// at the history's peak (1000).
    Krr(u32),
    /// VPA's target at this percentile (tenths of a percent) before its safety margin (at
    /// least VPA's floors).
    Vpa(u32),
    /// The highest usage seen up to the decision: what a limit's cap is a multiple of.
    Seen,
}

impl Rule {
    /// The rule whose values the factor scales, and the one they never go under.
    pub fn parts(&self) -> (Rule, Option<Rule>) {
        match self {
            Rule::ForecastOrRecent(c, r) => (Rule::Forecast(c.clone()), Some(Rule::Recent(*r))),
            rule => (rule.clone(), None),
        }
    }

    /// The rule with its factor `k` written in: `p90 peak × 1.2`, `max(p99 peak × 1.2, 1-day p99)`.
    pub fn scaled(&self, k: &str) -> String {
        match self.parts() {
            (scaled, Some(floor)) => format!("max({} × {k}, {})", scaled.label(), floor.label()),
            (scaled, None) => format!("{} × {k}", scaled.label()),
        }
    }

    pub fn label(&self) -> String {
        let name = |c: &str| if c == f::FORECAST { "point".to_string() } else { c.to_string() };
        match self {
            Rule::Forecast(c) => format!("{} peak", name(c)),
            Rule::ForecastOrRecent(c, r) => format!("{} peak, at least the {}", name(c), r.label()),
            Rule::Recent(r) => r.label(),
            Rule::Krr(1000) => "history max".into(),
            Rule::Krr(p) => format!("history p{}", *p as f64 / 10.0),
            Rule::Vpa(p) => format!("VPA p{}", *p as f64 / 10.0),
            Rule::Seen => "highest usage seen".into(),
        }
    }
}

/// KRR's CPU percentiles its knob is tuned over (tenths of a percent); 950 is its default.
pub const KRR_PERCENTILES: [u32; 9] = [900, 950, 970, 980, 990, 995, 998, 999, 1000];
/// VPA's target percentiles tuned over (with its margin); 900 is its default.
pub const VPA_PERCENTILES: [u32; 4] = [900, 950, 990, 999];
/// A quantile (tenths of a percent) of the usage over the last hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Recent {
    pub hours: u32,
    pub tenths: u32,
}

impl Recent {
    /// `1-hour`, `1-day`, `7-day`.
    fn window(&self) -> String {
        match self.hours {
            h if h % 24 == 0 => format!("{}-day", h / 24),
            h => format!("{h}-hour"),
        }
    }

    fn label(&self) -> String {
        match self.tenths {
            1000 => format!("{} peak", self.window()),
            t => format!("{} p{}", self.window(), t as f64 / 10.0),
        }
    }
}

/// The recent quantiles the rules use: the last hour's and 6 hours' peak, the last day's
/// and week's p99 and peak.
pub const RECENT: [Recent; 6] = [
    Recent { hours: 1, tenths: 1000 },
    Recent { hours: 6, tenths: 1000 },
    Recent { hours: 24, tenths: 990 },
    Recent { hours: 24, tenths: 1000 },
    Recent { hours: 168, tenths: 990 },
    Recent { hours: 168, tenths: 1000 },
];

/// One series' decisions for one resource and part.
#[derive(Default, Debug)]
pub struct Timeline {
    pub at: Vec<i64>,
    /// Per decision, the origin of the forecast it is sized on (the hours of one forecast
    /// share it).
    pub known: Vec<i64>,
    /// Per decision, the usage over the steps until the next (none ahead), and its times.
    pub usage: Steps,
    /// Per rule, per decision: the value it asks for before any multiplier.
    pub bases: BTreeMap<Rule, Vec<f64>>,
}

impl Timeline {
    pub fn points(&self) -> usize {
        self.usage.points()
    }

    /// This timeline's decisions, then `next`'s: the test part and the plan ahead, walked as
    /// one loop. Rules missing from either are dropped.
    pub fn joined(&self, next: &Timeline) -> Timeline {
        let cat = |a: &[i64], b: &[i64]| [a, b].concat();
        let bases = self
            .bases
            .iter()
            .filter_map(|(rule, v)| Some((rule.clone(), [v.as_slice(), next.bases.get(rule)?].concat())))
            .collect();
        Timeline {
            at: cat(&self.at, &next.at),
            known: cat(&self.known, &next.known),
            usage: self.usage.chain(next.usage.view(0..next.usage.len())),
            bases,
        }
    }

    /// The decisions in `r`, as the replays read them.
    pub fn view(&self, r: std::ops::Range<usize>) -> View<'_> {
        View { at: &self.at[r.clone()], known: &self.known[r.clone()], usage: self.usage.view(r) }
    }

    /// Its vectors at their lengths: a timeline grows by a push per decision, and the plan
    /// holds every series'.
    fn shrink_to_fit(&mut self) {
        self.at.shrink_to_fit();
        self.known.shrink_to_fit();
        self.usage.shrink_to_fit();
        self.bases.values_mut().for_each(Vec::shrink_to_fit);
    }
}

/// Per decision, the usage over the steps that followed it and their times, one decision
/// after another in one vector each: a vector per decision would cost more than its dozen
/// values.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Steps {
    values: Vec<f64>,
    times: Vec<i64>,
    /// Where each decision's steps end.
    ends: Vec<usize>,
}

impl Steps {
    pub fn push(&mut self, values: &[f64], times: &[i64]) {
        assert_eq!(values.len(), times.len(), "a time per value");
        self.values.extend_from_slice(values);
        self.times.extend_from_slice(times);
        self.ends.push(self.values.len());
    }

    /// Decisions.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Steps of every decision.
    pub fn points(&self) -> usize {
        self.values.len()
    }

    /// The decisions in `r`, without a copy.
    pub fn view(&self, r: std::ops::Range<usize>) -> StepsView<'_> {
        let start = r.start.checked_sub(1).map_or(0, |p| self.ends[p]);
        StepsView { values: &self.values, times: &self.times, ends: &self.ends[r], start }
    }

    /// These decisions, then `next`'s.
    pub fn chain(&self, next: StepsView) -> Steps {
        let mut out = self.clone();
        next.iter().enumerate().for_each(|(i, v)| out.push(v, next.times(i)));
        out
    }

    fn shrink_to_fit(&mut self) {
        self.values.shrink_to_fit();
        self.times.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Some of a timeline's decisions (all of them, or a half for calibrating on one half and
/// checking on the other), as the replays read them: no copy.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub at: &'a [i64],
    pub known: &'a [i64],
    pub usage: StepsView<'a>,
}

impl View<'_> {
    pub fn points(&self) -> usize {
        self.usage.points()
    }
}

/// Some decisions' steps of a [`Steps`].
#[derive(Clone, Copy)]
pub struct StepsView<'a> {
    values: &'a [f64],
    times: &'a [i64],
    /// Where each decision's steps end in `values`.
    ends: &'a [usize],
    /// Where the first one's begin.
    start: usize,
}

impl<'a> StepsView<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Steps of every decision.
    pub fn points(&self) -> usize {
        self.ends.last().map_or(0, |end| end - self.start)
    }

    pub fn get(&self, i: usize) -> Option<&'a [f64]> {
        (i < self.len()).then(|| &self.values[self.steps_of(i)])
    }

    pub fn times(&self, i: usize) -> &'a [i64] {
        &self.times[self.steps_of(i)]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [f64]> + use<'a> {
        let v = *self;
        (0..self.len()).map(move |i| &v.values[v.steps_of(i)])
    }

    fn steps_of(&self, i: usize) -> std::ops::Range<usize> {
        i.checked_sub(1).map_or(self.start, |p| self.ends[p])..self.ends[i]
    }
}

impl std::ops::Index<usize> for StepsView<'_> {
    type Output = [f64];

    fn index(&self, i: usize) -> &[f64] {
        &self.values[self.steps_of(i)]
    }
}

/// The forecasts of one (series, resource, part) as decisions: per origin and hour of its
/// horizon (the whole horizon when it is an hour or less), the decision's start, the origin
/// its forecast was made at (all that is known then), the steps' actuals and per column the
/// forecast's peak over those steps.
#[derive(Default)]
pub struct Origins {
    pub at: Vec<i64>,
    pub known: Vec<i64>,
    pub last_step: Vec<i64>,
    pub actual: Vec<Vec<f64>>,
    pub times: Vec<Vec<i64>>,
    /// Per forecast column (in the order read), per decision.
    pub peaks: Vec<Vec<f64>>,
}

impl Origins {
    /// One forecast row: a step of the decision its origin and time fall in (a new one where
    /// they do not fall in the last), with its actual and each column's value.
    fn add(&mut self, origin: i64, time: i64, actual: f64, values: impl ExactSizeIterator<Item = f64>) {
        let start = origin + (time - origin - 1) / DECISION_MS * DECISION_MS;
        if self.at.last() != Some(&start) || self.known.last() != Some(&origin) {
            self.at.push(start);
            self.known.push(origin);
            self.last_step.push(time);
            self.actual.push(Vec::new());
            self.times.push(Vec::new());
            self.peaks.resize_with(values.len(), Vec::new);
            self.peaks.iter_mut().for_each(|p| p.push(f64::MIN));
        }
        *self.last_step.last_mut().expect("pushed") = time;
        if actual.is_finite() {
            self.actual.last_mut().expect("pushed").push(actual);
            self.times.last_mut().expect("pushed").push(time);
        }
        for (peaks, v) in self.peaks.iter_mut().zip(values) {
            let peak = peaks.last_mut().expect("pushed");
            *peak = peak.max(v);
        }
    }
}

/// (key, resource, part) → its model forecasts.
pub type ByPart = BTreeMap<(String, String, String), Origins>;

/// How long one decision holds within a longer horizon: a day-ahead forecast gives 24
/// hourly decisions, each sized on its own hour's forecast.
pub const DECISION_MS: i64 = 3_600_000;

/// One method's forecasts read from some rows of `forecasts`: per (series, resource, part)
/// its decisions, the forecast columns, and the grid step (`i64::MAX` where none was read).
pub struct Forecasted {
    pub by_part: ByPart,
    pub columns: Vec<String>,
    pub step_ms: i64,
}

/// The rows of `forecasts` of method `wanted` in `batches`.
pub fn read_forecasts<E: Into<BoxError>>(
    batches: impl Iterator<Item = Result<RecordBatch, E>>,
    wanted: &str,
) -> Result<Forecasted, BoxError> {
    let mut out = ByPart::new();
    let mut columns = Vec::new();
    let mut step_ms = i64::MAX;
    // The rows of one (series, resource, part) follow one another: each is looked up in
    // `out` where its run starts, not at every row.
    let mut current: Option<((String, String, String), Origins)> = None;
    for b in batches {
        // A batch at a time: the table holds every method's forecasts, the plan reads one.
        let b = &b.map_err(Into::into)?;
        let methods = column(b, f::NAME, f::METHOD, &DataType::Utf8)?;
        let b = &filter_record_batch(b, &eq(&methods, &Scalar::new(StringArray::from(vec![wanted])))?)?;
        columns = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n == f::FORECAST || n.parse::<QuantileSource>().is_ok())
            .collect();
        let text = |name| Ok::<_, BoxError>(column(b, f::NAME, name, &DataType::Utf8)?.as_string::<i32>().clone());
        let (part, key, resource) = (text(f::PART)?, text(f::KEY)?, text(f::RESOURCE)?);
        let (origin, time, actual) =
            (ints(b, f::NAME, f::ORIGIN)?, ints(b, f::NAME, f::TIMESTAMP)?, floats(b, f::NAME, f::ACTUAL)?);
        let values: Vec<Vec<f64>> = columns.iter().map(|c| floats(b, f::NAME, c)).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            step_ms = step_ms.min(time[i] - origin[i]);
            let (k, r, p) = (key.value(i), resource.value(i), part.value(i));
            if current.as_ref().is_none_or(|(at, _)| (at.0.as_str(), at.1.as_str(), at.2.as_str()) != (k, r, p)) {
                let at = (k.to_string(), r.to_string(), p.to_string());
                let o = out.remove(&at).unwrap_or_default();
                if let Some((at, o)) = current.replace((at, o)) {
                    out.insert(at, o);
                }
            }
            let o = &mut current.as_mut().expect("set").1;
            o.add(origin[i], time[i], actual[i], values.iter().map(|v| v[i]));
        }
    }
    if let Some((at, o)) = current {
        out.insert(at, o);
    }
    Ok(Forecasted { by_part: out, columns, step_ms })
}

/// The timelines of one series, per (resource, part) of `parts`, from its forecasts (taken
/// out of `forecasts`, each freed once its timeline is made) and its usage. Decisions sit at
/// origins a horizon apart (overlapping origins are skipped).
pub fn timelines(
    key: &str,
    forecasts: &mut ByPart,
    usage: &Usage,
    columns: &[String],
    parts: &[&str],
) -> BTreeMap<(String, String), Timeline> {
    let mut out = BTreeMap::new();
    let samples = usage.samples();
    for resource in Resource::ALL {
        let Some(series) = usage.column(resource.name()) else { continue };
        let highest = running_max(&series.values);
        // VPA learns from every sample in time order: feed it across the parts.
        let mut vpa = Vpa::new(VpaSettings::default());
        let mut fed = 0;
        for part in PARTS.into_iter().filter(|p| parts.contains(p)) {
            let Some(o) = forecasts.remove(&(key.to_string(), resource.name().to_string(), part.to_string())) else {
                continue;
            };
            let mut t = Timeline::default();
            // An origin is taken whole, or skipped whole when the previous one still covers it.
            let (mut covered_until, mut current, mut take) = (i64::MIN, None, false);
            for n in 0..o.at.len() {
                let (at, known) = (o.at[n], o.known[n]);
                if current != Some(known) {
                    (current, take) = (Some(known), at >= covered_until);
                }
                if !take || (part != f::AHEAD && o.actual[n].is_empty()) {
                    continue;
                }
                covered_until = o.last_step[n];
                // What a decision may know: the usage up to its forecast's origin.
                while fed < samples.len() && samples[fed].0 <= known {
                    vpa.add(samples[fed].0, samples[fed].1, samples[fed].2);
                    fed += 1;
                }
                for (c, peaks) in columns.iter().zip(&o.peaks) {
                    t.bases.entry(Rule::Forecast(c.clone())).or_default().push(peaks[n]);
                }
                for (rule, v) in history(series, &samples, &vpa, known, resource) {
                    t.bases.entry(rule).or_default().push(v);
                }
                let seen =
                    series.times.partition_point(|&t| t <= known).checked_sub(1).map_or(f64::NAN, |i| highest[i]);
                t.bases.entry(Rule::Seen).or_default().push(seen);
                t.at.push(at);
                t.known.push(known);
                t.usage.push(&o.actual[n], &o.times[n]);
            }
            t.shrink_to_fit();
            out.insert((resource.name().to_string(), part.to_string()), t);
        }
    }
    out
}

/// What the history-based rules ask for at `at`: the recent quantiles, VPA's target per
/// percentile (at least its floors) and KRR's values.
fn history(series: &Series, samples: &[(i64, f64, f64)], vpa: &Vpa, at: i64, resource: Resource) -> Vec<(Rule, f64)> {
    let floors = VpaSettings::default();
    let mut out: Vec<(Rule, f64)> = RECENT
        .iter()
        .map(|r| (Rule::Recent(*r), quantile_in(series, at - i64::from(r.hours) * 3_600_000, at, r.tenths)))
        .collect();
    for p in VPA_PERCENTILES {
        let v = vpa.percentiles(p as f64 / 1000.0);
        let floor = if resource == Resource::Cpu { floors.min_cpu } else { floors.min_memory };
        let v = v.map_or(f64::NAN, |(cpu, memory)| (if resource == Resource::Cpu { cpu } else { memory }).max(floor));
        out.push((Rule::Vpa(p), v));
    }
    let krr = krr_values(&KrrSettings::default(), samples, at, resource);
    out.extend(krr.into_iter().map(|(p, v)| (Rule::Krr(p), v)));
    out
}

/// The highest value up to each point.
fn running_max(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .scan(f64::NAN, |top, &v| {
            *top = if v > *top || top.is_nan() { v } else { *top };
            Some(*top)
        })
        .collect()
}

/// The parts decisions are made in, in time order.
pub const PARTS: [&str; 3] = [Part::Validation.name(), Part::Test.name(), f::AHEAD];

/// The quantile (tenths of a percent) of the values in (from, until]; NaN when none.
fn quantile_in(s: &Series, from: i64, until: i64, tenths: u32) -> f64 {
    let lo = s.times.partition_point(|&t| t <= from);
    let hi = s.times.partition_point(|&t| t <= until);
    let window = &s.values[lo..hi];
    if window.is_empty() {
        return f64::NAN;
    }
    if tenths >= 1000 {
        return window.iter().copied().fold(f64::MIN, f64::max);
    }
    percentile_unsorted(&mut window.to_vec(), tenths as f64 / 10.0)
}

/// KRR's value per knob setting at `now`: CPU per percentile of [`KRR_PERCENTILES`], memory
/// the history's peak (its buffer is the multiplier), each at least KRR's floor.
fn krr_values(s: &KrrSettings, samples: &[(i64, f64, f64)], now: i64, resource: Resource) -> Vec<(u32, f64)> {
    let lo = samples.partition_point(|x| x.0 <= now - s.history_ms);
    let hi = samples.partition_point(|x| x.0 <= now);
    let window = &samples[lo..hi];
    if window.is_empty() {
        let ps: &[u32] = if resource == Resource::Cpu { &KRR_PERCENTILES } else { &[1000] };
        return ps.iter().map(|&p| (p, f64::NAN)).collect();
    }
    if resource == Resource::Cpu {
        let mut cpu: Vec<f64> = window.iter().map(|x| x.1).collect();
        cpu.sort_by(f64::total_cmp);
        KRR_PERCENTILES.iter().map(|&p| (p, percentile(&cpu, p as f64 / 10.0).max(s.min_cpu))).collect()
    } else {
        vec![(1000, window.iter().map(|x| x.2).fold(f64::MIN, f64::max).max(s.min_memory))]
    }
}
