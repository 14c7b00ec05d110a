//! The recommenders users run today, implemented as documented, so plans can be compared
//! with what they would have set.
//!
//! - Kubernetes VPA recommender (autoscaler `vertical-pod-autoscaler/pkg/recommender`): CPU
//!   samples go into a decaying exponential histogram (first bucket 0.01 cores, buckets 5 %
//!   wider each, 24 h half-life); memory contributes its peak per 24 h aggregation window to
//!   another (first bucket 10 MB). Target = the p90 of each histogram (the end of the
//!   bucket it falls in) plus a 15 % safety margin, at least 25 millicores and 250 MiB.
//!   VPA weighs CPU samples by the container's request, which a usage history does not
//!   hold; samples are weighed equally here.
//! - KRR's `simple` strategy (robusta-dev/krr): CPU request = p95 of CPU usage over the
//!   history window (no CPU limit); memory request = limit = the maximum + 15 %; at least
//!   10 millicores and 100 MiB.

pub const MIB: f64 = 1024.0 * 1024.0;
pub const DAY_MS: i64 = 86_400_000;

/// VPA's exponential histogram: bucket `i` starts at `first · (ratioⁱ − 1) / (ratio − 1)`.
#[derive(Debug, Clone)]
pub struct Histogram {
    first: f64,
    ratio: f64,
    weights: Vec<f64>,
    total: f64,
}

impl Histogram {
    pub fn new(first: f64, ratio: f64, max: f64) -> Histogram {
        let n = ((max * (ratio - 1.0) / first + 1.0).ln() / ratio.ln()).ceil() as usize + 1;
        Histogram { first, ratio, weights: vec![0.0; n], total: 0.0 }
    }

    fn bucket(&self, value: f64) -> usize {
        if value < self.first {
            return 0;
        }
        let b = ((value * (self.ratio - 1.0) / self.first + 1.0).ln() / self.ratio.ln()) as usize;
        b.min(self.weights.len() - 1)
    }

    pub fn start(&self, bucket: usize) -> f64 {
        self.first * (self.ratio.powi(bucket as i32) - 1.0) / (self.ratio - 1.0)
    }

    pub fn add(&mut self, value: f64, weight: f64) {
        let b = self.bucket(value);
        self.weights[b] += weight;
        self.total += weight;
    }

    pub fn subtract(&mut self, value: f64, weight: f64) {
        let b = self.bucket(value);
        self.weights[b] = (self.weights[b] - weight).max(0.0);
        self.total = (self.total - weight).max(0.0);
    }

    /// The end of the bucket where the cumulative weight reaches `p` of the total (the
    /// start of the last, unbounded bucket); 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let threshold = p * self.total;
        let mut sum = 0.0;
        let last = self.weights.len() - 1;
        let mut bucket = last;
        for (i, w) in self.weights.iter().enumerate() {
            sum += w;
            if sum >= threshold {
                bucket = i;
                break;
            }
        }
        if bucket < last { self.start(bucket + 1) } else { self.start(bucket) }
    }
}

/// VPA's settings: the recommender's flags and constants.
#[derive(Debug, Clone, Copy)]
pub struct VpaSettings {
    /// `--target-cpu-percentile` and `--target-memory-percentile`.
    pub percentile: f64,
    /// `--recommendation-margin-fraction`.
    pub margin: f64,
    pub half_life_ms: i64,
    pub min_cpu: f64,
    pub min_memory: f64,
}

impl Default for VpaSettings {
    fn default() -> Self {
        VpaSettings { percentile: 0.9, margin: 0.15, half_life_ms: DAY_MS, min_cpu: 0.025, min_memory: 250.0 * MIB }
    }
}

/// A VPA recommender for one container, fed samples in time order.
pub struct Vpa {
    settings: VpaSettings,
    cpu: Histogram,
    memory: Histogram,
    reference: Option<i64>,
    /// The current memory aggregation window: its end and the peak added for it.
    window: Option<(i64, f64)>,
}

impl Vpa {
    pub fn new(settings: VpaSettings) -> Vpa {
        Vpa {
            settings,
            cpu: Histogram::new(0.01, 1.05, 1000.0),
            memory: Histogram::new(1e7, 1.05, 1e12),
            reference: None,
            window: None,
        }
    }

    /// Sample weights grow by 2^(age / half-life) instead of old ones decaying: the same
    /// ratios, without touching every bucket at each sample.
    fn decay(&mut self, time: i64) -> f64 {
        let reference = *self.reference.get_or_insert(time);
        2f64.powf((time - reference) as f64 / self.settings.half_life_ms as f64)
    }

    pub fn add(&mut self, time: i64, cpu: f64, memory: f64) {
        let w = self.decay(time);
        self.cpu.add(cpu, w);
        // One sample per window: its peak so far, weighed at the window's end.
        match self.window {
            Some((end, peak)) if time < end => {
                if memory > peak {
                    let w = self.decay(end);
                    self.memory.subtract(peak, w);
                    self.memory.add(memory, w);
                    self.window = Some((end, memory));
                }
            }
            _ => {
                let end = match self.window {
                    Some((end, _)) => end + (time - end).div_euclid(DAY_MS) * DAY_MS + DAY_MS,
                    None => time + DAY_MS,
                };
                let w = self.decay(end);
                self.memory.add(memory, w);
                self.window = Some((end, memory));
            }
        }
    }

    /// Target CPU (cores) and memory (bytes); `None` before any sample.
    pub fn target(&self) -> Option<(f64, f64)> {
        let s = &self.settings;
        let (cpu, memory) = self.percentiles(s.percentile)?;
        Some(((cpu * (1.0 + s.margin)).max(s.min_cpu), (memory * (1.0 + s.margin)).max(s.min_memory)))
    }

    /// The histograms' percentile `p` (0..1), before margin and floors.
    pub fn percentiles(&self, p: f64) -> Option<(f64, f64)> {
        self.reference?;
        Some((self.cpu.percentile(p), self.memory.percentile(p)))
    }
}

/// KRR `simple` settings.
#[derive(Debug, Clone, Copy)]
pub struct KrrSettings {
    /// `--cpu_percentile`.
    pub cpu_percentile: f64,
    /// `--memory_buffer_percentage`, as a fraction.
    pub memory_buffer: f64,
    /// `--history_duration`.
    pub history_ms: i64,
    pub min_cpu: f64,
    pub min_memory: f64,
}

impl Default for KrrSettings {
    fn default() -> Self {
        KrrSettings {
            cpu_percentile: 95.0,
            memory_buffer: 0.15,
            history_ms: 14 * DAY_MS,
            min_cpu: 0.01,
            min_memory: 100.0 * MIB,
        }
    }
}

/// KRR's recommendation from the samples `(time, cpu, memory)` (in time order) in its
/// history window before `now`: CPU request and memory request (= limit). `None` without
/// samples.
pub fn krr(settings: &KrrSettings, samples: &[(i64, f64, f64)], now: i64) -> Option<(f64, f64)> {
    // Found by binary search: the backtest asks from every origin of long series.
    let from = samples.partition_point(|s| s.0 <= now - settings.history_ms);
    let window = &samples[from..samples.partition_point(|s| s.0 <= now).max(from)];
    if window.is_empty() {
        return None;
    }
    let mut cpu: Vec<f64> = window.iter().map(|s| s.1).collect();
    let peak = window.iter().map(|s| s.2).fold(f64::MIN, f64::max);
    Some((
        percentile_of(&mut cpu, settings.cpu_percentile).max(settings.min_cpu),
        (peak * (1.0 + settings.memory_buffer)).max(settings.min_memory),
    ))
}

/// [`percentile`] of values in any order (reordered): the two order statistics it reads
/// are selected, not sorted for.
fn percentile_of(values: &mut [f64], p: f64) -> f64 {
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (_, &mut low, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let high = if hi > lo { above.iter().copied().fold(f64::INFINITY, f64::min) } else { low };
    low + (high - low) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use applearner_contracts::percentile;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn histogram_buckets_and_percentiles_follow_vpa() {
        let mut h = Histogram::new(0.01, 1.05, 1000.0);
        // VPA's bucket starts: 0, 0.01, 0.01 + 0.0105, …
        assert_eq!(h.start(0), 0.0);
        assert!((h.start(1) - 0.01).abs() < 1e-15);
        assert!((h.start(2) - 0.0205).abs() < 1e-12);
        for v in [0.005, 0.015, 0.015, 0.5] {
            h.add(v, 1.0);
        }
        // p50: cumulative weight reaches 2 of 4 in bucket 1 (0.01..0.0205) → its end.
        assert!((h.percentile(0.5) - 0.0205).abs() < 1e-12);
        // p25: bucket 0 holds 1 of 4 → its end, 0.01.
        assert!((h.percentile(0.25) - 0.01).abs() < 1e-15);
        // p90: the bucket holding 0.5, whose end is above 0.5 and within 5 %.
        let p90 = h.percentile(0.9);
        assert!(p90 > 0.5 && p90 < 0.5 * 1.06, "{p90}");
    }

    #[test]
    fn vpa_targets_p90_plus_margin_and_halves_day_old_samples() {
        let mut vpa = Vpa::new(VpaSettings { min_cpu: 0.0, min_memory: 0.0, ..Default::default() });
        // 9 samples of 1 core weigh 1 each; a sample of 2 cores a day later weighs 2, so
        // 2 cores hold 2/11 = 18 % of the weight, more than the top 10 %: p90 is ~2 cores.
        for i in 0..9 {
            vpa.add(i * 60_000, 1.0, 100e6);
        }
        vpa.add(24 * HOUR, 2.0, 100e6);
        let (cpu, _) = vpa.target().unwrap();
        assert!(cpu > 2.0 * 1.15 && cpu < 2.0 * 1.05 * 1.15 + 1e-9, "{cpu}");
        // Without the decay, one 2-core sample among 20 is 5 % of the weight: p90 is 1 core.
        let mut flat =
            Vpa::new(VpaSettings { min_cpu: 0.0, min_memory: 0.0, half_life_ms: i64::MAX / 4, ..Default::default() });
        for i in 0..19 {
            flat.add(i * 60_000, 1.0, 100e6);
        }
        flat.add(24 * HOUR, 2.0, 100e6);
        let (cpu, _) = flat.target().unwrap();
        assert!(cpu > 1.15 && cpu < 1.05 * 1.15 + 1e-9, "{cpu}");
    }

    #[test]
    fn vpa_memory_comes_from_daily_peaks() {
        let mut vpa = Vpa::new(VpaSettings::default());
        // One window: many samples at 300 MB and one peak at 600 MB → one sample, 600 MB.
        for i in 0..100 {
            vpa.add(i * 60_000, 0.001, if i == 50 { 600e6 } else { 300e6 });
        }
        let (cpu, memory) = vpa.target().unwrap();
        assert!((600e6 * 1.15..600e6 * 1.05 * 1.15).contains(&memory), "{memory}");
        // Tiny CPU: the 25 millicore floor.
        assert_eq!(cpu, 0.025);
        // Tiny memory: the 250 MiB floor.
        let mut small = Vpa::new(VpaSettings::default());
        small.add(0, 0.5, 10e6);
        assert_eq!(small.target().unwrap().1, 250.0 * MIB);
    }

    #[test]
    fn selected_percentiles_are_the_sorted_ones() {
        let mut state = 3u64;
        let values: Vec<f64> = (0..1001)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) % 97) as f64 / 7.0
            })
            .collect();
        for n in [1, 2, 10, 1001] {
            for p in [0.0, 12.5, 50.0, 90.0, 95.0, 99.9, 100.0] {
                let mut shuffled = values[..n].to_vec();
                let mut sorted = shuffled.clone();
                sorted.sort_by(f64::total_cmp);
                assert_eq!(percentile_of(&mut shuffled, p), percentile(&sorted, p), "{n} values, p{p}");
            }
        }
    }

    #[test]
    fn krr_simple_is_p95_cpu_and_peak_memory_plus_15_percent() {
        // CPU 0..=100 millicores → p95 = 95 m (linear); memory peak 200 MiB → 230 MiB.
        let samples: Vec<(i64, f64, f64)> = (0..=100)
            .map(|i| (i * 60_000, i as f64 / 1000.0, if i == 7 { 200.0 * MIB } else { 150.0 * MIB }))
            .collect();
        let (cpu, memory) = krr(&KrrSettings::default(), &samples, 100 * 60_000).unwrap();
        assert!((cpu - 0.095).abs() < 1e-12, "{cpu}");
        assert!((memory - 230.0 * MIB).abs() < 1.0);
        // Only the history window counts: the last 10 minutes hold 91..=100 m.
        let s = KrrSettings { history_ms: 10 * 60_000, ..Default::default() };
        let (cpu, memory) = krr(&s, &samples, 100 * 60_000).unwrap();
        assert!((cpu - 0.09955).abs() < 1e-12, "{cpu}");
        assert!((memory - 150.0 * MIB * 1.15).abs() < 1.0);
        // Floors: 10 millicores, 100 MiB.
        let (cpu, memory) = krr(&KrrSettings::default(), &[(0, 0.0, 1.0)], 0).unwrap();
        assert_eq!((cpu, memory), (0.01, 100.0 * MIB));
        assert_eq!(krr(&KrrSettings::default(), &samples, -1), None);
    }
}
