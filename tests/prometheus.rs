//! Live ingest against a real Prometheus (Debian's `prometheus` and `promtool`, installed by
//! `.ci/run`): a slice of the shipped data is backfilled with promtool, served over the HTTP
//! API, pulled, and compared with the ingest of the saved answers of the same slice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ingest::{data, ingest, samples, temp_store};

const CPU: &str = "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate";
const MEMORY: &str = "container_memory_working_set_bytes";
const CHUNK: &str = "20220823T120000Z_20220824T000000Z.json.gz";
const START: &str = "2022-08-23T12:00:00Z";
const END: &str = "2022-08-24T00:00:00Z";

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{name}` is needed: install Debian's prometheus package (`apt-get install prometheus`), as .ci/run does"
    );
    Command::new(name)
}

fn free_port() -> u16 {
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
    let server = serve_with(chunk, tempfile::tempdir().unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(server.port, "/-/ready").is_none_or(|status| status != 200) {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// As `serve`, in `dir`, with an optional web config (TLS, basic auth); returns once the
/// port accepts connections.
fn serve_with(chunk: &str, dir: tempfile::TempDir, web_config: Option<&Path>) -> Prometheus {
    let om = dir.path().join("slice.om");
    std::fs::write(&om, openmetrics(chunk)).unwrap();
    let tsdb = dir.path().join("tsdb");
    let out =
        tool("promtool").args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&om).arg(&tsdb).output().unwrap();
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let child = tool("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        // The data was scraped every minute; a longer lookback would repeat samples.
        .arg("--query.lookback-delta=1m")
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
    Prometheus { child, port, _dir: dir }
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
    let d = dir.path();
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
    let server = serve_with(CHUNK, dir, Some(&web));
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("tls.yaml");
    std::fs::write(
        &config,
        format!(
            "name: tls\nstore: {}\nstages:\n  ingest:\n    uses: ingest.prometheus\n    with:\n      prometheus:\n        url: https://127.0.0.1:{}\n        ca_file: {}\n        basic_auth_user: applearner\n        basic_auth_password_env: APPLEARNER_TEST_PROM_PASSWORD\n        queries: {{{MEMORY}: {MEMORY}}}\n        start: '{START}'\n        end: '{END}'\n        step: 60s\n        retries: 1\n",
            work.path().join("store").display(),
            server.port,
            server._dir.path().join("ca.crt").display()
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
