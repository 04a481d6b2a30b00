"""A smoke run of benchmarks/clients_mixed.py (4 clients x 20 mixed requests, one round) so it cannot rot; its figures
(64 clients, against v1) are in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.launch import ROOT


def test_clients_mixed_benchmark_smoke(tmp_path):
    out = tmp_path / "clients_mixed.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.clients_mixed", "--quick", "--layouts", "separate,inline",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(line.startswith("machine: ") for line in done.stdout.splitlines())
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"this/separate", "this/inline"}
    for name, row in report["summary"].items():
        run = report["runs"][name][0]
        assert run["requests"] == 4 * 20 and run["generate_results"] > 0  # every request answered (lost ones raise)
        assert row["requests_per_s"] > 0 and row["generate_p50_ms"] > 0
    assert report["runs"]["this/separate"][0]["cpu_s_per_1k"]["runners"] > 0  # its models ran in runner processes
    assert report["runs"]["this/inline"][0]["cpu_s_per_1k"]["runners"] == 0  # and here in the host's own
