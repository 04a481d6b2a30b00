"""What an operator sees of a real host: /metrics scraped and parsed with prometheus_client's own parser,
health that reports a stalled generate path, and ``ps --watch``."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelhost.client import Client
from modelhost.client.protocol import wire
from modelhost.client.protocol import errors as E
from tests.conftest import ROOT, start_host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_host():
    port = _free_port()
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25
        client_liveness_s = 2
        metrics = "127.0.0.1:{port}"
        stall_after_s = 1
        [models.synth]
        backend = "synth"
        width = 16
        [models.stuck]
        backend = "tests.support.stuck_backend:StuckBackend"
        width = 16
        stuck_s = 4
    """)
    yield h, port
    h.stop()


def _scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(family, name: str | None = None) -> list:
    return [s for s in family.samples if name is None or s.name == name]


def test_metrics_show_requests_timings_memory_devices_and_clients(metrics_host) -> None:
    h, port = metrics_host
    with Client(h.address) as c:
        for seed in (1, 2, 3):
            c.generate("synth", params={"duration_s": 0.1, "seed": seed})
        with pytest.raises(E.BadParamsError):
            c.generate("synth", params={"duration_s": -1.0})
        c.unload("synth")
        c.generate("synth", params={"duration_s": 0.1})
        families = _scrape(port)
    requests = {(s.labels["model"], s.labels["kind"], s.labels["outcome"]): s.value
                for s in _samples(families["modelhost_requests"], "modelhost_requests_total")}
    assert requests[("synth", "generate", "result")] == 4 and requests[("synth", "generate", "bad_params")] == 1
    assert requests[("synth", "unload", "result")] == 1
    durations = _samples(families["modelhost_request_duration_seconds"], "modelhost_request_duration_seconds_count")
    assert {(s.labels["model"], s.labels["kind"], s.labels["outcome"]): s.value
            for s in durations}[("synth", "generate", "result")] == 4
    for name in ("modelhost_queue_seconds", "modelhost_first_progress_seconds", "modelhost_load_seconds"):
        counts = {s.labels["model"]: s.value for s in _samples(families[name], f"{name}_count")}
        assert counts["synth"] >= 2, name  # two loads: before and after the unload
    evictions = {(s.labels["model"], s.labels["reason"]): s.value
                 for s in _samples(families["modelhost_evictions"], "modelhost_evictions_total")}
    assert evictions[("synth", "requested")] == 1
    model_bytes = {s.labels["model"]: s for s in _samples(families["modelhost_model_bytes"])}
    assert model_bytes["synth"].value > 0 and model_bytes["synth"].labels["device"] == "cpu"
    assert model_bytes["synth"].labels["tier"] == "cpu" and model_bytes["stuck"].value == 0
    devices = {s.labels["device"]: s.value for s in _samples(families["modelhost_device_budget_bytes"])}
    assert devices["cpu"] > 0
    used = {s.labels["device"]: s.value for s in _samples(families["modelhost_device_used_by_models_bytes"])}
    assert used["cpu"] == model_bytes["synth"].value
    for name in ("modelhost_device_total_bytes", "modelhost_device_free_bytes", "modelhost_device_used_by_others_bytes",
                 "modelhost_model_queued_requests", "modelhost_model_running_requests"):
        assert _samples(families[name]), name
    assert _samples(families["modelhost_connected_clients"])[0].value >= 1
    info = _samples(families["modelhost_build_info"])[0]
    assert info.labels["version"] and info.labels["protocol"] == str(wire.PROTOCOL_VERSION)


def test_health_reports_a_stalled_generation_and_exits_non_zero(metrics_host) -> None:
    h, _ = metrics_host
    with Client(h.address) as c:
        c.load("stuck")  # its runner starts now, not inside the window the test watches
        job = c.submit("stuck", params={"duration_s": 0.1})
        waiter = threading.Thread(target=job.result)
        waiter.start()
        time.sleep(2.5)
        health = c.health()
        assert not health["ok"] and "no progress" in health["stalled"]["stuck"]
        cli = subprocess.run([sys.executable, "-m", "modelhost.host", "health", "--address", h.address],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1 and "STALLED stuck" in cli.stdout
        waiter.join(30)
        health = c.health()
    assert health["ok"] and health["stalled"] == {} and "stuck" in health["last_ok"]


def test_ps_watch_redraws_models_and_memory_bars(metrics_host) -> None:
    h, _ = metrics_host
    with Client(h.address) as c:
        c.load("synth")
    out = subprocess.run([sys.executable, "-m", "modelhost.host", "ps", "--address", h.address, "--watch", "0.2",
                          "--count", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    frames = out.stdout.split("\x1b[H\x1b[2J")[1:]
    assert len(frames) == 2
    assert "cpu      [A" in frames[-1] and "A=synth" in frames[-1] and "REQ/S" in frames[-1]


def test_metrics_off_loopback_need_an_explicit_opt_in(tmp_path) -> None:
    catalog = tmp_path / "c.toml"
    catalog.write_text('[host]\nmetrics = "0.0.0.0:9464"\n[models.synth]\nbackend = "synth"\n')
    out = subprocess.run([sys.executable, "-m", "modelhost.host", "serve", "--config", str(catalog), "--address",
                          f"ipc://{tmp_path}/h.sock"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "metrics_public" in out.stderr and len(out.stderr.strip().splitlines()) == 1
