//! `ingest.prometheus`: what Prometheus knows about container CPU and memory → one long
//! Parquet table of samples (sorted by metric, series, timestamp) and a table of series.
//!
//! Sources: Prometheus HTTP API answers saved as files ([`answer`]), the original
//! AppLearner dumps ([`legacy`]), `promtool tsdb dump` and OpenMetrics text ([`text`]), and a
//! live Prometheus/Thanos ([`live`]).

pub mod answer;
mod error;
mod files;
pub mod legacy;
pub mod live;
pub mod series;
pub mod text;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use applearner_contracts::Line;
use applearner_contracts::tables::{samples, series as series_table};
use applearner_pipeline::schemars::{self, JsonSchema};
use applearner_pipeline::{BoxError, Output, ParamProblem, Registry, Stage, StageContext, StageParams, Summary};
use serde::{Deserialize, Serialize};

pub use error::IngestError;
use files::{Decoded, sniff, spill_folder, walk};

use crate::live::{LiveParams, Pull};
use crate::series::{Collector, RawSeries, Sink, samples_schema, series_id};

pub fn register(registry: &mut Registry) {
    registry.register::<IngestParams>();
}

/// Reads what Prometheus knows about container CPU and memory into the `samples` table (one
/// row per sample: metric, role, series id, namespace/pod/container/node/instance/job, other
/// labels as JSON, UTC timestamp in ms, value; sorted by metric, series, timestamp) and the
/// `series` table (one row per series: labels, first and last timestamp, point count).
/// Sources are saved files (`paths`) and/or a live server (`prometheus`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// Files, folders (read recursively) or glob patterns (`dumps/**/*.json.gz`), relative
    /// to the working directory. Plain or gzipped.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Format of the files: `auto` tells them apart by content; `answer` (Prometheus
    /// query/query_range JSON), `legacy` (the original AppLearner dumps), `text`
    /// (`promtool tsdb dump`, Prometheus text or OpenMetrics with timestamps).
    #[serde(default)]
    pub format: Format,
    /// A live Prometheus, Thanos or OpenShift thanos-querier to query.
    #[serde(default)]
    pub prometheus: Option<LiveParams>,
    /// Metric name → role. Metrics not listed get the role `other`.
    #[serde(default = "default_roles")]
    pub roles: BTreeMap<String, Role>,
    /// Keep only the samples at or before this time (RFC 3339 or Unix seconds), from every
    /// source: what they held then. Replays hourly refreshes on saved data.
    #[serde(default)]
    pub until: Option<String>,
    /// Name for series of saved answers without a `__name__` label (results of `rate(…)`).
    #[serde(default)]
    pub metric: Option<String>,
    /// Samples held in memory before they are sorted and spilled to a temporary file
    /// (16 bytes each): bounds memory whatever the size of the input.
    #[serde(default = "default_max_points_in_memory")]
    pub max_points_in_memory: usize,
}

fn default_max_points_in_memory() -> usize {
    4 << 20
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Auto,
    Answer,
    Legacy,
    Text,
}

/// What a metric measures. Usage (`cpu`, `memory`) is learned and planned; the allocation
/// (`request`, `limit`: kube-state-metrics, one series per `resource`) and the pain signals
/// (`restarts`, `oom_killed`: the last terminated reason, `throttled`: the share of CFS
/// periods throttled) are set beside the plan; kube-state-metrics' objects say where a
/// plan goes: the owners (`pod_owner`, `replicaset_owner`, `job_owner`), the HPAs
/// (`hpa_info`: its target, `hpa_target`: a metric's target, `hpa_replicas`,
/// `hpa_desired_replicas`) and the namespaces' quotas (`quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Cpu,
    Memory,
    Request,
    Limit,
    Restarts,
    OomKilled,
    Throttled,
    PodOwner,
    ReplicasetOwner,
    JobOwner,
    HpaInfo,
    HpaTarget,
    HpaReplicas,
    HpaDesiredReplicas,
    Quota,
    Other,
}

impl Role {
    /// The role a series gets in the samples table: requests and limits by their `resource`
    /// label (`cpu_request`, `memory_limit`; other resources such as GPUs are `other`), the
    /// last terminated reason only where it is `OOMKilled` (or the query kept no reason).
    fn of(self, labels: &BTreeMap<String, String>) -> &'static str {
        let resource = labels.get("resource").map(String::as_str);
        match (self, resource) {
            (Role::Cpu, _) => "cpu",
            (Role::Memory, _) => "memory",
            (Role::Request, Some("cpu")) => Line::CpuRequest.name(),
            (Role::Request, Some("memory")) => Line::MemoryRequest.name(),
            (Role::Limit, Some("cpu")) => Line::CpuLimit.name(),
            (Role::Limit, Some("memory")) => Line::MemoryLimit.name(),
            (Role::Restarts, _) => "restarts",
            (Role::OomKilled, _) if labels.get("reason").is_none_or(|r| r == "OOMKilled") => "oom_killed",
            (Role::Throttled, _) => "cpu_throttled",
            (Role::PodOwner, _) => "pod_owner",
            (Role::ReplicasetOwner, _) => "replicaset_owner",
            (Role::JobOwner, _) => "job_owner",
            (Role::HpaInfo, _) => "hpa_info",
            (Role::HpaTarget, _) => "hpa_target",
            (Role::HpaReplicas, _) => "hpa_replicas",
            (Role::HpaDesiredReplicas, _) => "hpa_desired_replicas",
            (Role::Quota, _) => "quota",
            _ => "other",
        }
    }
}

/// The usual container metrics, kube-prometheus' recording rules, the default live queries'
/// names, node-level usage (docs/stages.md: nodes and VMs) and the original AppLearner dumps.
fn default_roles() -> BTreeMap<String, Role> {
    [
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate", Role::Cpu),
        ("node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate", Role::Cpu),
        ("container_cpu_usage_cores", Role::Cpu),
        ("container_cpu", Role::Cpu),
        ("node_cpu_usage_cores", Role::Cpu),
        ("container_memory_working_set_bytes", Role::Memory),
        ("container_mem", Role::Memory),
        ("node_mem", Role::Memory),
        ("node_memory_working_set_bytes", Role::Memory),
        ("kube_pod_container_resource_requests", Role::Request),
        ("kube_pod_container_resource_limits", Role::Limit),
        ("kube_pod_container_status_restarts_total", Role::Restarts),
        ("kube_pod_container_status_last_terminated_reason", Role::OomKilled),
        ("container_cpu_cfs_throttled_ratio", Role::Throttled),
        ("kube_pod_owner", Role::PodOwner),
        ("kube_replicaset_owner", Role::ReplicasetOwner),
        ("kube_job_owner", Role::JobOwner),
        ("kube_horizontalpodautoscaler_info", Role::HpaInfo),
        ("kube_horizontalpodautoscaler_spec_target_metric", Role::HpaTarget),
        ("kube_horizontalpodautoscaler_status_current_replicas", Role::HpaReplicas),
        ("kube_horizontalpodautoscaler_status_desired_replicas", Role::HpaDesiredReplicas),
        ("kube_resourcequota", Role::Quota),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl StageParams for IngestParams {
    const KIND: &'static str = "ingest.prometheus";
    const SOURCE: &'static str = file!();

    fn build(self) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        if self.paths.is_empty() && self.prometheus.is_none() {
            problems.push(ParamProblem::new(
                &[],
                "nothing to ingest",
                "give `paths:` of saved answers or dumps, or `prometheus:`",
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
        let pull = self.prometheus.as_ref().and_then(|live| resolve_pull(live, &mut problems));
        let until = match &self.until {
            None => i64::MAX,
            Some(t) => live::parse_time(t, chrono::Utc::now())
                .filter(|_| t != "now" && !t.starts_with('-'))
                .unwrap_or_else(|| {
                    let help = "an absolute time: RFC 3339 (2024-05-01T00:00:00Z) or Unix seconds";
                    problems.push(ParamProblem::new(&["until"], format!("`{t}` is not an absolute time"), help));
                    i64::MAX
                }),
        };
        if problems.is_empty() { Ok(Box::new(Ingest { params: self, pull, until })) } else { Err(problems) }
    }
}

/// Checks a live source and fixes its times (relative times are taken against now, once).
fn resolve_pull(live: &LiveParams, problems: &mut Vec<ParamProblem>) -> Option<Pull> {
    let now = chrono::Utc::now();
    let at = |field: &str| ["prometheus", field].map(str::to_string).to_vec();
    let mut bad = |field: &str, message: String, help: &str| {
        problems.push(ParamProblem { path: at(field), message, help: Some(help.to_string()) });
    };
    let time_help = "use RFC 3339 (2024-05-01T00:00:00Z), Unix seconds, `now` or `-7d`";
    let start = live::parse_time(&live.start, now);
    let end = live::parse_time(&live.end, now);
    if start.is_none() {
        bad("start", format!("`{}` is not a time", live.start), time_help);
    }
    if end.is_none() {
        bad("end", format!("`{}` is not a time", live.end), time_help);
    }
    if !live.url.starts_with("http://") && !live.url.starts_with("https://") {
        bad("url", format!("`{}` is not an http(s) URL", live.url), "write it as http://host:9090 or https://…");
    }
    if live.queries.is_empty() {
        bad("queries", "no queries".into(), "leave `queries` out for the default container CPU and memory queries");
    }
    if live.bearer_token_env.is_some() && live.bearer_token_file.is_some() {
        bad("bearer_token_file", "both a token variable and a token file are given".into(), "keep one of them");
    }
    let (start, end, step, timeout) = (start?, end?, live.step.ms(), live.timeout.ms());
    if start > end {
        bad("start", "the range starts after it ends".into(), "make `start` earlier than `end`");
        return None;
    }
    // Prometheus answers on the grid start + k·step; aligning the start to the step makes
    // the grid independent of when the run happens.
    let start = start.div_euclid(step) * step;
    Some(Pull {
        params: live.clone(),
        start_ms: start,
        end_ms: end,
        step_ms: step,
        timeout: Duration::from_millis(timeout as u64),
    })
}

struct Ingest {
    params: IngestParams,
    pull: Option<Pull>,
    /// `until` in Unix milliseconds (`i64::MAX`: no end).
    until: i64,
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

    /// Streams one file into `sink`: returns the bytes read (after decompression) and the
    /// warnings.
    fn parse_file(&self, path: &Path, sink: Sink<'_>) -> Result<(u64, Vec<String>), IngestError> {
        let source = path.display().to_string();
        let io = |error| IngestError::Io { origin: source.clone(), error };
        let mut input = Decoded::open(path).map_err(io)?;
        let mut head = Vec::new();
        (&mut input).take(4096).read_to_end(&mut head).map_err(io)?;
        let format = match self.params.format {
            Format::Auto => sniff(&head),
            f => f,
        };
        let openmetrics = format == Format::Text && text::ends_with_eof(&Decoded::tail(path).map_err(io)?);
        let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::Cursor::new(head).chain(input));
        let warnings = match format {
            Format::Answer | Format::Auto => {
                answer::parse_stream(&source, &mut input, self.params.metric.as_deref(), sink)?
            }
            Format::Legacy => legacy::parse_stream(&source, &mut input, sink)?,
            Format::Text => text::parse_stream(&source, &mut input, openmetrics, sink)?,
        };
        Ok((input.into_inner().into_inner().1.bytes, warnings))
    }

    /// Streams every file into `sink` in path order. A few files per thread are parsed at
    /// once, each into a small bounded queue drained in path order: the output does not
    /// depend on timing, and memory holds a few series per file in flight, whatever the
    /// files' sizes.
    /// Queries the live Prometheus, if the stage has one, handing each series to `add`;
    /// returns how many requests it made.
    fn pull(&self, ctx: &StageContext, warnings: &mut Vec<String>, add: Sink<'_>) -> Result<usize, BoxError> {
        let Some(pull) = &self.pull else { return Ok(0) };
        let requests = pull.requests().len();
        let bar = ctx.progress(requests as u64, "queries");
        let answers = ctx.store().block_on(pull.fetch_all(&|| ctx.is_cancelled(), &|| bar.inc(1)))?;
        bar.finish();
        for p in answers {
            warnings.extend(p.warnings);
            for s in p.series {
                add(s)?;
            }
        }
        Ok(requests)
    }

    fn read_files(
        &self,
        files: &[PathBuf],
        ctx: &StageContext,
        sink: Sink<'_>,
    ) -> Result<(u64, Vec<String>), BoxError> {
        let bar = ctx.progress(files.len() as u64, "files");
        let in_flight = rayon::current_num_threads() * 2;
        let (mut bytes, mut warnings) = (0, Vec::new());
        std::thread::scope(|scope| -> Result<(), BoxError> {
            let mut pending = std::collections::VecDeque::new();
            let mut next = files.iter();
            loop {
                while pending.len() < in_flight {
                    let Some(file) = next.next() else { break };
                    let (tx, rx) = std::sync::mpsc::sync_channel(16);
                    let parser = scope.spawn(move || {
                        // A closed queue means the reader stopped on an error of its own.
                        self.parse_file(file, &mut |s| tx.send(s).map_err(|_| IngestError::Cancelled))
                    });
                    pending.push_back((rx, parser));
                }
                let Some((rx, parser)) = pending.pop_front() else { return Ok(()) };
                ctx.check_cancelled()?;
                for series in rx {
                    sink(series)?;
                }
                let (b, w) = parser.join().expect("a parser thread panicked")?;
                bytes += b;
                warnings.extend(w);
                bar.inc(1);
            }
        })?;
        bar.finish();
        Ok((bytes, warnings))
    }
}

impl Stage for Ingest {
    fn writes(&self) -> Vec<Output> {
        vec![Output::table(samples::NAME), Output::table(series_table::NAME)]
    }

    fn shard_order(&self) -> Option<Vec<(&'static str, Vec<&'static str>)>> {
        Some(vec![
            (samples::NAME, vec![samples::METRIC, samples::SERIES_ID, samples::TIMESTAMP]),
            (series_table::NAME, vec![series_table::METRIC, series_table::SERIES_ID]),
        ])
    }

    fn fingerprint(&self, _store: &applearner_pipeline::Store, hasher: &mut blake3::Hasher) -> Result<(), BoxError> {
        for file in self.files()? {
            hasher.update(file.to_string_lossy().as_bytes());
            let mut f = std::fs::File::open(&file)
                .map_err(|error| IngestError::Io { origin: file.display().to_string(), error })?;
            hasher
                .update_reader(&mut f)
                .map_err(|error| IngestError::Io { origin: file.display().to_string(), error })?;
        }
        if let Some(pull) = &self.pull {
            hasher.update(
                format!("{}\0{}\0{}\0{}", pull.params.url, pull.start_ms, pull.end_ms, pull.step_ms).as_bytes(),
            );
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> Result<Summary, BoxError> {
        let files = self.files()?;
        let mut collector = Collector::with_budget(self.params.max_points_in_memory);
        let mut warnings = Vec::new();
        // Sharded, every shard reads every source and keeps its own series.
        let in_shard = |s: &RawSeries| ctx.in_shard(&series_id(&s.metric, &s.labels).to_be_bytes());
        let mut after_until = 0;
        let mut cut = |mut s: RawSeries| {
            let before = s.points.len();
            s.points.retain(|p| p.0 <= self.until);
            after_until += before - s.points.len();
            s
        };

        let (bytes_read, file_warnings) = self.read_files(&files, ctx, &mut |s| {
            if !in_shard(&s) {
                return Ok(());
            }
            let s = cut(s);
            // Only spilling to the temporary folder writes here.
            collector.add(s).map_err(|error| IngestError::Io { origin: spill_folder(), error })
        })?;
        warnings.extend(file_warnings);

        let requests = self.pull(ctx, &mut warnings, &mut |s| {
            if in_shard(&s) {
                collector.add(cut(s)).map_err(|error| IngestError::Io { origin: spill_folder(), error })?;
            }
            Ok(())
        })?;
        for w in &warnings {
            tracing::warn!("{w}");
        }

        let roles = |metric: &str, labels: &BTreeMap<String, String>| {
            self.params.roles.get(metric).copied().unwrap_or(Role::Other).of(labels)
        };
        let mut writer = ctx.table_writer(samples::NAME, samples_schema())?;
        let (table, counts) = collector.finish(&roles, &mut writer)?;
        writer.finish()?;
        ctx.write_table(series_table::NAME, table.schema(), &[table])?;

        let mut summary = Summary::new();
        summary.insert("files".into(), files.len().into());
        summary.insert("bytes_read".into(), bytes_read.into());
        summary.insert("requests".into(), requests.into());
        summary.insert("series".into(), counts.series.into());
        summary.insert("points".into(), counts.points.into());
        summary.insert("duplicate_timestamps_dropped".into(), counts.duplicates.into());
        if self.until < i64::MAX {
            summary.insert("samples_after_until_dropped".into(), after_until.into());
        }
        summary.insert("out_of_order_samples_sorted".into(), counts.out_of_order.into());
        summary.insert("warnings".into(), warnings.into());
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_content() {
        assert_eq!(sniff(b"  {\"status\":\"success\"}"), Format::Answer);
        assert_eq!(sniff(b"[{\"metric\":{}}]"), Format::Answer);
        assert_eq!(sniff(b"{\"web, shop, n1, web-1\": []}"), Format::Legacy);
        assert_eq!(sniff(b"{__name__=\"m\"} 1 2"), Format::Text);
        assert_eq!(sniff(b"# HELP m\nm 1 2"), Format::Text);
        assert_eq!(sniff(b"<html>"), Format::Answer);
    }

    /// An input that never ends: `head`, then `item` repeated forever.
    struct Endless {
        head: &'static [u8],
        item: &'static [u8],
        served: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.served;
            let byte = |i: usize| match i.checked_sub(self.head.len()) {
                None => self.head[i],
                Some(j) => self.item[j % self.item.len()],
            };
            buf.iter_mut().enumerate().for_each(|(i, b)| *b = byte(at + i));
            self.served += buf.len();
            Ok(buf.len())
        }
    }

    /// Every parser hands series on while it reads: fed an endless input, it delivers series
    /// from a bounded prefix, and the sink's own error (here: a cancelled run) comes back.
    #[test]
    fn parsers_stream_an_endless_input() {
        let inputs = [
            (
                Format::Answer,
                Endless {
                    head: br#"{"status":"success","data":{"resultType":"matrix","result":["#,
                    item: br#"{"metric":{"__name__":"m","pod":"p"},"values":[[1,"1"],[2,"2"]]},"#,
                    served: 0,
                },
            ),
            (
                Format::Legacy,
                Endless {
                    head: b"{",
                    item: br#""c, ns, n, p": [{"start":"2022-08-23 12:00:00","stop":"2022-08-23 12:01:00","data":[1,2]}],"#,
                    served: 0,
                },
            ),
            // One series forever: it is handed on in chunks.
            (Format::Text, Endless { head: b"", item: b"{__name__=\"m\", pod=\"p\"} 1 1000\n", served: 0 }),
        ];
        for (format, mut input) in inputs {
            let mut points = 0;
            let mut sink = |s: RawSeries| {
                assert_eq!((s.metric.as_str(), s.labels.get("pod").map(String::as_str)), ("m", Some("p")));
                points += s.points.len();
                if points >= 200_000 { Err(IngestError::Cancelled) } else { Ok(()) }
            };
            let source = "endless/container_cpu.json";
            let outcome = match format {
                Format::Answer => answer::parse_stream(source, &mut input, None, &mut sink),
                Format::Legacy => {
                    let mut sink = |mut s: RawSeries| {
                        s.metric = "m".into();
                        sink(s)
                    };
                    legacy::parse_stream(source, &mut input, &mut sink)
                }
                _ => text::parse_stream(source, std::io::BufReader::new(&mut input), false, &mut sink),
            };
            assert!(matches!(outcome, Err(IngestError::Cancelled)), "{format:?}: {outcome:?}");
            assert!(points >= 200_000);
            // 200,000 points take 3 to 7 MB of input in these formats; the parsers read ahead
            // by a buffer, not by the input.
            assert!(input.served < 16 << 20, "{format:?} read {} bytes", input.served);
        }
    }
}
