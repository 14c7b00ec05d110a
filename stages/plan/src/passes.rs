//! The plan's two passes over the series. Each reads `forecasts` and `resampled` side by
//! side, a group of series at a time (both are sorted by key). The first makes every
//! series' validation part and plan ahead, which calibration and the plan need all of; the
//! second makes the test part a group at a time for the replays, so the plan never holds
//! every series' test part, nor any series' usage beyond its group.

use super::*;
use applearner_pipeline::by_key::ByKey;

/// Series whose forecasts and usage are held at once.
const SERIES_AT_ONCE: usize = 16;

/// What the first pass keeps of every series: its validation part and plan ahead, what the
/// plan ahead needs of its usage, which of its values cannot be cores or bytes; per resource,
/// whether any series has a test part; and the forecast columns and the grid step.
pub struct Prepared {
    pub timelines: Timelines,
    pub seen: BTreeMap<String, Seen>,
    pub implausible: std::collections::BTreeSet<(String, Resource)>,
    pub tested: [bool; 2],
    pub columns: Vec<String>,
    pub step_ms: i64,
}

/// A group of series: their usage and the planned method's forecasts.
pub struct Group {
    usage: BTreeMap<String, Usage>,
    forecasts: Forecasted,
}

/// Hands `each` the series a group at a time, with a progress bar over the forecast rows;
/// the last group also has the usage of the series after the last forecast's. Returns how
/// the clean stage combined replicas (the table's metadata).
pub fn by_group(
    ctx: &StageContext,
    method: &str,
    message: &str,
    mut each: impl FnMut(Group) -> Result<(), BoxError>,
) -> Result<Option<String>, BoxError> {
    let mut forecasts = ByKey::new(ctx.table_batches(forecasts::NAME, None, &[])?, forecasts::NAME, forecasts::KEY);
    let combined = std::cell::RefCell::new(None::<String>);
    let batches = ctx.table_batches(resampled::NAME, None, &[])?.inspect(|b| {
        if let Ok(b) = b {
            *combined.borrow_mut() = b.schema().metadata().get(resampled::COMBINED).cloned();
        }
    });
    let mut usage = ByKey::new(batches, resampled::NAME, resampled::KEY);
    let bar = ctx.progress(ctx.input(forecasts::NAME)?.rows.unwrap_or(0), message);
    let mut read = 0;
    loop {
        let mut keys = forecasts.next_keys(SERIES_AT_ONCE);
        let group = read_forecasts(&mut keys, method)?;
        let last = keys.last_key().map(str::to_string);
        each(Group { usage: read_usage(usage.through(last.as_deref()))?, forecasts: group })?;
        bar.inc((forecasts.taken() - read) as u64);
        read = forecasts.taken();
        if last.is_none() {
            break;
        }
    }
    bar.finish();
    drop(usage);
    Ok(combined.into_inner())
}

/// The first pass. The forecast columns are `check`ed as soon as they are known.
pub fn prepare(
    ctx: &StageContext,
    method: &str,
    check: &dyn Fn(&[String]) -> Result<(), BoxError>,
    allocation: &Allocation,
    workloads: &Workloads,
) -> Result<Prepared, BoxError> {
    let mut out = Prepared {
        timelines: Timelines::new(),
        seen: BTreeMap::new(),
        implausible: Default::default(),
        tested: [false; 2],
        columns: Vec::new(),
        step_ms: i64::MAX,
    };
    let combined = by_group(ctx, method, "forecast rows read", |group| {
        if out.columns.is_empty() && !group.forecasts.columns.is_empty() {
            check(&group.forecasts.columns)?;
            out.columns = group.forecasts.columns.clone();
        }
        out.step_ms = out.step_ms.min(group.forecasts.step_ms);
        prepare_group(group, &mut out, allocation, workloads);
        Ok(())
    })?;
    if out.step_ms == i64::MAX {
        return Err(PlanError::NoModelForecasts { method: method.to_string() }.into());
    }
    refuse_summed_replicas(combined.as_deref(), &out.seen)?;
    Ok(out)
}

/// A group's validation parts, plans ahead and what the plan ahead needs of its usage, a
/// series per core.
fn prepare_group(group: Group, out: &mut Prepared, allocation: &Allocation, workloads: &Workloads) {
    let implausible = crate::units::implausible(&group.usage);
    let columns = &out.columns;
    let done: Vec<_> = per_series(group)
        .into_par_iter()
        .map(|(key, u, mut forecasts)| {
            let plausible = |r: Resource| !implausible.contains(&(key.clone(), r));
            let test = |r: Resource| forecasts.get(&(key.clone(), r.name().to_string(), Part::Test.name().to_string()));
            let tested =
                Resource::ALL.map(|r| plausible(r) && test(r).is_some_and(|o| o.actual.iter().any(|a| !a.is_empty())));
            let mut t = timelines(&key, &mut forecasts, &u, columns, &[Part::Validation.name(), forecasts::AHEAD]);
            keep_plausible(&mut t, &key, &implausible);
            let scaled = workloads.get(&key).is_some_and(|w| w.hpa.is_some());
            (key.clone(), t, Seen::of(&u, allocation.get(&key), scaled), tested)
        })
        .collect();
    for (key, t, seen, tested) in done {
        out.timelines.insert(key.clone(), t);
        out.seen.insert(key, seen);
        out.tested = [0, 1].map(|r| out.tested[r] || tested[r]);
    }
    out.implausible.extend(implausible);
}

/// The second pass's timelines of a group: every series, with its test part (values that
/// cannot be cores or bytes left out).
pub fn test_timelines(
    group: Group,
    implausible: &std::collections::BTreeSet<(String, Resource)>,
    columns: &[String],
) -> Timelines {
    per_series(group)
        .into_par_iter()
        .map(|(key, u, mut forecasts)| {
            let mut t = timelines(&key, &mut forecasts, &u, columns, &[Part::Test.name()]);
            keep_plausible(&mut t, &key, implausible);
            (key, t)
        })
        .collect()
}

/// Leaves out the timelines of a series' values that cannot be cores or bytes: they are
/// neither planned nor compared.
fn keep_plausible(
    timelines: &mut BTreeMap<(String, String), Timeline>,
    key: &str,
    implausible: &std::collections::BTreeSet<(String, Resource)>,
) {
    timelines.retain(|(resource, _), _| !implausible.iter().any(|(k, r)| k == key && r.name() == resource));
}

/// Each series of a group with its usage and forecasts.
fn per_series(group: Group) -> Vec<(String, Usage, ByPart)> {
    let mut by_key: BTreeMap<String, ByPart> = BTreeMap::new();
    for (at, o) in group.forecasts.by_part {
        by_key.entry(at.0.clone()).or_default().insert(at, o);
    }
    group.usage.into_iter().map(|(key, u)| (key.clone(), u, by_key.remove(&key).unwrap_or_default())).collect()
}
