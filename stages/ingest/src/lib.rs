//! `ingest.prometheus`: Prometheus HTTP API answers saved as files → one long Parquet table
//! of samples (sorted by metric, series, timestamp) and a table of series.
//!
//! Reads `/api/v1/query_range` (`matrix`) and `/api/v1/query` (`vector`, `matrix`) answers,
//! with the `{"status","data"}` envelope or as the bare result array client libraries save,
//! plain or gzipped, from files, folders or glob patterns.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use applearner_pipeline::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringDictionaryBuilder, TimestampMillisecondArray, UInt64Array,
};
use applearner_pipeline::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Registry, Stage, StageContext, StageParams, Summary};
use serde::{Deserialize, Serialize};

pub fn register(registry: &mut Registry) {
    registry.register::<IngestParams>();
}

/// Labels that get a column of their own; all others go to the `labels` JSON column.
pub const LABEL_COLUMNS: [&str; 6] = ["namespace", "pod", "container", "node", "instance", "job"];

/// Reads Prometheus HTTP API answers saved as files (query_range `matrix`, query `vector`
/// or `matrix`; enveloped or bare; `.json` or `.json.gz`) into the `samples` table (one row
/// per sample, sorted by metric, series, timestamp) and the `series` table (one row per
/// series: labels, first and last timestamp, point count).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// Files, folders (read recursively) or glob patterns (`data/**/*.json.gz`), relative to
    /// the working directory.
    pub paths: Vec<String>,
    /// Metric name → role. Series of metrics not listed get the role `other`.
    #[serde(default = "default_roles")]
    pub roles: BTreeMap<String, Role>,
    /// Name for series whose answer has no `__name__` label (results of `rate(…)`, sums).
    #[serde(default)]
    pub metric: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Cpu,
    Memory,
    Other,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Cpu => "cpu",
            Role::Memory => "memory",
            Role::Other => "other",
        }
    }
}

/// The usual container metrics and the recording rules of kube-prometheus.
fn default_roles() -> BTreeMap<String, Role> {
    [
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate", Role::Cpu),
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate", Role::Cpu),
        ("container_cpu_usage_seconds_total", Role::Cpu),
        ("container_memory_working_set_bytes", Role::Memory),
        ("container_memory_rss", Role::Memory),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl StageParams for IngestParams {
    const KIND: &'static str = "ingest.prometheus";

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        if self.paths.is_empty() {
            problems.push(ParamProblem::new(
                &["paths"],
                "no paths given",
                "list files, folders or globs of saved answers",
            ));
        }
        for p in &self.paths {
            if let Err(e) = glob::Pattern::new(p) {
                problems.push(ParamProblem::new(
                    &["paths"],
                    format!("`{p}` is not a valid glob: {e}"),
                    "escape `[`, `]`, `*`, `?` as `[[]`, `[]]`, `[*]`, `[?]`",
                ));
            }
        }
        if problems.is_empty() { Ok(Box::new(Ingest { params: self })) } else { Err(problems) }
    }
}

struct Ingest {
    params: IngestParams,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no file matches `{0}`; check the path (it is relative to the working directory)")]
    NoMatch(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: line {line}, column {column}: {message}")]
    Json { path: String, line: usize, column: usize, message: String },
    #[error("{path}: Prometheus answered `{error_type}`: {error}")]
    Prometheus { path: String, error_type: String, error: String },
    #[error("{path}: unsupported resultType `{0}`; save a query_range (matrix) or query (vector) answer", .result_type)]
    ResultType { path: String, result_type: String },
    #[error("{path}: series {labels}: {message}")]
    Sample { path: String, labels: String, message: String },
}

impl Ingest {
    fn files(&self) -> Result<Vec<PathBuf>, IngestError> {
        let mut files = Vec::new();
        for pattern in &self.params.paths {
            let matched: Vec<PathBuf> = glob::glob(pattern)
                .expect("patterns are checked in build")
                .filter_map(Result::ok)
                .flat_map(|p| if p.is_dir() { walk(&p) } else { vec![p] })
                .collect();
            if matched.is_empty() {
                return Err(IngestError::NoMatch(pattern.clone()));
            }
            files.extend(matched);
        }
        files.sort();
        files.dedup();
        Ok(files)
    }
}

/// Answer files below a folder, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json") || p.to_string_lossy().ends_with(".json.gz") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_file(path: &Path) -> Result<Vec<u8>, IngestError> {
    let io = |source| IngestError::Io { path: path.display().to_string(), source };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 6);
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<SeriesJson>,
}

#[derive(Deserialize)]
struct SeriesJson {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Prometheus writes values as strings: decimals, `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[derive(Debug, Default)]
struct SeriesAcc {
    labels: BTreeMap<String, String>,
    points: Vec<(i64, f64)>,
    out_of_order: u64,
}

#[derive(Debug, Default)]
struct Collected {
    series: BTreeMap<(String, u64), SeriesAcc>,
    warnings: Vec<String>,
}

impl Collected {
    fn add_answer(&mut self, path: &Path, bytes: &[u8], fallback_metric: Option<&str>) -> Result<(), IngestError> {
        let shown = path.display().to_string();
        let json_err = |e: serde_json::Error| IngestError::Json {
            path: shown.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
        };
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let result = if first == Some(&b'[') {
            serde_json::from_slice::<Vec<SeriesJson>>(bytes).map_err(json_err)?
        } else {
            let envelope: Envelope = serde_json::from_slice(bytes).map_err(json_err)?;
            if envelope.status != "success" {
                return Err(IngestError::Prometheus {
                    path: shown,
                    error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
                    error: envelope.error.unwrap_or_default(),
                });
            }
            self.warnings.extend(envelope.warnings.into_iter().map(|w| format!("{shown}: {w}")));
            let data = envelope.data.ok_or_else(|| IngestError::Json {
                path: shown.clone(),
                line: 1,
                column: 1,
                message: "a successful answer without `data`".into(),
            })?;
            if data.result_type != "matrix" && data.result_type != "vector" {
                return Err(IngestError::ResultType { path: shown, result_type: data.result_type });
            }
            data.result
        };
        for s in result {
            let metric = match (s.metric.get("__name__"), fallback_metric) {
                (Some(m), _) => m.clone(),
                (None, Some(m)) => m.to_string(),
                (None, None) => {
                    return Err(IngestError::Sample {
                        path: shown,
                        labels: format!("{:?}", s.metric),
                        message: "has no `__name__`".into(),
                    }
                    .with_help());
                }
            };
            let id = series_id(&metric, &s.metric);
            let acc = self.series.entry((metric, id)).or_default();
            if acc.labels.is_empty() {
                acc.labels = s.metric.clone();
            }
            for (t, v) in s.values.iter().chain(s.value.iter()) {
                let value = parse_value(v).ok_or_else(|| IngestError::Sample {
                    path: shown.clone(),
                    labels: format!("{:?}", s.metric),
                    message: format!("value `{v}` at {t} is not a number"),
                })?;
                let ts = (t * 1000.0).round() as i64;
                if acc.points.last().is_some_and(|(last, _)| *last > ts) {
                    acc.out_of_order += 1;
                }
                acc.points.push((ts, value));
            }
        }
        Ok(())
    }
}

impl IngestError {
    fn with_help(self) -> Self {
        match self {
            IngestError::Sample { path, labels, message } => {
                IngestError::Sample { path, labels, message: format!("{message}; set `metric:` to name such series") }
            }
            other => other,
        }
    }
}

/// A stable id: the hash of the metric name and the sorted label set.
fn series_id(metric: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(metric.as_bytes());
    for (k, v) in labels.iter().filter(|(k, _)| *k != "__name__") {
        h.update(b"\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub fn samples_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("metric", dict(), false),
        Field::new("role", dict(), false),
        Field::new("series_id", DataType::UInt64, false),
    ];
    fields.extend(LABEL_COLUMNS.iter().map(|c| Field::new(*c, dict(), true)));
    fields.extend([
        Field::new("labels", dict(), false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub fn series_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("metric", dict(), false),
        Field::new("role", dict(), false),
    ];
    fields.extend(LABEL_COLUMNS.iter().map(|c| Field::new(*c, dict(), true)));
    fields.extend([
        Field::new("labels", DataType::Utf8, false),
        Field::new("first_timestamp", ts.clone(), false),
        Field::new("last_timestamp", ts, false),
        Field::new("points", DataType::UInt64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// Labels other than `__name__` and the ones with columns, as a JSON object.
fn extra_labels(labels: &BTreeMap<String, String>) -> String {
    let extra: BTreeMap<&String, &String> =
        labels.iter().filter(|(k, _)| *k != "__name__" && !LABEL_COLUMNS.contains(&k.as_str())).collect();
    serde_json::to_string(&extra).expect("labels serialize")
}

/// Rows per record batch of the samples table.
const BATCH_ROWS: usize = 64 * 1024;

impl Stage for Ingest {
    fn writes(&self) -> Vec<Output> {
        vec![Output::table("samples"), Output::table("series")]
    }

    fn fingerprint(&self, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        for file in self.files()? {
            hasher.update(file.to_string_lossy().as_bytes());
            let mut f = std::fs::File::open(&file)
                .map_err(|source| IngestError::Io { path: file.display().to_string(), source })?;
            hasher
                .update_reader(&mut f)
                .map_err(|source| IngestError::Io { path: file.display().to_string(), source })?;
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let files = self.files()?;
        let bar = ctx.progress(files.len() as u64, "answers");
        let mut collected = Collected::default();
        let mut bytes_read = 0u64;
        for file in &files {
            ctx.check_cancelled()?;
            let bytes = read_file(file)?;
            bytes_read += bytes.len() as u64;
            collected.add_answer(file, &bytes, self.params.metric.as_deref())?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        for w in &collected.warnings {
            tracing::warn!("{w}");
        }

        let (mut duplicates, mut out_of_order, mut points) = (0u64, 0u64, 0u64);
        let mut writer = ctx.table_writer("samples", samples_schema())?;
        let mut series_rows = Vec::new();
        let mut batch = SampleBatch::default();
        for ((metric, id), mut acc) in collected.series {
            out_of_order += acc.out_of_order;
            // Stable sort, then keep the first sample of each timestamp (file order decides).
            acc.points.sort_by_key(|(t, _)| *t);
            let before = acc.points.len();
            acc.points.dedup_by_key(|(t, _)| *t);
            duplicates += (before - acc.points.len()) as u64;
            if acc.points.is_empty() {
                continue;
            }
            points += acc.points.len() as u64;
            let role = self.params.roles.get(&metric).copied().unwrap_or(Role::Other);
            let extra = extra_labels(&acc.labels);
            series_rows.push((
                id,
                metric.clone(),
                role,
                acc.labels.clone(),
                acc.points[0].0,
                acc.points[acc.points.len() - 1].0,
                acc.points.len() as u64,
            ));
            for (t, v) in acc.points {
                batch.push(&metric, role, id, &acc.labels, &extra, t, v);
                if batch.len() == BATCH_ROWS {
                    writer.write(&std::mem::take(&mut batch).finish())?;
                }
            }
        }
        if batch.len() > 0 {
            writer.write(&batch.finish())?;
        }
        writer.finish()?;
        let series_count = series_rows.len();
        ctx.write_table("series", series_schema(), &[series_batch(series_rows)])?;

        let mut summary = Summary::new();
        summary.insert("files".into(), files.len().into());
        summary.insert("bytes_read".into(), bytes_read.into());
        summary.insert("series".into(), series_count.into());
        summary.insert("points".into(), points.into());
        summary.insert("duplicate_timestamps_dropped".into(), duplicates.into());
        summary.insert("out_of_order_samples_sorted".into(), out_of_order.into());
        summary.insert("warnings".into(), collected.warnings.into());
        Ok(summary)
    }
}

#[derive(Default)]
struct SampleBatch {
    metric: StringDictionaryBuilder<Int32Type>,
    role: StringDictionaryBuilder<Int32Type>,
    series_id: Vec<u64>,
    labels: Vec<StringDictionaryBuilder<Int32Type>>,
    extra: StringDictionaryBuilder<Int32Type>,
    timestamp: Vec<i64>,
    value: Vec<f64>,
}

impl SampleBatch {
    fn len(&self) -> usize {
        self.value.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        metric: &str,
        role: Role,
        id: u64,
        labels: &BTreeMap<String, String>,
        extra: &str,
        t: i64,
        v: f64,
    ) {
        if self.labels.is_empty() {
            self.labels = LABEL_COLUMNS.iter().map(|_| StringDictionaryBuilder::new()).collect();
        }
        self.metric.append_value(metric);
        self.role.append_value(role.name());
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

type SeriesRow = (u64, String, Role, BTreeMap<String, String>, i64, i64, u64);

fn series_batch(rows: Vec<SeriesRow>) -> RecordBatch {
    let mut metric = StringDictionaryBuilder::<Int32Type>::new();
    let mut role = StringDictionaryBuilder::<Int32Type>::new();
    let mut labels: Vec<StringDictionaryBuilder<Int32Type>> =
        LABEL_COLUMNS.iter().map(|_| StringDictionaryBuilder::new()).collect();
    let mut all = Vec::new();
    for (_, m, r, l, ..) in &rows {
        metric.append_value(m);
        role.append_value(r.name());
        for (b, name) in labels.iter_mut().zip(LABEL_COLUMNS) {
            b.append_option(l.get(name));
        }
        let without_name: BTreeMap<&String, &String> = l.iter().filter(|(k, _)| *k != "__name__").collect();
        all.push(serde_json::to_string(&without_name).expect("labels serialize"));
    }
    let ts = |f: fn(&SeriesRow) -> i64| {
        Arc::new(TimestampMillisecondArray::from(rows.iter().map(f).collect::<Vec<_>>()).with_timezone("UTC"))
            as ArrayRef
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(metric.finish()),
        Arc::new(role.finish()),
    ];
    columns.extend(labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(applearner_pipeline::arrow::array::StringArray::from(all)));
    columns.push(ts(|r| r.4));
    columns.push(ts(|r| r.5));
    columns.push(Arc::new(UInt64Array::from(rows.iter().map(|r| r.6).collect::<Vec<_>>())));
    RecordBatch::try_new(series_schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Result<Collected, IngestError> {
        let mut c = Collected::default();
        c.add_answer(Path::new("answer.json"), text.as_bytes(), None)?;
        Ok(c)
    }

    #[test]
    fn reads_enveloped_matrix_with_special_values() {
        let c = collect(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m","pod":"p"},"values":[[2,"NaN"],[1,"+Inf"],[3,"-Inf"],[4,"1.5"]]}]},
            "warnings":["slow"]}"#,
        )
        .unwrap();
        let acc = c.series.values().next().unwrap();
        assert_eq!(acc.points.len(), 4);
        assert!(acc.points[0].1.is_nan());
        assert_eq!(acc.points[1], (1000, f64::INFINITY));
        assert_eq!(acc.points[2], (3000, f64::NEG_INFINITY));
        assert_eq!(acc.out_of_order, 1);
        assert_eq!(c.warnings, vec!["answer.json: slow"]);
    }

    #[test]
    fn reads_bare_vectors() {
        let c = collect(r#"[{"metric":{"__name__":"m"},"value":[1661256000.5,"2"]}]"#).unwrap();
        assert_eq!(c.series.values().next().unwrap().points, vec![(1661256000500, 2.0)]);
    }

    #[test]
    fn prometheus_errors_are_reported_with_their_type() {
        let err = collect(r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#).unwrap_err();
        assert_eq!(err.to_string(), "answer.json: Prometheus answered `bad_data`: parse error at char 3");
    }

    #[test]
    fn broken_json_names_line_and_column() {
        let err = collect("{\"status\":\"success\",\n\"data\": {\"resultType\": 3}}").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("answer.json: line 2, column"), "{text}");
    }

    #[test]
    fn series_ids_ignore_label_order_but_not_values() {
        let a = BTreeMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        let mut b = a.clone();
        assert_eq!(series_id("m", &a), series_id("m", &b));
        b.insert("b".into(), "3".into());
        assert_ne!(series_id("m", &a), series_id("m", &b));
        assert_ne!(series_id("m", &a), series_id("n", &a));
    }
}
