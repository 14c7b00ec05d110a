//! Samples as every source yields them, and their assembly into the ingest tables.
//!
//! Every parser turns its input into [`RawSeries`]; the [`Collector`] merges series seen in
//! several files (or requests), sorts each by timestamp, resolves duplicate timestamps and
//! writes the sorted long table.

use std::collections::BTreeMap;
use std::sync::Arc;

use applearner_contracts::tables::{samples, series};
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

/// Where a parser hands each series (or part of one) as soon as it has it.
pub type Sink<'a> = &'a mut dyn FnMut(RawSeries) -> Result<(), crate::IngestError>;

/// What one answer held.
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

/// Counts reported in the stage summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub series: u64,
    pub points: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

type Key = (String, u64);

/// Series from every input, keyed by (metric, series id) so the output comes out sorted.
///
/// Memory is bounded: once `budget` points are held, they are sorted and spilled to a
/// temporary run file, and the runs are merged series by series at the end (an external
/// merge sort), so a dump far larger than memory still ingests.
pub struct Collector {
    budget: usize,
    held: usize,
    memory: BTreeMap<Key, Vec<(i64, f64)>>,
    labels: BTreeMap<Key, (BTreeMap<String, String>, i64)>,
    runs: Vec<std::path::PathBuf>,
    spill_dir: Option<tempfile::TempDir>,
    counts: Counts,
}

impl Collector {
    /// A collector holding at most `budget` points in memory.
    pub fn with_budget(budget: usize) -> Self {
        Collector {
            budget: budget.max(1),
            held: 0,
            memory: BTreeMap::new(),
            labels: BTreeMap::new(),
            runs: Vec::new(),
            spill_dir: None,
            counts: Counts::default(),
        }
    }

    pub fn add(&mut self, raw: RawSeries) -> std::io::Result<()> {
        let id = series_id(&raw.metric, &raw.labels);
        let key = (raw.metric, id);
        let (_, last) = self.labels.entry(key.clone()).or_insert_with(|| (raw.labels, i64::MIN));
        for (t, _) in &raw.points {
            if *t < *last {
                self.counts.out_of_order += 1;
            }
            *last = *t;
        }
        self.held += raw.points.len();
        self.memory.entry(key).or_default().extend(raw.points);
        if self.held >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts what is held and writes it as one run: per series, the key then its points.
    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        let dir = match &self.spill_dir {
            Some(d) => d,
            None => self.spill_dir.insert(tempfile::Builder::new().prefix("applearner-ingest").tempdir()?),
        };
        let path = dir.path().join(format!("run-{}", self.runs.len()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for ((metric, id), mut points) in std::mem::take(&mut self.memory) {
            self.counts.duplicates += sort_dedup(&mut points);
            out.write_all(&(metric.len() as u64).to_le_bytes())?;
            out.write_all(metric.as_bytes())?;
            out.write_all(&id.to_le_bytes())?;
            out.write_all(&(points.len() as u64).to_le_bytes())?;
            for (t, v) in points {
                out.write_all(&t.to_le_bytes())?;
                out.write_all(&v.to_le_bytes())?;
            }
        }
        out.flush()?;
        self.runs.push(path);
        self.held = 0;
        Ok(())
    }

    /// Writes the samples through `samples` and returns the series table and the counts.
    pub fn finish(
        self,
        roles: &dyn Fn(&str, &BTreeMap<String, String>) -> &'static str,
        samples: &mut TableWriter<'_>,
    ) -> Result<(RecordBatch, Counts), BoxError> {
        let mut series = SeriesBuilder::default();
        let mut batch = SampleBuilder::default();
        let counts = self.drain(|(metric, id), labels, points| {
            let (Some(first), Some(last)) = (points.first(), points.last()) else { return Ok(()) };
            let role = roles(&metric, labels);
            series.push(id, &metric, role, labels, first.0, last.0, points.len() as u64);
            let extra = extra_labels(labels);
            // Whole runs of a series at a time: one dictionary lookup per column, not per row.
            let mut rest = &points[..];
            while !rest.is_empty() {
                let take = rest.len().min(BATCH_ROWS - batch.len());
                batch.push(&metric, role, id, labels, &extra, &rest[..take]);
                rest = &rest[take..];
                if batch.len() == BATCH_ROWS {
                    samples.write(&std::mem::take(&mut batch).finish())?;
                }
            }
            Ok(())
        })?;
        if batch.len() > 0 {
            samples.write(&batch.finish())?;
        }
        Ok((series.finish(), counts))
    }

    /// Hands every series to `emit` in (metric, id) order with its points sorted by timestamp
    /// (stably) and of equal timestamps the first one read kept: inputs are read in sorted
    /// path order, so this is deterministic.
    fn drain(
        mut self,
        mut emit: impl FnMut(Key, &BTreeMap<String, String>, Vec<(i64, f64)>) -> Result<(), BoxError>,
    ) -> Result<Counts, BoxError> {
        if !self.runs.is_empty() && self.held > 0 {
            self.spill()?;
        }
        let mut counts = self.counts;
        let mut take = |key: Key, mut points: Vec<(i64, f64)>| {
            counts.duplicates += sort_dedup(&mut points);
            if !points.is_empty() {
                counts.series += 1;
                counts.points += points.len() as u64;
            }
            let labels = &self.labels[&key].0;
            emit(key, labels, points)
        };
        if self.runs.is_empty() {
            for (key, points) in std::mem::take(&mut self.memory) {
                take(key, points)?;
            }
        } else {
            let mut readers = self.runs.iter().map(RunReader::open).collect::<std::io::Result<Vec<_>>>()?;
            // Merge by series: take the smallest key among the runs and gather its points from
            // every run holding it, in run order (the order they were read).
            while let Some(key) = readers.iter().filter_map(|r| r.next_key.clone()).min() {
                let mut points = Vec::new();
                for r in readers.iter_mut().filter(|r| r.next_key.as_ref() == Some(&key)) {
                    points.extend(r.take_points()?);
                }
                take(key, points)?;
            }
        }
        Ok(counts)
    }
}

/// Sorts by timestamp (stably) and keeps the first of equal timestamps; returns how many
/// were dropped.
fn sort_dedup(points: &mut Vec<(i64, f64)>) -> u64 {
    points.sort_by_key(|(t, _)| *t);
    let before = points.len();
    points.dedup_by_key(|(t, _)| *t);
    (before - points.len()) as u64
}

/// Reads a spilled run series by series.
struct RunReader {
    input: std::io::BufReader<std::fs::File>,
    next_key: Option<Key>,
}

impl RunReader {
    fn open(path: &std::path::PathBuf) -> std::io::Result<Self> {
        let mut reader = RunReader { input: std::io::BufReader::new(std::fs::File::open(path)?), next_key: None };
        reader.next_key = reader.read_key()?;
        Ok(reader)
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        use std::io::Read;
        let mut b = [0; 8];
        self.input.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_key(&mut self) -> std::io::Result<Option<Key>> {
        use std::io::Read;
        let len = match self.u64() {
            Ok(n) => n as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut metric = vec![0; len];
        self.input.read_exact(&mut metric)?;
        let metric = String::from_utf8(metric).map_err(std::io::Error::other)?;
        Ok(Some((metric, self.u64()?)))
    }

    fn take_points(&mut self) -> std::io::Result<Vec<(i64, f64)>> {
        let n = self.u64()? as usize;
        let mut points = Vec::with_capacity(n);
        for _ in 0..n {
            let t = self.u64()? as i64;
            let v = f64::from_bits(self.u64()?);
            points.push((t, v));
        }
        self.next_key = self.read_key()?;
        Ok(points)
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
        Field::new(samples::METRIC, dict(), false),
        Field::new(samples::ROLE, dict(), false),
        Field::new(samples::SERIES_ID, DataType::UInt64, false),
    ];
    fields.extend(label_fields());
    fields.extend([
        Field::new(samples::LABELS, dict(), false),
        Field::new(samples::TIMESTAMP, timestamp(), false),
        Field::new(samples::VALUE, DataType::Float64, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub fn series_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(series::SERIES_ID, DataType::UInt64, false),
        Field::new(series::METRIC, dict(), false),
        Field::new(series::ROLE, dict(), false),
    ];
    fields.extend(label_fields());
    fields.extend([
        Field::new(series::LABELS, DataType::Utf8, false),
        Field::new(series::FIRST_TIMESTAMP, timestamp(), false),
        Field::new(series::LAST_TIMESTAMP, timestamp(), false),
        Field::new(series::POINTS, DataType::UInt64, false),
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

    /// Appends points of one series.
    fn push(
        &mut self,
        metric: &str,
        role: &str,
        id: u64,
        labels: &BTreeMap<String, String>,
        extra: &str,
        points: &[(i64, f64)],
    ) {
        if self.labels.is_empty() {
            self.labels = label_builders();
        }
        let n = points.len();
        self.metric.append_values(metric, n);
        self.role.append_values(role, n);
        self.series_id.extend(std::iter::repeat_n(id, n));
        for (builder, name) in self.labels.iter_mut().zip(LABEL_COLUMNS) {
            match labels.get(name) {
                Some(value) => builder.append_values(value, n),
                None => builder.append_nulls(n),
            }
        }
        self.extra.append_values(extra, n);
        self.timestamp.extend(points.iter().map(|(t, _)| *t));
        self.value.extend(points.iter().map(|(_, v)| *v));
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

    fn raw(pod: &str, points: &[(i64, f64)]) -> RawSeries {
        RawSeries {
            metric: "m".into(),
            labels: BTreeMap::from([("pod".to_string(), pod.to_string())]),
            points: points.to_vec(),
        }
    }

    type Drained = (Vec<(u64, Vec<(i64, f64)>)>, Counts);

    /// Everything a collector holds, in output order, and the counts.
    fn drain(c: Collector) -> Drained {
        let mut out = Vec::new();
        let counts = c
            .drain(|(_, id), _, points| {
                out.push((id, points));
                Ok(())
            })
            .unwrap();
        (out, counts)
    }

    #[test]
    fn spilling_gives_the_same_series_and_counts_as_memory() {
        let inputs = [
            raw("a", &[(3, 3.0), (1, 1.0)]),
            raw("b", &[(5, 5.0)]),
            raw("a", &[(3, 30.0), (2, 2.0), (4, 4.0)]),
            raw("c", &[(1, 1.0), (1, 10.0)]),
            raw("b", &[(4, 4.0), (6, 6.0)]),
        ];
        let collect = |budget| {
            let mut c = Collector::with_budget(budget);
            for i in inputs.clone() {
                c.add(i).unwrap();
            }
            (c.runs.len(), drain(c))
        };
        let (runs_in_memory, in_memory) = collect(1000);
        let (runs_spilled, spilled) = collect(2);
        assert_eq!(runs_in_memory, 0);
        assert!(runs_spilled >= 3, "{runs_spilled}");
        assert_eq!(in_memory, spilled);
        let (series, counts) = in_memory;
        assert_eq!(counts, Counts { series: 3, points: 8, duplicates: 2, out_of_order: 3 });
        let a = series.iter().find(|(id, _)| *id == series_id("m", &raw("a", &[]).labels)).unwrap();
        // The first value read for t=3 wins.
        assert_eq!(a.1, vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
    }

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
