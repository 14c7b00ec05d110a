//! Pulling from a live Prometheus, Thanos Querier or OpenShift thanos-querier over the
//! HTTP API (`/api/v1/query_range`).
//!
//! The range is split so that no answer exceeds Prometheus' 11,000 points per series;
//! requests run with bounded concurrency so a busy server is not overloaded; 5xx, 429,
//! timeouts and refused connections are retried with exponential backoff; a query the
//! server refuses (400, 422) fails at once with Prometheus' own error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use applearner_pipeline::parse_duration;
use applearner_pipeline::schemars::{self, JsonSchema};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::IngestError;
use crate::answer;
use crate::series::Parsed;

/// Prometheus refuses ranges of more than 11,000 points per series; stay under it.
const MAX_POINTS_PER_REQUEST: i64 = 10_000;

/// A live Prometheus-compatible server to query.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// Base URL, e.g. `http://prometheus:9090` or
    /// `https://thanos-querier-openshift-monitoring.apps.example.com`.
    pub url: String,
    /// Metric name → PromQL query. Every series a query returns is stored under its name.
    #[serde(default = "default_queries")]
    pub queries: BTreeMap<String, String>,
    /// Start of the range: RFC 3339 (`2024-05-01T00:00:00Z`), Unix seconds, or relative to
    /// now (`-7d`, `-12h`). Pin absolute times to make a run reproducible.
    pub start: String,
    /// End of the range, in the same forms, or `now`.
    #[serde(default = "default_end")]
    pub end: String,
    /// Resolution step: `30s`, `1m`, `5m`, `1h`.
    #[serde(default = "default_step")]
    pub step: applearner_pipeline::Duration,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// File holding a bearer token (e.g. a Kubernetes service-account token).
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// User for basic auth; the password comes from `basic_auth_password_env`.
    #[serde(default)]
    pub basic_auth_user: Option<String>,
    /// Environment variable holding the basic-auth password.
    #[serde(default)]
    pub basic_auth_password_env: Option<String>,
    /// PEM file of an extra CA to trust (e.g. OpenShift's service CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Skip TLS certificate verification. Only for testing: it warns on every run.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of a failed request (5xx, 429, timeout, refused connection).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Timeout of one request.
    #[serde(default = "default_timeout")]
    pub timeout: applearner_pipeline::Duration,
}

/// CPU cores per container from the cAdvisor counter, and the working set, the memory the
/// kubelet evicts on: the usual container metrics on any Kubernetes cluster. Beside them what
/// is allocated (kube-state-metrics' requests and limits), what hurt (restarts, the last
/// terminated reason where it is `OOMKilled`, the share of CFS periods throttled): a cluster
/// without kube-state-metrics answers those with no series, and plans come without savings.
/// Then the owners, HPAs and quotas ([`kube_queries`]) and what often leads usage
/// ([`covariate_queries`]).
fn default_queries() -> BTreeMap<String, String> {
    const CONTAINERS: &str = "container!=\"\", container!=\"POD\"";
    let by = "by (namespace, pod, container)";
    [
        (
            "container_cpu_usage_cores".to_string(),
            format!("sum by (namespace, pod, container, node) (rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[5m]))"),
        ),
        (
            "container_memory_working_set_bytes".to_string(),
            format!("sum by (namespace, pod, container, node) (container_memory_working_set_bytes{{{CONTAINERS}}})"),
        ),
        (
            "kube_pod_container_resource_requests".to_string(),
            "max by (namespace, pod, container, resource) (kube_pod_container_resource_requests{resource=~\"cpu|memory\"})".to_string(),
        ),
        (
            "kube_pod_container_resource_limits".to_string(),
            "max by (namespace, pod, container, resource) (kube_pod_container_resource_limits{resource=~\"cpu|memory\"})".to_string(),
        ),
        ("kube_pod_container_status_restarts_total".to_string(), format!("max {by} (kube_pod_container_status_restarts_total)")),
        (
            "kube_pod_container_status_last_terminated_reason".to_string(),
            format!("max {by} (kube_pod_container_status_last_terminated_reason{{reason=\"OOMKilled\"}})"),
        ),
        (
            "container_cpu_cfs_throttled_ratio".to_string(),
            format!(
                "sum {by} (rate(container_cpu_cfs_throttled_periods_total{{{CONTAINERS}}}[5m])) / \
                 sum {by} (rate(container_cpu_cfs_periods_total{{{CONTAINERS}}}[5m]))"
            ),
        ),
    ]
    .into_iter()
    .chain(kube_queries())
    .chain(covariate_queries())
    .collect()
}

/// kube-state-metrics' objects: where a plan goes and what scales it.
fn kube_queries() -> [(String, String); 8] {
    [
        // Owners: which Deployment, StatefulSet, DaemonSet, CronJob or Job a pod's patch goes to.
        ("kube_pod_owner".to_string(), "max by (namespace, pod, owner_kind, owner_name) (kube_pod_owner)".to_string()),
        (
            "kube_replicaset_owner".to_string(),
            "max by (namespace, replicaset, owner_kind, owner_name) (kube_replicaset_owner)".to_string(),
        ),
        ("kube_job_owner".to_string(), "max by (namespace, job_name, owner_kind, owner_name) (kube_job_owner)".to_string()),
        // HPAs (what they scale, on which target, with how many replicas) and quotas.
        (
            "kube_horizontalpodautoscaler_info".to_string(),
            "max by (namespace, horizontalpodautoscaler, scaletargetref_kind, scaletargetref_name) (kube_horizontalpodautoscaler_info)".to_string(),
        ),
        (
            "kube_horizontalpodautoscaler_spec_target_metric".to_string(),
            "max by (namespace, horizontalpodautoscaler, metric_name, metric_target_type) (kube_horizontalpodautoscaler_spec_target_metric)".to_string(),
        ),
        (
            "kube_horizontalpodautoscaler_status_current_replicas".to_string(),
            "max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas)".to_string(),
        ),
        (
            "kube_horizontalpodautoscaler_status_desired_replicas".to_string(),
            "max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas)".to_string(),
        ),
        ("kube_resourcequota".to_string(), "max by (namespace, resourcequota, resource, type) (kube_resourcequota)".to_string()),
    ]
}

/// cAdvisor's disk counters per container and network counters per pod (summed over devices
/// and interfaces), for `clean.resample`'s `inputs:`: a rate input turns them into bytes per
/// second, counting resets.
fn covariate_queries() -> [(String, String); 4] {
    const CONTAINERS: &str = "container!=\"\", container!=\"POD\"";
    let by = "by (namespace, pod, container)";
    [
        (
            "container_fs_reads_bytes_total".to_string(),
            format!("sum {by} (container_fs_reads_bytes_total{{{CONTAINERS}}})"),
        ),
        (
            "container_fs_writes_bytes_total".to_string(),
            format!("sum {by} (container_fs_writes_bytes_total{{{CONTAINERS}}})"),
        ),
        (
            "container_network_receive_bytes_total".to_string(),
            "sum by (namespace, pod) (container_network_receive_bytes_total)".to_string(),
        ),
        (
            "container_network_transmit_bytes_total".to_string(),
            "sum by (namespace, pod) (container_network_transmit_bytes_total)".to_string(),
        ),
    ]
}

fn default_end() -> String {
    "now".into()
}
fn default_step() -> applearner_pipeline::Duration {
    "60s".parse().expect("a valid default")
}
fn default_concurrency() -> usize {
    4
}
fn default_retries() -> u32 {
    5
}
fn default_timeout() -> applearner_pipeline::Duration {
    "2m".parse().expect("a valid default")
}

/// RFC 3339, Unix seconds, `now` or `-<duration>` (before `now`), in Unix milliseconds.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Option<i64> {
    let text = text.trim();
    if text == "now" {
        return Some(now.timestamp_millis());
    }
    if let Some(ago) = text.strip_prefix('-') {
        return parse_duration(ago).map(|d| now.timestamp_millis() - d);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Some((seconds * 1000.0).round() as i64);
    }
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

/// A resolved pull: absolute times, checked settings.
#[derive(Debug, Clone)]
pub struct Pull {
    pub params: LiveParams,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub timeout: Duration,
}

/// One `query_range` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub metric: String,
    pub query: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Pull {
    /// Requests covering [start, end] on the step grid, none over the points limit.
    pub fn requests(&self) -> Vec<Request> {
        let span = self.step_ms * (MAX_POINTS_PER_REQUEST - 1);
        let mut out = Vec::new();
        for (metric, query) in &self.params.queries {
            let mut start = self.start_ms;
            while start <= self.end_ms {
                let end = (start + span).min(self.end_ms);
                out.push(Request { metric: metric.clone(), query: query.clone(), start_ms: start, end_ms: end });
                start = end + self.step_ms;
            }
        }
        out
    }

    fn client(&self) -> Result<reqwest::Client, IngestError> {
        let url = &self.params.url;
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("applearner/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.params.ca_file {
            let pem = std::fs::read(path).map_err(|e| IngestError::Io { origin: path.clone(), error: e })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| IngestError::Http {
                url: url.clone(),
                message: format!("CA file `{path}` is not PEM: {e}"),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if self.params.insecure_skip_tls_verify {
            tracing::warn!(url, "TLS certificate verification is off (insecure_skip_tls_verify)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder.build().map_err(|e| IngestError::Http { url: url.clone(), message: e.to_string() })
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, IngestError> {
        let p = &self.params;
        let env = |name: &str| {
            std::env::var(name).map_err(|_| IngestError::Http {
                url: p.url.clone(),
                message: format!("environment variable `{name}` (named in the config) is not set"),
            })
        };
        let mut request = request;
        if let Some(name) = &p.bearer_token_env {
            request = request.bearer_auth(env(name)?.trim());
        }
        if let Some(path) = &p.bearer_token_file {
            let token =
                std::fs::read_to_string(path).map_err(|e| IngestError::Io { origin: path.clone(), error: e })?;
            request = request.bearer_auth(token.trim());
        }
        if let Some(user) = &p.basic_auth_user {
            let password = p.basic_auth_password_env.as_deref().map(env).transpose()?;
            request = request.basic_auth(user, password);
        }
        Ok(request)
    }

    /// Runs every request (at most `concurrency` at once), in request order.
    pub async fn fetch_all(
        &self,
        cancelled: &(dyn Fn() -> bool + Sync),
        on_done: &(dyn Fn() + Sync),
    ) -> Result<Vec<Parsed>, IngestError> {
        let client = self.client()?;
        let requests = self.requests();
        let results: Vec<Result<Parsed, IngestError>> = futures::stream::iter(requests.iter())
            .map(|r| {
                let client = &client;
                async move {
                    if cancelled() {
                        return Err(IngestError::Cancelled);
                    }
                    let parsed = self.fetch(client, r).await;
                    on_done();
                    parsed
                }
            })
            .buffered(self.params.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn fetch(&self, client: &reqwest::Client, r: &Request) -> Result<Parsed, IngestError> {
        let endpoint = format!("{}/api/v1/query_range", self.params.url.trim_end_matches('/'));
        let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        let form = [
            ("query", r.query.clone()),
            ("start", seconds(r.start_ms)),
            ("end", seconds(r.end_ms)),
            ("step", seconds(self.step_ms)),
        ];
        let what = format!("{endpoint} query `{}` from {} to {}", r.query, iso(r.start_ms), iso(r.end_ms));
        let attempts = AtomicU32::new(0);
        // 200 ms, doubling, at most 10 s between attempts; only failures a retry can mend.
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.params.retries as usize);
        let once = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(client, &endpoint, &form, &what, r).await
        };
        let retried = once
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|failure| matches!(failure, Failure::Transient(_)))
            .notify(|failure, wait| tracing::warn!(?wait, "{what}: {failure}; retrying"))
            .await;
        retried.map_err(|failure| match failure {
            Failure::Refused(e) => e,
            Failure::Transient(last) => IngestError::Http {
                url: what.clone(),
                message: format!("gave up after {} attempts; last error: {last}", attempts.load(Ordering::Relaxed)),
            },
        })
    }

    /// One request: the parsed answer, a refusal no retry can help, or a failure to retry.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        form: &[(&str, String)],
        what: &str,
        r: &Request,
    ) -> Result<Parsed, Failure> {
        let request = self.authorize(client.post(endpoint).form(form)).map_err(Failure::Refused)?;
        let response = request.send().await.map_err(|e| Failure::Transient(error_chain(&e)))?;
        let status = response.status();
        let body = response.bytes().await;
        match (status.as_u16(), body) {
            (200, Ok(body)) => {
                let mut parsed = answer::parse(what, &body, Some(&r.metric)).map_err(Failure::Refused)?;
                // Each query's series are stored under the query's name.
                for s in &mut parsed.series {
                    s.metric = r.metric.clone();
                }
                Ok(parsed)
            }
            (400..=499, Ok(body)) if status.as_u16() != 429 && status.as_u16() != 408 => {
                // The server refused the query: no retry can help.
                Err(Failure::Refused(match answer::parse(what, &body, None) {
                    Err(e @ IngestError::Prometheus { .. }) => e,
                    _ => IngestError::Http { url: what.to_string(), message: format!("HTTP {status}") },
                }))
            }
            (_, Ok(body)) => Err(Failure::Transient(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
            (_, Err(e)) => Err(Failure::Transient(format!("HTTP {status}, then reading the body failed: {e}"))),
        }
    }
}

/// Why one attempt failed: the server refused the query (or its answer is bad), or
/// something a later attempt may not meet (a 5xx, 429 or 408, a timeout, a lost connection).
#[derive(Debug)]
enum Failure {
    Refused(IngestError),
    Transient(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(e) => write!(f, "{e}"),
            Failure::Transient(message) => f.write_str(message),
        }
    }
}

/// An error with its causes: reqwest's own message ("error sending request") says little,
/// the cause (refused connection, unknown certificate issuer, timeout) says what to fix.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("60s"), Some(60_000));
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000));
        assert_eq!(parse_duration("300"), Some(300_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("0s"), None);
        let now = DateTime::parse_from_rfc3339("2024-05-08T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("-1d", now), Some(now.timestamp_millis() - 86_400_000));
        assert_eq!(parse_time("2024-05-01T00:00:00Z", now), Some(1_714_521_600_000));
        assert_eq!(parse_time("1714521600", now), Some(1_714_521_600_000));
        assert_eq!(parse_time("yesterday", now), None);
    }

    #[test]
    fn ranges_are_split_under_the_points_limit_without_overlap() {
        let params: LiveParams = serde_json::from_value(serde_json::json!({
            "url": "http://x", "start": "0", "queries": {"m": "up"}
        }))
        .unwrap();
        let pull =
            Pull { params, start_ms: 0, end_ms: 25_000 * 60_000, step_ms: 60_000, timeout: Duration::from_secs(1) };
        let requests = pull.requests();
        assert_eq!(requests.len(), 3);
        let mut expected_start = 0;
        for r in &requests {
            assert_eq!(r.start_ms, expected_start);
            assert!((r.end_ms - r.start_ms) / 60_000 < MAX_POINTS_PER_REQUEST);
            expected_start = r.end_ms + 60_000;
        }
        assert_eq!(requests[2].end_ms, 25_000 * 60_000);
    }
}
