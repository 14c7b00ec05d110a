//! What runs today: the allocation (clean.resample's `allocation` table: requests and limits
//! per step, OOM kills, restarts, throttling) replayed like a plan over the test part, and the
//! plan ahead set beside the latest allocation, with the change in reserved capacity, its
//! cost and the flags an operator acts on.

use super::*;
use applearner_contracts::tables::{allocation as at, recommendations as rt};

/// Per key, per signal (`cpu_request`, …, `oom_kills`), its steps `(time, value)` in order.
pub type Allocation = BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>>;

pub fn read_allocation(batches: &[RecordBatch]) -> Result<Allocation, BoxError> {
    let mut out = Allocation::new();
    for b in batches {
        let (keys, signals) = (strings(b, at::NAME, at::KEY)?, strings(b, at::NAME, at::SIGNAL)?);
        let (times, values) = (ints(b, at::NAME, at::TIMESTAMP)?, floats(b, at::NAME, at::VALUE)?);
        for i in 0..b.num_rows() {
            let signal = out.entry(keys[i].clone()).or_default().entry(signals[i].clone()).or_default();
            signal.push((times[i], values[i]));
        }
    }
    Ok(out)
}

/// The value in force at `t`: that of the last step at or before it.
pub fn in_force_at(points: &[(i64, f64)], t: i64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 <= t);
    i.checked_sub(1).map(|i| points[i].1)
}

/// A workload's usage replayed against what it had allocated at each step (steps before its
/// first allocation are left out); a change is a step whose value differs from the last.
pub fn replay_allocated(timeline: View, points: &[(i64, f64)], unit: f64, step_hours: f64) -> Replay {
    let mut out = Replay::default();
    let mut last = None;
    for (i, usage) in timeline.usage.iter().enumerate() {
        for (u, t) in usage.iter().zip(timeline.usage.times(i)) {
            let Some(a) = in_force_at(points, *t) else { continue };
            out.changes += usize::from(last.is_some_and(|l| l != a));
            last = Some(a);
            out.add(a / unit, u / unit, step_hours);
        }
    }
    out
}

/// Prices of reserved capacity, and when throttling is flagged.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Per core-hour requested (default: 0.031611, Kubecost's default on-demand price).
    #[serde(default = "cpu_price")]
    pub cpu_core_hour: f64,
    /// Per GiB-hour of memory requested (default: 0.004237, Kubecost's default).
    #[serde(default = "memory_price")]
    pub memory_gib_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices { cpu_core_hour: cpu_price(), memory_gib_hour: memory_price() }
    }
}

fn cpu_price() -> f64 {
    0.031611
}
fn memory_price() -> f64 {
    0.004237
}

/// Hours in a month, as cloud price sheets count them.
const MONTH_HOURS: f64 = 730.0;

/// One workload's (or node's) allocation now beside its plan, by the lines of
/// [`at::LINES`]; `None` where unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub key: String,
    pub node: bool,
    /// One pod's requests and limits: what is set on each replica.
    pub current: [Option<f64>; 4],
    pub planned: [Option<f64>; 4],
    /// The workload's replicas at the end of the data: its totals are one pod's × these.
    pub replicas: u32,
    /// The highest CPU and memory usage of one pod seen over the data: a limit's evidence.
    pub max_seen: [Option<f64>; 2],
    /// The object its patch goes to (kind, name), where kube-state-metrics says, and the
    /// HPA scaling it.
    pub owner: Option<(String, String)>,
    pub hpa: Option<String>,
    pub allocation_changes: usize,
    /// Steps with usage above the CPU and the memory limit in force (throttled; OOM-killed
    /// where the kernel enforced it).
    pub above_limit: [usize; 2],
    pub oom_kills: f64,
    pub throttled_pct: Option<f64>,
    pub flags: Vec<String>,
}

impl Recommendation {
    /// Planned − current requests over the workload's replicas: cores, GiB.
    pub fn changes(&self) -> [Option<f64>; 2] {
        let change = |i: usize| Some((self.planned[i]? - self.current[i]?) * f64::from(self.replicas));
        [change(0), change(2).map(|b| b / (MIB * 1024.0))]
    }

    /// The change in requests priced per month; `None` where neither is known.
    pub fn cost(&self, prices: &Prices) -> Option<f64> {
        let [cpu, memory] = self.changes();
        if cpu.is_none() && memory.is_none() {
            return None;
        }
        let hourly = cpu.unwrap_or(0.0) * prices.cpu_core_hour + memory.unwrap_or(0.0) * prices.memory_gib_hour;
        Some(hourly * MONTH_HOURS)
    }
}

/// Per workload planned now: its latest allocation, the first values of its plan, what hurt
/// it over the data and the flags; sorted by the size of the cost change, largest first.
pub fn recommendations(
    now: &[&WorkloadPlan],
    lines: &[&Line],
    allocation: &Allocation,
    seen: &BTreeMap<String, Seen>,
    prices: &Prices,
    throttled_above: f64,
) -> Vec<Recommendation> {
    let empty = BTreeMap::new();
    let mut out: Vec<Recommendation> = now
        .iter()
        .map(|w| {
            let signals = allocation.get(&w.key).unwrap_or(&empty);
            let mut r = recommend(w, lines, signals, seen.get(&w.key));
            r.flags = r.flagged(throttled_above);
            r
        })
        .collect();
    let impact = |r: &Recommendation| r.cost(prices).map_or(0.0, f64::abs);
    out.sort_by(|a, b| impact(b).total_cmp(&impact(a)).then_with(|| a.key.cmp(&b.key)));
    out
}

/// One workload's recommendation from its plan, its allocation's signals and what its usage
/// showed (flags not yet set).
fn recommend(
    w: &WorkloadPlan,
    lines: &[&Line],
    signals: &BTreeMap<String, Vec<(i64, f64)>>,
    seen: Option<&Seen>,
) -> Recommendation {
    let changes = |p: &Vec<(i64, f64)>| p.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let total = |p: &Vec<(i64, f64)>| p.iter().map(|p| p.1).sum::<f64>();
    Recommendation {
        key: w.key.clone(),
        node: applearner_contracts::tables::resampled::is_node(&w.key),
        replicas: seen.map_or(1, |s| s.replicas.max(1)),
        max_seen: seen.map_or([None; 2], |s| s.max),
        owner: w.owner.clone(),
        hpa: w.hpa.clone(),
        current: at::LINES.map(|l| signals.get(l).and_then(|p| p.last()).map(|p| p.1)),
        planned: at::LINES.map(|l| lines.iter().position(|x| x.name == l).and_then(|i| w.values[i])),
        allocation_changes: at::LINES.iter().filter_map(|l| signals.get(*l)).map(changes).sum(),
        above_limit: seen.map_or([0; 2], |s| s.above_limit),
        oom_kills: signals.get(at::OOM_KILLS).map_or(0.0, total),
        throttled_pct: signals
            .get(at::CPU_THROTTLED)
            .filter(|p| !p.is_empty())
            .map(|p| 100.0 * total(p) / p.len() as f64),
        flags: Vec::new(),
    }
}

/// What the plan ahead needs of one series' usage, kept once its timelines are made (the
/// usage is read a few series at a time): each resource's highest value (a limit's evidence,
/// a Job's runs' peak), the replicas, the steps above the limits then in force, and, where
/// an HPA scales the workload, its values, which the scale points are replayed against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub max: [Option<f64>; 2],
    pub replicas: u32,
    pub above_limit: [usize; 2],
    pub values: Option<[Vec<f64>; 2]>,
}

impl Seen {
    pub fn of(usage: &Usage, signals: Option<&BTreeMap<String, Vec<(i64, f64)>>>, scaled: bool) -> Seen {
        let series = |r: Resource| if r == Resource::Cpu { &usage.cpu } else { &usage.memory };
        // Steps whose usage of a resource went above its limit then in force.
        let above = |r: Resource, line: &str| {
            let Some(points) = signals.and_then(|s| s.get(line)) else { return 0 };
            let s = series(r);
            s.times.iter().zip(&s.values).filter(|(t, v)| in_force_at(points, **t).is_some_and(|l| **v > l)).count()
        };
        Seen {
            max: Resource::ALL.map(|r| series(r).values.iter().copied().reduce(f64::max)),
            replicas: usage.replicas,
            above_limit: [above(Resource::Cpu, at::LINES[1]), above(Resource::Memory, at::LINES[3])],
            values: scaled.then(|| Resource::ALL.map(|r| series(r).values.clone())),
        }
    }
}

impl Recommendation {
    /// What an operator acts on (see [`rt::FLAGS`]).
    fn flagged(&self, throttled_above: f64) -> Vec<String> {
        let mut flags = Vec::new();
        let mut flag = |on: bool, name: &str| {
            if on {
                flags.push(name.to_string());
            }
        };
        flag(self.current.iter().all(Option::is_none), "no_allocation");
        flag(self.oom_kills > 0.0, "oom_killed");
        flag(self.throttled_pct.is_some_and(|t| t > 100.0 * throttled_above), "throttled");
        // A request below the plan's runs above the stated risk.
        for i in [0, 2] {
            let below = matches!((self.current[i], self.planned[i]), (Some(c), Some(p)) if c < p);
            flag(below, &format!("{}_below_plan", at::LINES[i]));
        }
        flag(self.above_limit[0] > 0, "cpu_above_limit");
        flag(self.above_limit[1] > 0, "memory_above_limit");
        flag(self.replicas > 1, "replicated");
        flag(!self.node && self.owner.is_none(), "owner_unknown");
        // A Job's or CronJob's pods run to completion: its usage is runs, not a service's day.
        flag(is_job(&self.owner), "job");
        // Scaled by an HPA: its scale point is kept (the `hpas` table says how).
        flag(self.hpa.is_some(), "hpa");
        flags
    }
}

pub(super) fn recommendations_table(
    recs: &[Recommendation],
    prices: &Prices,
) -> Result<(SchemaRef, RecordBatch), BoxError> {
    let nan = f64::NAN;
    let mut t = TableBuilder::default()
        .strings(rt::KEY, recs.iter().map(|r| r.key.clone()))
        .strings(rt::KIND, recs.iter().map(|r| (if r.node { "node" } else { "container" }).to_string()));
    for (i, l) in at::LINES.iter().enumerate() {
        let unit = if i < 2 { "cores" } else { "bytes" };
        t = t
            .floats(&format!("{}{l}_{unit}", rt::CURRENT), recs.iter().map(|r| r.current[i].unwrap_or(nan)).collect())
            .floats(&format!("{}{l}_{unit}", rt::PLANNED), recs.iter().map(|r| r.planned[i].unwrap_or(nan)).collect());
    }
    t = t
        .floats(rt::CPU_CHANGE_CORES, recs.iter().map(|r| r.changes()[0].unwrap_or(nan)).collect())
        .floats(rt::MEMORY_CHANGE_GIB, recs.iter().map(|r| r.changes()[1].unwrap_or(nan)).collect())
        .floats(rt::COST_CHANGE_PER_MONTH, recs.iter().map(|r| r.cost(prices).unwrap_or(nan)).collect())
        .u32s(rt::ALLOCATION_CHANGES, recs.iter().map(|r| r.allocation_changes as u32).collect())
        .u32s(rt::CPU_ABOVE_LIMIT_STEPS, recs.iter().map(|r| r.above_limit[0] as u32).collect())
        .u32s(rt::MEMORY_ABOVE_LIMIT_STEPS, recs.iter().map(|r| r.above_limit[1] as u32).collect())
        .floats(rt::OOM_KILLS, recs.iter().map(|r| r.oom_kills).collect())
        .floats(rt::THROTTLED_PCT, recs.iter().map(|r| r.throttled_pct.unwrap_or(nan)).collect())
        .strings(rt::FLAGS, recs.iter().map(|r| r.flags.join(",")))
        .u32s(rt::REPLICAS, recs.iter().map(|r| r.replicas).collect())
        .strings(rt::OWNER_KIND, recs.iter().map(|r| r.owner.as_ref().map_or("", |o| o.0.as_str())))
        .strings(rt::OWNER_NAME, recs.iter().map(|r| r.owner.as_ref().map_or("", |o| o.1.as_str())));
    for (r, name) in [(0, rt::MAX_SEEN_CPU_CORES), (1, rt::MAX_SEEN_MEMORY_BYTES)] {
        t = t.floats(name, recs.iter().map(|x| x.max_seen[r].unwrap_or(nan)).collect());
    }
    // How far each limit sits above the highest usage seen: its evidence.
    let over = |r: &Recommendation, line: usize, res: usize| Some(r.planned[line]? / r.max_seen[res]?);
    t.floats(rt::CPU_LIMIT_OVER_MAX_SEEN, recs.iter().map(|r| over(r, 1, 0).unwrap_or(nan)).collect())
        .floats(rt::MEMORY_LIMIT_OVER_MAX_SEEN, recs.iter().map(|r| over(r, 3, 1).unwrap_or(nan)).collect())
        .finish()
}
