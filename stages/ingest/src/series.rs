//! Samples as every source yields them, and their assembly into the ingest tables.
//!
//! Every parser turns its input into [`RawSeries`]; the [`Collector`] merges series seen in
//! several files (or requests), sorts each by timestamp, resolves duplicate timestamps and
//! writes the sorted long table.

use std::collections::BTreeMap;
use std::sync::Arc;

use applearner_pipeline::BoxError;
use applearner_pipeline::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, StringDictionaryBuilder, TimestampMillisecondArray, UInt64Array,
};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use applearner_pipeline::context::TableWriter;

/// Labels that get a column of their own; all others go to the `labels` JSON column.
pub const LABEL_COLUMNS: [&str; 6] = ["namespace", "pod", "container", "node", "instance", "job"];

/// One series as a source yields it: not necessarily sorted, possibly with repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub metric: String,
    /// Every label except `__name__`.
    pub labels: BTreeMap<String, String>,
    /// (Unix milliseconds, value).
    pub points: Vec<(i64, f64)>,
}

/// What one file or answer held.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<RawSeries>,
    /// Problems worth telling but not fatal (Prometheus warnings, inconsistent legacy segments).
    pub warnings: Vec<String>,
}

/// A stable id: the hash of the metric name and the sorted label set.
pub fn series_id(metric: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(metric.as_bytes());
    for (k, v) in labels {
        h.update(b"\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

#[derive(Debug, Default)]
struct Acc {
    labels: BTreeMap<String, String>,
    points: Vec<(i64, f64)>,
    out_of_order: u64,
}

/// Counts reported in the stage summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub series: u64,
    pub points: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Series from every input, keyed by (metric, series id) so the output comes out sorted.
#[derive(Debug, Default)]
pub struct Collector {
    series: BTreeMap<(String, u64), Acc>,
}

impl Collector {
    pub fn add(&mut self, raw: RawSeries) {
        let id = series_id(&raw.metric, &raw.labels);
        let acc = self.series.entry((raw.metric, id)).or_default();
        if acc.labels.is_empty() {
            acc.labels = raw.labels;
        }
        for point in raw.points {
            if acc.points.last().is_some_and(|(last, _)| *last > point.0) {
                acc.out_of_order += 1;
            }
            acc.points.push(point);
        }
    }

    /// Writes the samples through `samples` and returns the series table and the counts.
    /// Within a series, points are sorted by timestamp (stably) and of equal timestamps the
    /// first one read is kept: inputs are read in sorted path order, so this is deterministic.
    pub fn finish(
        self,
        roles: &dyn Fn(&str) -> &'static str,
        samples: &mut TableWriter<'_>,
    ) -> Result<(RecordBatch, Counts), BoxError> {
        let mut counts = Counts::default();
        let mut series = SeriesBuilder::default();
        let mut batch = SampleBuilder::default();
        for ((metric, id), mut acc) in self.series {
            counts.out_of_order += acc.out_of_order;
            acc.points.sort_by_key(|(t, _)| *t);
            let before = acc.points.len();
            acc.points.dedup_by_key(|(t, _)| *t);
            counts.duplicates += (before - acc.points.len()) as u64;
            let (Some(first), Some(last)) = (acc.points.first(), acc.points.last()) else { continue };
            counts.series += 1;
            counts.points += acc.points.len() as u64;
            let role = roles(&metric);
            series.push(id, &metric, role, &acc.labels, first.0, last.0, acc.points.len() as u64);
            let extra = extra_labels(&acc.labels);
            for (t, v) in acc.points {
                batch.push(&metric, role, id, &acc.labels, &extra, t, v);
                if batch.len() == BATCH_ROWS {
                    samples.write(&std::mem::take(&mut batch).finish())?;
                }
            }
        }
        if batch.len() > 0 {
            samples.write(&batch.finish())?;
        }
        Ok((series.finish(), counts))
    }
}

/// Rows per record batch of the samples table.
const BATCH_ROWS: usize = 64 * 1024;

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn label_fields() -> impl Iterator<Item = Field> {
    LABEL_COLUMNS.iter().map(|c| Field::new(*c, dict(), true))
}

pub fn samples_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("metric", dict(), false),
        Field::new("role", dict(), false),
        Field::new("series_id", DataType::UInt64, false),
    ];
    fields.extend(label_fields());
    fields.extend([
        Field::new("labels", dict(), false),
        Field::new("timestamp", timestamp(), false),
        Field::new("value", DataType::Float64, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub fn series_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("metric", dict(), false),
        Field::new("role", dict(), false),
    ];
    fields.extend(label_fields());
    fields.extend([
        Field::new("labels", DataType::Utf8, false),
        Field::new("first_timestamp", timestamp(), false),
        Field::new("last_timestamp", timestamp(), false),
        Field::new("points", DataType::UInt64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Labels without a column of their own, as a JSON object.
fn extra_labels(labels: &BTreeMap<String, String>) -> String {
    let extra: BTreeMap<&String, &String> =
        labels.iter().filter(|(k, _)| !LABEL_COLUMNS.contains(&k.as_str())).collect();
    serde_json::to_string(&extra).expect("labels serialize")
}

fn label_builders() -> Vec<StringDictionaryBuilder<Int32Type>> {
    LABEL_COLUMNS.iter().map(|_| StringDictionaryBuilder::new()).collect()
}

#[derive(Default)]
struct SampleBuilder {
    metric: StringDictionaryBuilder<Int32Type>,
    role: StringDictionaryBuilder<Int32Type>,
    series_id: Vec<u64>,
    labels: Vec<StringDictionaryBuilder<Int32Type>>,
    extra: StringDictionaryBuilder<Int32Type>,
    timestamp: Vec<i64>,
    value: Vec<f64>,
}

impl SampleBuilder {
    fn len(&self) -> usize {
        self.value.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        metric: &str,
        role: &str,
        id: u64,
        labels: &BTreeMap<String, String>,
        extra: &str,
        t: i64,
        v: f64,
    ) {
        if self.labels.is_empty() {
            self.labels = label_builders();
        }
        self.metric.append_value(metric);
        self.role.append_value(role);
        self.series_id.push(id);
        for (builder, name) in self.labels.iter_mut().zip(LABEL_COLUMNS) {
            builder.append_option(labels.get(name));
        }
        self.extra.append_value(extra);
        self.timestamp.push(t);
        self.value.push(v);
    }

    fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.metric.finish()),
            Arc::new(self.role.finish()),
            Arc::new(UInt64Array::from(self.series_id)),
        ];
        columns.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.extra.finish()));
        columns.push(Arc::new(TimestampMillisecondArray::from(self.timestamp).with_timezone("UTC")));
        columns.push(Arc::new(Float64Array::from(self.value)));
        RecordBatch::try_new(samples_schema(), columns).expect("columns match the schema")
    }
}

#[derive(Default)]
struct SeriesBuilder {
    id: Vec<u64>,
    metric: StringDictionaryBuilder<Int32Type>,
    role: StringDictionaryBuilder<Int32Type>,
    labels: Vec<StringDictionaryBuilder<Int32Type>>,
    all: Vec<String>,
    first: Vec<i64>,
    last: Vec<i64>,
    points: Vec<u64>,
}

impl SeriesBuilder {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: u64,
        metric: &str,
        role: &str,
        labels: &BTreeMap<String, String>,
        first: i64,
        last: i64,
        points: u64,
    ) {
        if self.labels.is_empty() {
            self.labels = label_builders();
        }
        self.id.push(id);
        self.metric.append_value(metric);
        self.role.append_value(role);
        for (b, name) in self.labels.iter_mut().zip(LABEL_COLUMNS) {
            b.append_option(labels.get(name));
        }
        self.all.push(serde_json::to_string(labels).expect("labels serialize"));
        self.first.push(first);
        self.last.push(last);
        self.points.push(points);
    }

    fn finish(mut self) -> RecordBatch {
        if self.labels.is_empty() {
            self.labels = label_builders();
        }
        let ts = |v: Vec<i64>| Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) as ArrayRef;
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(UInt64Array::from(self.id)), Arc::new(self.metric.finish()), Arc::new(self.role.finish())];
        columns.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(StringArray::from(self.all)));
        columns.push(ts(self.first));
        columns.push(ts(self.last));
        columns.push(Arc::new(UInt64Array::from(self.points)));
        RecordBatch::try_new(series_schema(), columns).expect("columns match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_ids_depend_on_labels_and_metric_only() {
        let a = BTreeMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        let mut b = a.clone();
        assert_eq!(series_id("m", &a), series_id("m", &b));
        b.insert("b".into(), "3".into());
        assert_ne!(series_id("m", &a), series_id("m", &b));
        assert_ne!(series_id("m", &a), series_id("n", &a));
    }
}
