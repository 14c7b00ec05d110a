"""Debian's Prometheus serving backfilled OpenMetrics on a free loopback port: what the
dataset makers (cluster/save.py, bitbrains-rnd/covariates.py) query for their answers."""
import os, socket, subprocess, time, urllib.request


def backfill_and_serve(openmetrics, tmp):
    """Backfills the OpenMetrics file with `promtool tsdb create-blocks-from openmetrics`
    into `tmp`/tsdb and serves it (5-minute lookback, no scraping) once ready. Returns the
    server (terminate it), its base URL and promtool's list of the blocks written."""
    tsdb = os.path.join(tmp, "tsdb")
    blocks = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", openmetrics, tsdb],
                            check=True, capture_output=True, text=True).stdout
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1h\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                               f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y",
                               "--query.lookback-delta=5m"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if urllib.request.urlopen(base + "/-/ready").status == 200:
                return server, base, blocks
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("prometheus did not become ready in 2 minutes")
