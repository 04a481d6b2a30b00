"""A smoke run of benchmarks/http_api.py (small payloads, few repetitions) so it cannot rot; figures in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.launch import ROOT


def test_http_benchmark_smoke(tmp_path):
    out = tmp_path / "http.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.http_api", "--reps", "4", "--payloads", "small,10s", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(line.startswith("machine: ") for line in done.stdout.splitlines())
    report = json.loads(out.read_text())
    for payload in ("small", "10s"):
        row = report["latency"][payload]
        assert row["zmq_p50_ms"] > 0 and row["http_wav_p50_ms"] > 0 and row["http_mp3_p50_ms"] > 0
    assert report["throughput"]["zmq_rps"] > 0 and report["throughput"]["http_wav_rps"] > 0
    assert report["http_process_rss_bytes"] > 0
