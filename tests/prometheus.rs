//! Live ingest against a real Prometheus (Debian's `prometheus` and `promtool`, installed by
//! `.ci/run`): a slice of the shipped data is backfilled with promtool, served over the HTTP
//! API, pulled, and compared with the ingest of the saved answers of the same slice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ingest::{data, ingest, samples, temp_store};

pub(crate) const CPU: &str = "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate";
pub(crate) const MEMORY: &str = "container_memory_working_set_bytes";
const CHUNK: &str = "20220823T120000Z_20220824T000000Z.json.gz";
const START: &str = "2022-08-23T12:00:00Z";
const END: &str = "2022-08-24T00:00:00Z";

pub(crate) struct Prometheus {
    child: Child,
    pub port: u16,
    dir: Option<tempfile::TempDir>,
}

impl Prometheus {
    /// Stops the server and hands back its folder, to add blocks and start it again.
    pub(crate) fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        self.dir.take().expect("held until stopped")
    }

    fn halt(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.halt();
    }
}

pub(crate) fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{name}` is needed: install Debian's prometheus package (`apt-get install prometheus`), as .ci/run does"
    );
    Command::new(name)
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The saved answers of one chunk as OpenMetrics, the format promtool backfills.
fn openmetrics(chunk: &str) -> String {
    let mut text = String::new();
    for (dir, metric) in [("cpu_cores", CPU), ("memory_bytes", MEMORY)] {
        let gz = std::fs::read(data(&format!("query_range/{dir}/{chunk}"))).unwrap();
        let mut json = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&json).unwrap();
        text.push_str(&format!("# TYPE {metric} gauge\n"));
        for series in answer["data"]["result"].as_array().unwrap() {
            let labels: Vec<String> = series["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap()))
                .collect();
            for point in series["values"].as_array().unwrap() {
                let (t, v) = (point[0].as_i64().unwrap(), point[1].as_str().unwrap());
                text.push_str(&format!("{metric}{{{}}} {v} {t}\n", labels.join(",")));
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

/// Backfills `chunk` into a fresh TSDB and serves it on a free loopback port.
fn serve(chunk: &str) -> Prometheus {
    serve_ready(&openmetrics(chunk), "1m")
}

/// Backfills OpenMetrics `text` and serves it, answering once the server is ready.
pub(crate) fn serve_ready(text: &str, lookback: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    backfill(text, dir.path());
    let server = start(dir, free_port(), None, lookback);
    wait_ready(server.port);
    server
}

pub(crate) fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/-/ready").is_none_or(|status| status != 200) {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// OpenMetrics `text` backfilled into a TSDB in `dir` and served with an optional web config
/// (TLS, basic auth) and the lookback of data scraped that often; returns once the port
/// accepts connections.
fn serve_with(text: &str, dir: tempfile::TempDir, web_config: Option<&Path>, lookback: &str) -> Prometheus {
    backfill(text, dir.path());
    start(dir, free_port(), web_config, lookback)
}

/// Adds OpenMetrics `text` to the TSDB in `dir` (`dir/tsdb`) as promtool blocks: what a
/// server started on it afterwards serves beside what it held.
pub(crate) fn backfill(text: &str, dir: &Path) {
    let om = dir.join("slice.om");
    std::fs::write(&om, text).unwrap();
    let tsdb = dir.join("tsdb");
    let out =
        tool("promtool").args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&om).arg(&tsdb).output().unwrap();
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
}

/// Serves the TSDB in `dir` on `port`; returns once the port accepts connections.
pub(crate) fn start(dir: tempfile::TempDir, port: u16, web_config: Option<&Path>, lookback: &str) -> Prometheus {
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let child = tool("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        // As often as the data was scraped: a longer lookback would repeat samples.
        .arg(format!("--query.lookback-delta={lookback}"))
        .args(web_config.map(|w| format!("--web.config.file={}", w.display())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "prometheus did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    Prometheus { child, port, dir: Some(dir) }
}

/// The body of a GET answered by the server on `port`.
pub(crate) fn http_body(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn http_get(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn live(port: u16, queries: &str, extra: &str) -> String {
    format!(
        "{{prometheus: {{url: 'http://127.0.0.1:{port}', queries: {queries}, start: '{START}', end: '{END}', step: 60s{extra}}}}}"
    )
}

#[test]
#[ignore = "full tier: needs Prometheus and promtool; .ci/run installs it and runs it"]
fn a_live_pull_equals_the_saved_answers_of_the_same_slice() {
    let server = serve(CHUNK);
    let (_dir, store) = temp_store();
    let saved = ingest(
        &store,
        &format!(
            "{{paths: ['{}', '{}']}}",
            data(&format!("query_range/cpu_cores/{CHUNK}")).display(),
            data(&format!("query_range/memory_bytes/{CHUNK}")).display()
        ),
    )
    .unwrap();
    let pulled = ingest(&store, &live(server.port, &format!("{{'{CPU}': '{CPU}', {MEMORY}: {MEMORY}}}"), "")).unwrap();
    let summary = &pulled.record("ingest").unwrap().summary;
    // data/README.md: this chunk holds 10 series of 721 points per metric.
    assert_eq!(summary["requests"], 2);
    assert_eq!(summary["series"], 20);
    assert_eq!(summary["points"], 2 * 10 * 721);
    let (a, b) = (samples(&store, &saved), samples(&store, &pulled));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    // Equal tables, equal bytes.
    let digest = |r: &applearner_pipeline::RunReport, o: &str| r.record("ingest").unwrap().outputs[o].digest.clone();
    assert_eq!(digest(&saved, "samples"), digest(&pulled, "samples"));
    assert_eq!(digest(&saved, "series"), digest(&pulled, "series"));

    // A query the server refuses fails at once with Prometheus' own words.
    let err = ingest(&store, &live(server.port, "{broken: 'rate(up['}", ", retries: 0")).unwrap_err().to_string();
    assert!(err.contains("Prometheus answered `bad_data`") && err.contains("query `rate(up[`"), "{err}");
}

/// Forwards `allow` connections to `upstream`, then stops listening: to the client the
/// server went away in the middle of the pull.
fn stopping_proxy(upstream: u16, allow: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..allow {
            let (client, _) = listener.accept().unwrap();
            relay(client, upstream);
        }
    });
    port
}

/// Relays one request (made `Connection: close`) and its response.
fn relay(mut client: TcpStream, upstream: u16) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    write!(server, "{head}Connection: close\r\n\r\n").unwrap();
    server.write_all(&body).unwrap();
    std::io::copy(&mut server, &mut client).unwrap();
}

#[test]
#[ignore = "full tier: needs Prometheus and promtool; .ci/run installs it and runs it"]
fn a_server_that_stops_mid_pull_fails_the_stage_cleanly() {
    let server = serve(CHUNK);
    let (_dir, store) = temp_store();
    // Four queries, one at a time; the server goes away after the second.
    let port = stopping_proxy(server.port, 2);
    let queries = format!("{{a: {MEMORY}, b: {MEMORY}, c: {MEMORY}, d: {MEMORY}}}");
    let err = ingest(&store, &live(port, &queries, ", concurrency: 1, retries: 2")).unwrap_err().to_string();
    assert!(err.contains(&format!("http://127.0.0.1:{port}/api/v1/query_range query `{MEMORY}`")), "{err}");
    assert!(err.contains(&format!("from {START} to {END}")), "{err}");
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    let committed: Vec<String> = store.list("").unwrap().into_iter().filter(|p| p.contains("/ingest/")).collect();
    assert!(committed.is_empty(), "{committed:?}");
    assert_eq!(store.list("_cache").unwrap(), Vec::<String>::new(), "nothing cached, no lease left");
}

/// Answers every connection with `response` after `delay`, without reading further.
fn fixed_proxy(response: &'static str, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let mut client = client.unwrap();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(client.try_clone().unwrap()).read_line(&mut line);
                std::thread::sleep(delay);
                let _ = client.write_all(response.as_bytes());
            });
        }
    });
    port
}

#[test]
#[ignore = "full tier: needs a local HTTP server; .ci/run installs it and runs it"]
fn a_server_answering_errors_or_too_slowly_is_retried_then_named() {
    let (_dir, store) = temp_store();
    let queries = format!("{{m: {MEMORY}}}");
    let unavailable = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let port = fixed_proxy(unavailable, Duration::ZERO);
    let err = ingest(&store, &live(port, &queries, ", retries: 2")).unwrap_err().to_string();
    assert!(err.contains(&format!("query `{MEMORY}`")) && err.contains(&format!("from {START} to {END}")), "{err}");
    assert!(err.contains("gave up after 3 attempts") && err.contains("503"), "{err}");
    // Slower than the timeout: each attempt times out.
    let port = fixed_proxy(unavailable, Duration::from_secs(5));
    let err = ingest(&store, &live(port, &queries, ", retries: 1, timeout: 1s")).unwrap_err().to_string();
    assert!(err.contains("gave up after 2 attempts") && err.contains(&format!("query `{MEMORY}`")), "{err}");
    assert!(err.to_lowercase().contains("timed out") || err.to_lowercase().contains("timeout"), "{err}");
    assert_eq!(store.list("").unwrap().iter().filter(|p| p.contains("/ingest/")).count(), 0, "something was committed");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "full tier: needs Prometheus; .ci/run installs it and runs it"]
fn tls_with_a_private_ca_and_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    // A private CA and a server certificate for 127.0.0.1, as a cluster's service CA would give.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=applearner-test-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    // bcrypt of "correct horse" (cost 4): Prometheus stores only the hash.
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\nbasic_auth_users:\n  applearner: '$2b$04$gpIHALj7bkz6eAAegDDMbOXUAJ8bTb.dR6JR5qSYi1NjaIB5y6sb2'\n",
            d.display()
        ),
    )
    .unwrap();
    let server = serve_with(&openmetrics(CHUNK), dir, Some(&web), "1m");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("tls.yaml");
    std::fs::write(
        &config,
        format!(
            "name: tls\nstore: {}\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with:\n      prometheus:\n        url: https://127.0.0.1:{}\n        ca_file: {}\n        basic_auth_user: applearner\n        basic_auth_password_env: APPLEARNER_TEST_PROM_PASSWORD\n        queries: {{{MEMORY}: {MEMORY}}}\n        start: '{START}'\n        end: '{END}'\n        step: 60s\n        retries: 1\n",
            work.path().join("store").display(),
            server.port,
            d.join("ca.crt").display()
        ),
    )
    .unwrap();
    let run = |password: &str, sets: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_applearner"))
            // --force: the cache cannot know the password changed, the test wants the pull.
            .args(["run", "--force"])
            .arg(&config)
            .args(sets.iter().flat_map(|s| ["--set", s]))
            .env("APPLEARNER_TEST_PROM_PASSWORD", password)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(password), "the password was printed: {text}");
        (out.status.code(), text)
    };
    let (code, text) = run("correct horse", &[]);
    assert_eq!(code, Some(0), "{text}");
    // Nothing the run wrote holds the password: tables, records, the lock, the manifest.
    let written = crate::support::files_below(&work.path().join("store"));
    assert!(written.len() > 4, "{written:?}");
    for f in &written {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.windows(b"correct horse".len()).any(|w| w == b"correct horse"), "{} holds it", f.display());
    }
    let lock = written.iter().find(|f| f.ends_with("config.lock.yaml")).unwrap();
    assert!(std::fs::read_to_string(lock).unwrap().contains("basic_auth_password_env: APPLEARNER_TEST_PROM_PASSWORD"));
    let (code, text) = run("wrong horse", &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
    // TLS is verified unless turned off explicitly, which warns.
    let (code, text) = run("correct horse", &["ingest.prometheus.ca_file=null"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let (code, text) =
        run("correct horse", &["ingest.prometheus.ca_file=null", "ingest.prometheus.insecure_skip_tls_verify=true"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("WARN") && text.to_lowercase().contains("verif"), "{text}");
}

/// The shipped bitbrains slice (data/bitbrains-rnd: 4 VMs, 2 days at 5 minutes).
const SLICE: &str = "20130708T000000Z_20130710T000000Z.json.gz";
pub(crate) const SLICE_START: i64 = 1_373_241_600;
pub(crate) const SLICE_END: i64 = 1_373_414_400;
pub(crate) const BITBRAINS: [&str; 6] =
    ["cpu_cores", "memory_bytes", "cpu_requests", "cpu_limits", "memory_requests", "memory_limits"];

pub(crate) fn bitbrains(folder: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bitbrains-rnd/query_range").join(folder).join(SLICE)
}

/// A saved answer's series: (labels without `__name__`, points).
pub(crate) fn answer_series(folder: &str) -> Vec<(Vec<(String, String)>, Vec<(i64, String)>)> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(&std::fs::read(bitbrains(folder)).unwrap()[..]).read_to_string(&mut json).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&json).unwrap();
    let series = answer["data"]["result"].as_array().unwrap().iter().map(|s| {
        let labels = s["metric"].as_object().unwrap().iter().filter(|(k, _)| *k != "__name__");
        let points = s["values"].as_array().unwrap().iter();
        (
            labels.map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect(),
            points.map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string())).collect(),
        )
    });
    series.collect()
}

/// One OpenMetrics family: `series` as (labels, points (seconds, value)).
pub(crate) fn family(out: &mut String, name: &str, series: &[(Vec<(String, String)>, Vec<(i64, String)>)]) {
    out.push_str(&format!("# TYPE {name} gauge\n"));
    for (labels, points) in series {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        for (t, v) in points {
            out.push_str(&format!("{name}{{{}}} {v} {t}\n", labels.join(",")));
        }
    }
}

/// The slice as a cluster's raw series, which the default live queries read: the cAdvisor
/// CPU counter each minute (over each 5 minutes it grows by the saved cores × 300 s, so its
/// 5-minute rate is the saved value), the working set and kube-state-metrics' requests and
/// limits as saved. The data has no pain signals, so these are generated (the only
/// generated series here): vm-0001 restarts at +6 h (OOM-killed) and at +30 h (another
/// reason), vm-0018 is throttled in 25 % of its CFS periods.
pub(crate) fn raw_openmetrics() -> String {
    let mut out = String::new();
    let cpu: Vec<_> = answer_series("cpu_cores")
        .into_iter()
        .map(|(labels, points)| {
            let mut counter = 0.0;
            let minutes = points.iter().flat_map(|(t, cores)| {
                let cores: f64 = cores.parse().unwrap();
                (1..=5).map(move |k| (t - 300 + 60 * k, cores * 60.0))
            });
            let values = minutes.map(|(t, add)| {
                counter += add;
                (t, format!("{counter}"))
            });
            (labels, values.collect())
        })
        .collect();
    family(&mut out, "container_cpu_usage_seconds_total", &cpu);
    family(&mut out, "container_memory_working_set_bytes", &answer_series("memory_bytes"));
    let allocation: Vec<_> = ["cpu_requests", "memory_requests"].iter().flat_map(|f| answer_series(f)).collect();
    family(&mut out, "kube_pod_container_resource_requests", &allocation);
    let limits: Vec<_> = ["cpu_limits", "memory_limits"].iter().flat_map(|f| answer_series(f)).collect();
    family(&mut out, "kube_pod_container_resource_limits", &limits);
    let pod = |p: &str, extra: &[(&str, &str)]| {
        let mut l = vec![("container", "vm"), ("namespace", "bitbrains-rnd"), ("pod", p)];
        l.extend_from_slice(extra);
        l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
    };
    let every = |step: i64, f: &dyn Fn(i64) -> f64| -> Vec<(i64, String)> {
        (SLICE_START..=SLICE_END).step_by(step as usize).map(|t| (t, format!("{}", f(t - SLICE_START)))).collect()
    };
    let (oom, other) = (6 * 3600, 30 * 3600);
    let restarts = every(300, &|s| f64::from(u8::from(s >= oom) + u8::from(s >= other)));
    family(&mut out, "kube_pod_container_status_restarts_total", &[(pod("vm-0001", &[]), restarts)]);
    let reason = |r: &str, on: std::ops::Range<i64>| {
        (pod("vm-0001", &[("reason", r)]), every(300, &|s| f64::from(u8::from(on.contains(&s)))))
    };
    family(
        &mut out,
        "kube_pod_container_status_last_terminated_reason",
        &[reason("OOMKilled", oom..other), reason("Error", other..i64::MAX)],
    );
    let periods = every(60, &|s| s as f64 * 10.0);
    let throttled = every(60, &|s| s as f64 * 2.5);
    family(&mut out, "container_cpu_cfs_periods_total", &[(pod("vm-0018", &[]), periods)]);
    family(&mut out, "container_cpu_cfs_throttled_periods_total", &[(pod("vm-0018", &[]), throttled)]);
    out.push_str("# EOF\n");
    out
}

/// ingest → clean of `ingest` (YAML flow mapping) on the slice's grid; the report and store.
fn ingest_and_clean(store: &applearner_pipeline::Store, ingest: &str) -> applearner_pipeline::RunReport {
    let yaml = format!(
        "name: live\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with: {ingest}\n  clean:\n    uses: clean.resample\n    with: {{step: 5m, max_gap: 15m, fill: ffill, min_points: 12}}\n"
    );
    crate::support::run_with(&crate::support::pipeline(&yaml, &[]), store, Default::default()).unwrap()
}

/// Rows of a table the clean stage wrote, as (key, name, ms, value): `resampled` per role,
/// `allocation` per signal.
fn clean_rows(
    store: &applearner_pipeline::Store,
    report: &applearner_pipeline::RunReport,
    table: &str,
) -> Vec<(String, String, i64, f64)> {
    use applearner_pipeline::columns::{floats, ints, strings};
    let path = &report.record("clean").unwrap().outputs[table].path;
    let mut out = Vec::new();
    for b in applearner_pipeline::context::read_parquet(path, store.get(path).unwrap()).unwrap() {
        let (key, time) = (strings(&b, table, "key").unwrap(), ints(&b, table, "timestamp").unwrap());
        let columns: Vec<(String, Vec<f64>)> = if table == "allocation" {
            let signal = strings(&b, table, "signal").unwrap();
            let value = floats(&b, table, "value").unwrap();
            out.extend((0..b.num_rows()).map(|i| (key[i].clone(), signal[i].clone(), time[i], value[i])));
            continue;
        } else {
            ["cpu", "memory"].map(|r| (r.to_string(), floats(&b, table, r).unwrap())).to_vec()
        };
        for (name, values) in columns {
            out.extend((0..b.num_rows()).map(|i| (key[i].clone(), name.clone(), time[i], values[i])));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    out
}

/// A cluster's usage, requests, limits, OOM kills and throttling pulled from a real Prometheus
/// with the default queries, cleaned, and checked against the saved answers of the same slice.
#[test]
#[ignore = "full tier: needs Prometheus and promtool; .ci/run installs it and runs it"]
fn default_queries_pull_usage_allocation_and_pain_that_match_the_saved_answers() {
    let server = serve_ready(&raw_openmetrics(), "5m");
    let (_dir, store) = temp_store();
    let paths: Vec<String> = BITBRAINS.iter().map(|f| format!("'{}'", bitbrains(f).display())).collect();
    let saved = ingest_and_clean(&store, &format!("{{paths: [{}]}}", paths.join(", ")));
    let live = ingest_and_clean(
        &store,
        &format!(
            "{{prometheus: {{url: 'http://127.0.0.1:{}', start: '{SLICE_START}', end: '{SLICE_END}', step: 5m}}}}",
            server.port
        ),
    );
    // Nineteen default queries: usage, requests, limits, restarts, the OOM reason, throttling,
    // three owner links, four of the HPA, the quotas, and the disk and network counters.
    assert_eq!(live.record("ingest").unwrap().summary["requests"], 19);
    let (a, b) = (clean_rows(&store, &saved, "resampled"), clean_rows(&store, &live, "resampled"));
    assert_eq!(a.len(), 2 * 4 * 577);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1, x.2), (&y.0, &y.1, y.2));
        assert!((x.3 - y.3).abs() <= 1e-9 * x.3.abs().max(1e-3), "{x:?} vs {y:?}");
    }
    // Requests and limits as saved, written where they change: once per VM and line, and at
    // each of vm-0004's 2 and vm-0084's 49 memory changes (requests and limits alike).
    let lines = |r: Vec<(String, String, i64, f64)>| {
        r.into_iter().filter(|r| r.1.ends_with("request") || r.1.ends_with("limit")).collect::<Vec<_>>()
    };
    let (a, b) = (lines(clean_rows(&store, &saved, "allocation")), lines(clean_rows(&store, &live, "allocation")));
    assert_eq!(a.len(), 4 * 4 + 2 * (2 + 49));
    assert_eq!(a, b);
    let memory = |pod: &str| a.iter().filter(|r| r.0.contains(pod) && r.1 == "memory_request").count();
    assert_eq!((memory("vm-0004"), memory("vm-0084"), memory("vm-0001")), (3, 50, 1));
    // The generated pain: one OOM kill and two restarts of vm-0001, vm-0018 throttled 25 %.
    let pain = clean_rows(&store, &live, "allocation");
    let at = |signal: &str| {
        pain.iter()
            .filter(|r| r.1 == signal)
            .map(|r| (r.0.as_str(), (r.2 / 1000 - SLICE_START) / 3600, r.3))
            .collect::<Vec<_>>()
    };
    assert_eq!(at("oom_kills"), [("bitbrains-rnd/vm-0001/vm", 6, 1.0)]);
    assert_eq!(at("restarts"), [("bitbrains-rnd/vm-0001/vm", 6, 1.0), ("bitbrains-rnd/vm-0001/vm", 30, 1.0)]);
    let throttled = at("cpu_throttled");
    assert!(
        throttled.len() > 500
            && throttled.iter().all(|t| t.0 == "bitbrains-rnd/vm-0018/vm" && (t.2 - 0.25).abs() < 1e-9),
        "{throttled:?}"
    );
    assert_eq!(live.record("clean").unwrap().summary["allocation_series_without_usage"], 0);
}

/// The generated cluster (data/cluster, GENERATED) backfilled with promtool into a fresh
/// Prometheus and pulled with the default live queries gives the tables its saved answers
/// give: usage, allocation, owners, HPAs and quotas.
#[test]
#[ignore = "full tier: needs Prometheus, promtool and python3; .ci/run installs them and runs it"]
fn the_generated_cluster_pulled_live_equals_its_saved_answers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let om = Command::new("python3").arg(format!("{root}/data/cluster/generate.py")).output().unwrap();
    assert!(om.status.success(), "{}", String::from_utf8_lossy(&om.stderr));
    let server = serve_ready(&String::from_utf8(om.stdout).unwrap(), "5m");
    let (_dir, store) = temp_store();
    let saved = ingest_and_clean(&store, &format!("{{paths: ['{root}/data/cluster/query_range']}}"));
    let (start, end) = ("2026-11-02T00:00:00Z", "2026-11-05T23:55:00Z");
    let url = format!("http://127.0.0.1:{}", server.port);
    let live = ingest_and_clean(
        &store,
        &format!("{{prometheus: {{url: '{url}', start: '{start}', end: '{end}', step: 5m}}}}"),
    );
    let (a, b) = (clean_rows(&store, &saved, "resampled"), clean_rows(&store, &live, "resampled"));
    assert!(a.len() > 10_000 && a.len() == b.len(), "{} vs {}", a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1, x.2), (&y.0, &y.1, y.2));
        assert!((x.3 - y.3).abs() <= 1e-9 * x.3.abs().max(1e-3), "{x:?} vs {y:?}");
    }
    assert_eq!(clean_rows(&store, &saved, "allocation"), clean_rows(&store, &live, "allocation"));
    for table in ["workloads", "quotas"] {
        let digest = |r: &applearner_pipeline::RunReport| r.record("clean").unwrap().outputs[table].digest.clone();
        assert_eq!(digest(&saved), digest(&live), "{table}");
    }
    let summary = &live.record("clean").unwrap().summary;
    assert_eq!((summary["hpas"].as_u64(), summary["owner_series_without_usage"].as_u64()), (Some(1), Some(1)));
}
