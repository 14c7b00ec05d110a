//! `clean.resample`: the ingested samples → one row per series and grid step, CPU and
//! memory side by side, in segments without gaps.
//!
//! Order of work, for a range of groups at a time ([`pass`](crate::pass)):
//! 1. drop non-finite and negative values (counted);
//! 2. bin every series on the step grid with the chosen aggregation;
//! 3. group series into workloads (or keep them apart) and combine replicas per step;
//! 4. fill gaps up to `max_gap` (flagged), leave longer ones;
//! 5. align the roles on the grid (a row needs every role);
//! 6. split at the remaining gaps into segments, trim segment edges, drop short segments;
//! 7. drop series that are constant or all zero.
//!
//! It is one ordered pass in plain Rust, not SQL: the samples arrive sorted by series and
//! time, and a dozen queries per range (binning, islands, windows, joins) cost more to
//! plan and hash than the work itself. DataFusion still builds the sparse `allocation` rows.

use crate::CleanError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use applearner_pipeline::arrow::array::{ArrayRef, AsArray, RecordBatch};
use applearner_pipeline::arrow::compute::cast;
use applearner_pipeline::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type};
use applearner_pipeline::{BoxError, Output, ParamProblem, Stage, StageContext, StageParams, Summary};

/// What a series measures: the ingest stage maps metrics to roles, one per resource.
pub use applearner_contracts::Resource as Role;
use applearner_contracts::summaries::CleanSummary;
use applearner_contracts::tables::{
    allocation as alloc, quotas, resampled, samples, series as series_table, workloads,
};

use crate::identity::{self, Identity, SeriesLabels};
use crate::kube;
use crate::pass::{Key, Range};

mod aside;
mod params;

use aside::put_aside;
pub use params::{AGGREGATES, Aggregate, Combine, Fill, Group, GroupBy, InputParams, Level, Plan, ResampleParams};

impl StageParams for ResampleParams {
    const KIND: &'static str = "clean.resample";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        Ok(Box::new(Resample { plan: self.plan()? }))
    }
}

struct Resample {
    plan: Plan,
}

impl Stage for Resample {
    fn reads(&self) -> Vec<String> {
        vec![samples::NAME.into(), series_table::NAME.into()]
    }

    fn writes(&self) -> Vec<Output> {
        vec![
            Output::table(resampled::NAME),
            Output::table(alloc::NAME),
            Output::table(workloads::NAME),
            Output::table(quotas::NAME),
        ]
    }

    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            ("resampled", vec![resampled::KEY, resampled::TIMESTAMP]),
            ("allocation", vec![alloc::KEY, alloc::SIGNAL, alloc::TIMESTAMP]),
            (workloads::NAME, vec![workloads::KEY]),
            (quotas::NAME, vec![quotas::NAMESPACE, quotas::QUOTA, quotas::RESOURCE, quotas::TYPE]),
        ])
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let p = &self.plan;
        let columns = identity::key_columns(p.group.by, &p.group.labels);
        let schema = output_schema(&columns.iter().map(String::as_str).collect::<Vec<_>>(), p);
        let in_shard = |key: &str| ctx.in_shard(key.as_bytes());
        let scope = Scope { shard: ctx.shard().map(|_| &in_shard as &dyn Fn(&str) -> bool) };
        let series = ctx.read_table(series_table::NAME)?;
        let read = [samples::SERIES_ID, samples::TIMESTAMP, samples::VALUE];
        let mut batches = ctx.table_batches(samples::NAME, Some(&read), &[])?.map(|b| b.map_err(BoxError::from));
        let mut allocate = |kept: &[(&SeriesLabels, String)], counts: &mut CleanSummary| {
            ctx.store().block_on(async {
                let session = crate::session(Some(ctx));
                crate::register_input(&session, ctx, samples::NAME).await?;
                crate::allocation::rows(&session, p, kept, counts).await
            })
        };
        let cancelled = || ctx.check_cancelled().map_err(Into::into);
        let cleaned = applearner_pipeline::stream_tables(ctx, &[("resampled", schema)], |sinks| {
            let input = Input { series: &series, samples: &mut batches };
            clean_into(input, p, &cancelled, scope, &mut allocate, &mut |b| applearner_pipeline::send(&sinks[0], b))
        })?;
        for w in &cleaned.warnings {
            tracing::warn!("{w}");
        }
        ctx.write_table(alloc::NAME, crate::allocation::schema(), &cleaned.allocation)?;
        let kube = &cleaned.kube;
        ctx.write_table(workloads::NAME, kube::workloads_schema(), &[kube::workloads_table(&kube.workloads)?])?;
        ctx.write_table(quotas::NAME, kube::quotas_schema(), &[kube::quotas_table(&kube.quotas)?])?;
        let mut summary = match serde_json::to_value(&cleaned.counts)? {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("counts serialize to an object"),
        };
        summary.insert("warnings".into(), cleaned.warnings.into());
        Ok(summary)
    }
}

/// What kube-state-metrics says of the workloads and namespaces cleaned.
#[derive(Debug, Default)]
pub struct Kube {
    pub workloads: BTreeMap<String, kube::Workload>,
    pub quotas: kube::Quotas,
}

/// The cleaned table and its story.
#[derive(Debug)]
pub struct Cleaned {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The `allocation` table's rows.
    pub allocation: Vec<RecordBatch>,
    /// Owners, HPAs and quotas.
    pub kube: Kube,
    pub counts: CleanSummary,
    pub warnings: Vec<String>,
}

/// Which series a run cleans: all, or those of one shard (by key).
#[derive(Clone, Copy, Default)]
pub struct Scope<'a> {
    pub shard: Option<&'a dyn Fn(&str) -> bool>,
}

impl Scope<'_> {
    /// Whether the key (or a series' own id) is this run's.
    pub fn holds(&self, key: &str) -> bool {
        self.shard.is_none_or(|keep| keep(key))
    }
}

/// What cleaning reads: the `series` table whole, and the `samples` table's batches once
/// (their `series_id`, `timestamp` and `value` columns).
pub struct Input<'a> {
    pub series: &'a [RecordBatch],
    pub samples: &'a mut dyn Iterator<Item = Result<RecordBatch, BoxError>>,
}

/// Builds the `allocation` rows of the allocation series placed on usage keys (a query
/// over the samples; only called when some are placed).
pub type Allocate<'a> =
    dyn FnMut(&[(&SeriesLabels, String)], &mut CleanSummary) -> Result<Vec<RecordBatch>, BoxError> + 'a;

/// Cleans the series of `scope`, handing the output rows to `sink` in series and time order.
///
/// Groups of series (one per key, numbered in key order) are cleaned a range at a time,
/// each range at most `max_points` input points, so memory holds one range whatever the
/// input's size: one pass over the samples puts every range's samples aside (in memory
/// when there is one range, else in a local file per range), then each range is cleaned
/// in turn ([`pass`](crate::pass)).
pub fn clean_into(
    input: Input<'_>,
    plan: &Plan,
    check_cancelled: &dyn Fn() -> Result<(), BoxError>,
    scope: Scope<'_>,
    allocate: &mut Allocate<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), BoxError>,
) -> Result<Cleaned, BoxError> {
    let started = std::time::Instant::now();
    // Between steps: stop if the run is cancelled; `-vv` shows where the time goes.
    let checkpoint = |step: &str| {
        tracing::debug!(step, elapsed_ms = started.elapsed().as_millis() as u64, "clean.resample");
        check_cancelled()
    };
    let (mut counts, mut warnings) = (CleanSummary::default(), Vec::new());
    let (series, spans) = read_series(input.series)?;
    let usage: Vec<SeriesLabels> =
        series.iter().filter(|s| plan.roles.iter().any(|r| r.name() == s.role)).cloned().collect();
    let identities = identify(plan, &usage, &mut warnings)?;
    let kept = crate::allocation::place(plan, &identities, &series, scope, &mut counts);
    let allocation = if kept.is_empty() { Vec::new() } else { allocate(&kept, &mut counts)? };
    checkpoint("allocation")?;
    let key_columns = identity::key_columns(plan.group.by, &plan.group.labels);
    let schema = output_schema(&key_columns.iter().map(String::as_str).collect::<Vec<_>>(), plan);
    let inputs = place_inputs(plan, &identities, &series, scope, &mut counts)?;
    let groups = Groups::of(plan, (&identities, &usage), &inputs, &spans, scope, &mut counts)?;
    // The latest value of each kube-state-metrics series that carries one (HPA targets,
    // replicas, quotas), read in the same pass as the usage.
    let mut latest: HashMap<u64, (i64, f64)> =
        series.iter().filter(|s| kube::valued(&s.role)).map(|s| (s.series_id, (i64::MIN, f64::NAN))).collect();
    let mut aside = put_aside(input.samples, &groups, &mut latest, &mut counts, check_cancelled)?;
    let latest: HashMap<u64, f64> = latest.into_iter().filter(|(_, v)| v.0 > i64::MIN).map(|(k, v)| (k, v.1)).collect();
    let workloads = kube::workloads(&series, &identities, &usage, &latest, scope, &mut counts);
    let quotas = kube::quotas(&series, &latest, &identities, scope, &mut counts);
    say_kube(&counts, &mut warnings);
    let kube = Kube { workloads, quotas };
    if scope.shard.is_some() && counts.grouped_series == 0 {
        warnings.push("this shard holds no series (more shards than series): its tables are empty".into());
        return Ok(Cleaned { schema, batches: Vec::new(), allocation, kube, counts, warnings });
    }
    check_inputs(plan, &counts, groups.spacing, &mut warnings)?;
    checkpoint("input")?;
    let mut out = crate::pass::Output::new(schema.clone(), key_columns.len(), plan.roles.len() + plan.inputs.len());
    for (i, range) in groups.ranges.iter().enumerate() {
        crate::pass::clean_range(plan, range, &groups.keys, aside.take(i)?, &mut counts, &mut out, sink)?;
        checkpoint(&format!("groups {}–{}", range.first, range.last))?;
    }
    if out.rows > 0 {
        sink(out.finish()?)?;
    }
    check_left(plan, &counts, scope, &mut warnings)?;
    say_inputs(&counts, &mut warnings);
    Ok(Cleaned { schema, batches: Vec::new(), allocation, kube, counts, warnings })
}

/// The series of each model input placed on the usage keys ([`identity::place`]): (series
/// id, key, role number after the usage roles). A metric no series has is an error naming
/// those the data has.
fn place_inputs(
    plan: &Plan,
    identities: &[Identity],
    series: &[SeriesLabels],
    scope: Scope<'_>,
    counts: &mut CleanSummary,
) -> Result<Vec<(u64, String, usize)>, BoxError> {
    let mut placed = Vec::new();
    for (i, (name, input)) in plan.inputs.iter().enumerate() {
        let of_metric: Vec<&SeriesLabels> = series.iter().filter(|s| s.metric == input.metric).collect();
        if of_metric.is_empty() {
            let available: BTreeSet<&str> = series.iter().map(|s| s.metric.as_str()).collect();
            let available = available.into_iter().collect::<Vec<_>>().join(", ");
            return Err(
                CleanError::UnknownInput { input: name.clone(), metric: input.metric.clone(), available }.into()
            );
        }
        let p = identity::place(identities, of_metric, plan, scope);
        counts.covariate_series += p.series;
        counts.covariate_series_without_usage += p.without_usage;
        counts.covariate_series_ambiguous += p.ambiguous;
        placed.extend(p.kept.into_iter().map(|(s, key)| (s.series_id, key, plan.roles.len() + i)));
    }
    Ok(placed)
}

/// Model inputs that could not be placed, or that some series lack, are said.
fn say_inputs(counts: &CleanSummary, warnings: &mut Vec<String>) {
    let said = [
        (counts.covariate_series_without_usage, "input series describe no usage series: left out"),
        (
            counts.covariate_series_ambiguous,
            "input series match several usage series (a pod's metric, a pod with several containers): left out, \
             never merged; group by workload or by labels they share",
        ),
        (counts.covariate_counter_resets, "counter resets in rate inputs: the value after each counts whole"),
    ];
    for (n, what) in said.into_iter().filter(|(n, _)| *n > 0) {
        warnings.push(format!("{n} {what}"));
    }
    for (input, n) in &counts.without_input {
        warnings.push(format!("{n} series have no `{input}` input: it is 0 there, flagged filled"));
    }
}

/// The identities of the usage series; with `by: labels`, a label no series has is an
/// error, one only some have a warning.
fn identify(plan: &Plan, usage: &[SeriesLabels], warnings: &mut Vec<String>) -> Result<Vec<Identity>, BoxError> {
    if plan.group.by == GroupBy::Labels {
        for label in &plan.group.labels {
            let without = usage.iter().filter(|s| !s.labels.contains_key(label)).count();
            if without == usage.len() && without > 0 {
                return Err(CleanError::MissingLabel(label.clone()).into());
            }
            if without > 0 {
                warnings.push(format!(
                    "{without} series have no `{label}` label; as in PromQL's `by ({label})` they are grouped \
                     as if it were empty"
                ));
            }
        }
    }
    Ok(identity::identify(usage, plan.group.by, &plan.group.labels))
}

/// A series' extent in the `series` table: its points and first and last times (ms).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub points: u64,
    pub first: i64,
    pub last: i64,
}

/// The series of a run: their groups (one per key, in key order), the ranges of groups
/// cleaned at a time, and where each series' samples go.
struct Groups {
    keys: Vec<Key>,
    ranges: Vec<Range>,
    /// Series id → (range, slot in it).
    slot_of: HashMap<u64, (u32, u32)>,
    /// The median time between a series' samples (ms), where known.
    spacing: Option<i64>,
}

impl Groups {
    /// The groups of the usage series of `scope`; a group alone above `max_points` is an
    /// error naming it.
    fn of(
        plan: &Plan,
        (identities, usage): (&[Identity], &[SeriesLabels]),
        inputs: &[(u64, String, usize)],
        spans: &HashMap<u64, Span>,
        scope: Scope<'_>,
        counts: &mut CleanSummary,
    ) -> Result<Groups, BoxError> {
        let mine: Vec<(&Identity, &SeriesLabels)> =
            identities.iter().zip(usage).filter(|(i, _)| scope.holds(&i.key)).collect();
        let mut inputs_of: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
        for (id, key, role) in inputs {
            inputs_of.entry(key.as_str()).or_default().push((*id, *role));
        }
        let mut by_key: BTreeMap<&str, Vec<(&Identity, &SeriesLabels)>> = BTreeMap::new();
        for &(i, s) in &mine {
            by_key.entry(i.key.as_str()).or_default().push((i, s));
        }
        [counts.input_series, counts.grouped_series] = [mine.len() as u64, by_key.len() as u64];
        let role = |s: &SeriesLabels| plan.roles.iter().position(|r| r.name() == s.role).expect("a usage role");
        let mut groups = Groups { keys: Vec::new(), ranges: Vec::new(), slot_of: HashMap::new(), spacing: None };
        let mut held = 0;
        for (k, members) in by_key.values().enumerate() {
            let roles: BTreeSet<usize> = members.iter().map(|(_, s)| role(s)).collect();
            counts.series_without_all_roles += u64::from(roles.len() < plan.roles.len());
            let key = members[0].0.key.clone();
            let mut slots: Vec<(u64, usize)> = members.iter().map(|(i, s)| (i.series_id, role(s))).collect();
            slots.extend(inputs_of.remove(key.as_str()).unwrap_or_default());
            let points: u64 = slots.iter().map(|(id, _)| spans[id].points).sum();
            if points > plan.max_points {
                return Err(CleanError::GroupTooLarge { key, points, max: plan.max_points }.into());
            }
            match groups.ranges.last_mut() {
                Some(range) if held + points <= plan.max_points => {
                    range.last = k;
                    held += points;
                }
                _ => {
                    groups.ranges.push(Range { first: k, last: k, slots: Vec::new() });
                    held = points;
                }
            }
            let range = groups.ranges.len() - 1;
            for (id, role) in slots {
                let in_range = &mut groups.ranges[range].slots;
                groups.slot_of.insert(id, (range as u32, in_range.len() as u32));
                in_range.push((k, role));
            }
            groups.keys.push(Key { key, columns: members[0].0.columns.clone() });
        }
        groups.spacing = median_spacing(mine.iter().map(|(i, _)| spans[&i.series_id]));
        Ok(groups)
    }
}

/// The median time between samples (ms) of the series of `spans` with two or more points
/// (of two middle values, their mean rounded down, as SQL's `median` of integers).
fn median_spacing(spans: impl Iterator<Item = Span>) -> Option<i64> {
    let mut spacings: Vec<i64> =
        spans.filter(|s| s.points > 1).map(|s| (s.last - s.first) / (s.points as i64 - 1)).collect();
    spacings.sort_unstable();
    match spacings.len() {
        0 => None,
        n if n % 2 == 0 => Some((spacings[n / 2 - 1] + spacings[n / 2]) / 2),
        n => Some(spacings[n / 2]),
    }
}

/// A column of a table written by an earlier stage.
pub(crate) fn column<'b>(batch: &'b RecordBatch, table: &'static str, name: &str) -> Result<&'b ArrayRef, CleanError> {
    batch.column_by_name(name).ok_or_else(|| CleanError::MissingColumn { table, column: name.to_string() })
}

/// kube-state-metrics series that describe nothing cleaned are said, not only counted.
fn say_kube(counts: &CleanSummary, warnings: &mut Vec<String>) {
    let said = [
        (counts.owner_series_without_usage, "kube_pod_owner series name pods without usage: left out"),
        (counts.hpas_without_usage, "HPAs scale workloads without usage (or whose pods name no owner): left out"),
        (
            counts.quota_namespaces_without_workloads,
            "namespaces have a ResourceQuota but no workload: their quotas are compared with nothing",
        ),
    ];
    for (n, what) in said.into_iter().filter(|(n, _)| *n > 0) {
        warnings.push(format!("{n} {what}"));
    }
}

/// No usable sample is an error; a step finer than the samples' spacing a warning.
fn check_inputs(
    plan: &Plan,
    counts: &CleanSummary,
    spacing: Option<i64>,
    warnings: &mut Vec<String>,
) -> Result<(), BoxError> {
    let role_names = || plan.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("/");
    if counts.input_points == 0 {
        return Err(CleanError::NoSamples { roles: role_names() }.into());
    }
    if counts.non_finite_dropped == counts.input_points {
        return Err(CleanError::AllNonFinite { count: counts.input_points, roles: role_names() }.into());
    }
    // A step finer than the data's own interval makes most grid points gaps.
    if let Some(spacing) = spacing.filter(|s| *s > 0)
        && plan.step_ms < spacing * 9 / 10
    {
        warnings.push(format!(
            "the step ({} s) is finer than the data's resolution (about {} s between samples): most grid \
             points will be gaps; use a step of at least {} s",
            plan.step_ms as f64 / 1000.0,
            spacing as f64 / 1000.0,
            spacing as f64 / 1000.0
        ));
    }
    Ok(())
}

/// Nothing left after cleaning is an error with the counts of why (a shard: a warning, the
/// other shards may hold the series).
fn check_left(plan: &Plan, c: &CleanSummary, scope: Scope<'_>, warnings: &mut Vec<String>) -> Result<(), BoxError> {
    if c.points > 0 {
        return Ok(());
    }
    let error = CleanError::NothingLeft {
        series: c.grouped_series,
        without_roles: c.series_without_all_roles,
        short: c.short_segments_dropped,
        min_points: plan.min_points,
        trim: plan.trim,
        zero: c.zero_series_dropped,
        constant: c.constant_series_dropped,
    };
    match scope.shard {
        Some(_) => warnings.push(format!("this shard: {error}")),
        None => return Err(error.into()),
    }
    Ok(())
}

/// The `resampled` table's schema: key, label columns, segment, time, replicas, then a value
/// and a fill flag per role and per model input.
pub fn output_schema(labels: &[&str], plan: &Plan) -> SchemaRef {
    let mut fields = vec![Field::new(resampled::KEY, DataType::Utf8, false)];
    fields.extend(labels.iter().map(|l| Field::new(*l, DataType::Utf8, true)));
    fields.push(Field::new(resampled::SEGMENT, DataType::UInt32, false));
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    fields.push(Field::new(resampled::TIMESTAMP, timestamp, false));
    fields.push(Field::new(resampled::REPLICAS, DataType::UInt32, false));
    let units = plan.roles.iter().map(|r| (r.name(), None));
    let units = units.chain(plan.inputs.iter().map(|(name, input)| (name.as_str(), input.column_unit())));
    for (name, unit) in units {
        let unit = unit.map(|u| HashMap::from([(resampled::UNIT_KEY.to_string(), u)])).unwrap_or_default();
        fields.push(Field::new(name, DataType::Float64, false).with_metadata(unit));
        fields.push(Field::new(format!("{name}_filled"), DataType::Boolean, false));
    }
    let combined = HashMap::from([(resampled::COMBINED.to_string(), plan.group.aggregate.name().to_string())]);
    Arc::new(Schema::new_with_metadata(fields, combined))
}

/// Every series of the `series` table (labels by series id) and its extent.
pub(crate) fn read_series(batches: &[RecordBatch]) -> Result<(Vec<SeriesLabels>, HashMap<u64, Span>), BoxError> {
    let mut series = Vec::new();
    let mut spans = HashMap::new();
    for b in batches {
        let text = |name: &str| -> Result<ArrayRef, BoxError> {
            Ok(cast(column(b, series_table::NAME, name)?, &DataType::Utf8)?)
        };
        let int = |name: &str, to: &DataType| -> Result<ArrayRef, BoxError> {
            Ok(cast(&cast(column(b, series_table::NAME, name)?, to)?, &DataType::Int64)?)
        };
        let ids = cast(column(b, series_table::NAME, series_table::SERIES_ID)?, &DataType::UInt64)?;
        let ids = ids.as_primitive::<UInt64Type>();
        let (roles, metrics, labels) =
            (text(series_table::ROLE)?, text(series_table::METRIC)?, text(series_table::LABELS)?);
        let (roles, metrics, labels) =
            (roles.as_string::<i32>(), metrics.as_string::<i32>(), labels.as_string::<i32>());
        let stamp = DataType::Timestamp(TimeUnit::Millisecond, None);
        let (first, last, points) = (
            int(series_table::FIRST_TIMESTAMP, &stamp)?,
            int(series_table::LAST_TIMESTAMP, &stamp)?,
            int(series_table::POINTS, &DataType::Int64)?,
        );
        let (first, last, points) =
            (first.as_primitive::<Int64Type>(), last.as_primitive::<Int64Type>(), points.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            let labels = serde_json::from_str(labels.value(i)).map_err(|e| {
                format!("series {}: its `labels` column is not a JSON object of strings ({e})", ids.value(i))
            })?;
            series.push(SeriesLabels {
                series_id: ids.value(i),
                role: roles.value(i).to_string(),
                metric: metrics.value(i).to_string(),
                labels,
            });
            let span = Span { points: points.value(i).max(0) as u64, first: first.value(i), last: last.value(i) };
            spans.insert(ids.value(i), span);
        }
    }
    series.sort_by_key(|s| s.series_id);
    Ok((series, spans))
}

/// Kubernetes names generated suffixes from this alphabet (no vowels, no 0, 1, 3).
fn is_generated(s: &str) -> bool {
    s.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
}

/// Strips the suffixes Kubernetes controllers add to pod names: Deployment pods
/// (`name-<template hash>-<5>`), CronJob pods (`name-<scheduled minute>-<5>`, so that every
/// run is one workload), StatefulSet pods (`name-<ordinal>`), DaemonSet and Job pods
/// (`name-<5>`). Other names are kept whole.
pub fn workload_of(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (last, middle, rest) = (parts.next(), parts.next(), parts.next());
    if let (Some(last), Some(middle), Some(rest)) = (last, middle, rest)
        && last.len() == 5
        && is_generated(last)
        && (((6..=10).contains(&middle.len()) && is_generated(middle))
            || (middle.len() >= 8 && middle.bytes().all(|b| b.is_ascii_digit())))
    {
        return rest;
    }
    let Some((name, last)) = pod.rsplit_once('-') else { return pod };
    let ordinal =
        last == "0" || (!last.starts_with('0') && !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()));
    if ordinal || (last.len() == 5 && is_generated(last)) { name } else { pod }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_their_workloads() {
        assert_eq!(workload_of("cartservice-579f59597d-wc2lz"), "cartservice");
        assert_eq!(workload_of("ts-admin-basic-info-service-5f55b6cf68-77cfw"), "ts-admin-basic-info-service");
        assert_eq!(workload_of("web-0"), "web");
        assert_eq!(workload_of("web-12"), "web");
        assert_eq!(workload_of("node-exporter-x7k2p"), "node-exporter");
        // A CronJob's runs: its Job is named after the scheduled minute.
        assert_eq!(workload_of("report-29892961-x5b2c"), "report");
        // Zero-padded numbers are not ordinals (bitbrains' VMs), vowels are never generated.
        assert_eq!(workload_of("vm-0001"), "vm-0001");
        assert_eq!(workload_of("my-redis"), "my-redis");
        assert_eq!(workload_of("standalone"), "standalone");
    }

    #[test]
    fn aggregations_parse_and_unknown_ones_are_refused() {
        assert_eq!(Aggregate::parse("p95"), Some(Aggregate::Percentile(0.95)));
        assert_eq!(Aggregate::parse("last"), Some(Aggregate::Last));
        for bad in ["median", "p", "p0", "p100", "p9x", "P90"] {
            assert_eq!(Aggregate::parse(bad), None, "{bad}");
        }
    }
}
