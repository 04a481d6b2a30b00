"""The HTTP API's process with the host's life: refused starts (one line, exit 2), the drain (503 for new work,
in-flight requests answered), a crashed HTTP process started again on the same port, and no HTTP process
left behind when the host stops or is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, SLOW_MODEL, short_tmp, start_host
from tests.integration.test_http import free_port, wait_http

CATALOG = f"""
    [host]
    heartbeat_s = 0.25

    [models.synth]
    backend = "synth"
    width = 64

    [models.slow]
    {SLOW_MODEL}
"""


def serve(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    folder = short_tmp()
    (folder / "catalog.toml").write_text(CATALOG)
    return subprocess.run([sys.executable, "-m", "modelhost.host", "serve", "--config", str(folder / "catalog.toml"),
                           "--address", f"ipc://{folder}/host.sock", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, env, says", [
    (("--http", "0.0.0.0:18431"), {}, "reachable from other machines without a key"),
    (("--http", "nonsense"), {}, "must be HOST:PORT"),
    (("--register-with", "http://127.0.0.1:7778"), {}, "needs an address"),
    (("--http", "127.0.0.1:18431", "--register-with", "ftp://x"), {}, "register_with must be"),
    (("--http", "0.0.0.0:18431"), {"MODELHOST_API_KEY": "short"}, "shorter than 16 characters"),
])
def test_a_start_the_http_api_cannot_make_is_refused_in_one_line(args, env, says):
    done = serve(*args, env={"MODELHOST_API_KEY": "", **env})
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_port_in_use_is_refused_in_one_line_before_the_host_serves():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = serve("--http", f"127.0.0.1:{taken.getsockname()[1]}")
    assert done.returncode == 2, done.stderr
    assert "cannot serve the HTTP API" in done.stderr and "Traceback" not in done.stderr


def http_children(host_pid: int) -> list[int]:
    """The host's HTTP API process(es), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == host_pid and b"modelhost.host.http_api" in cmdline:
            out.append(int(entry.name))
    return out


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_drain_answers_in_flight_requests_refuses_new_ones_with_503_then_stops_the_http_process():
    port = free_port()
    host = start_host(CATALOG, args=("--http", f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        [child] = http_children(host.proc.pid)
        httpx.post(f"{url}/v1/audio/speech", timeout=60, json={"model": "slow", "input": "x", "duration_s": 0.1})  # loaded
        started = time.monotonic()  # calibrate: a generation that lasts about 3 s on this machine holds the drain open
        httpx.post(f"{url}/v1/audio/speech", timeout=60, json={"model": "slow", "input": "x", "duration_s": 0.5})
        duration_s = round(min(60.0, max(0.5, 0.5 * 3.0 / (time.monotonic() - started))), 1)
        replies: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: replies.append(httpx.post(f"{url}/v1/audio/speech", timeout=120, json={
            "model": "slow", "input": "finish me", "duration_s": duration_s, "response_format": "pcm"})))
        slow.start()
        while httpx.get(f"{url}/health", timeout=5).json()["jobs"]["running"] == 0:
            time.sleep(0.05)
        host.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{url}/v1/audio/speech", timeout=30, json={"model": "synth", "input": "late"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        slow.join(timeout=120)
        assert replies[0].status_code == 200 and len(replies[0].content) == round(2 * 24000 * duration_s)
        assert host.proc.wait(timeout=30) == 0
        assert gone_within(child, 5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)
    finally:
        host.stop()


def test_a_crashed_http_process_is_started_again_and_none_outlives_a_killed_host():
    port = free_port()
    host = start_host(CATALOG, args=("--http", f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        [first] = http_children(host.proc.pid)
        os.kill(first, signal.SIGKILL)
        assert gone_within(first, 5)
        # at once: the daemon holds the listening socket, so this waits in its backlog for the new process
        reply = httpx.post(f"{url}/v1/audio/speech", timeout=60, json={"model": "synth", "input": "again", "response_format": "pcm"})
        assert reply.status_code == 200
        [second] = http_children(host.proc.pid)
        assert second != first and "exited with -9; starting it again" in host.log()
        host.proc.kill()  # kill -9 of the host: the HTTP process must not outlive it
        host.proc.wait(timeout=10)
        assert gone_within(second, 5)
    finally:
        host.stop()
