"""Runner processes (issue 24): model code that segfaults, holds the interpreter lock, exits, ignores its cancel
or is killed with -9 ends nothing but its own runner. Asserted from outside with real clients against one real
host, whose misbehaving models (``tests.support.faulty_backend``, loaded by import path) each sit in a runner of
their own beside healthy synth models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import soak
from modelhost.client import CancelledError, Client
from modelhost.client.protocol import errors as E
from modelhost.client.protocol import wire
from tests.conftest import ROOT, SLOW_MODEL, short_tmp, start_host
from tests.integration.test_reliability import _finals

FAULTY = 'backend = "tests.support.faulty_backend:FaultyBackend"'


@pytest.fixture(scope="module")
def host():
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25
        client_liveness_s = 2

        [models.healthy]
        backend = "synth"
        width = 32

        [models.slow]
        {SLOW_MODEL}
        runner = "slow"

        [models.faulty]
        {FAULTY}
        runner = "faulty"

        [models.exiter]
        {FAULTY}
        runner = "exiter"

        [models.crasher]
        {FAULTY}
        runner = "crasher"

        [models.gil]
        {FAULTY}
        runner = "gil"

        [models.stubborn]
        {FAULTY}
        runner = "stubborn"
        kill_after_s = 1

        [models.streamer]
        {FAULTY}
        runner = "streamer"
        steps = 40
        step_s = 0.05

        [models.big]
        backend = "synth"
        parameters = 40000000
        runner = "big"
    """)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def client(host):
    with Client(host.address) as c:
        c.generate("healthy", "warm", params={"duration_s": 0.1, "seed": 1})
        yield c


def _row(c: Client, name: str) -> dict:
    return next(r for r in c.ps() if r["name"] == name)


def _until(check, timeout_s: float = 15.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


class _Healthy:
    """Generations on the healthy model from another thread, for as long as a fault plays out."""

    def __init__(self, address: str) -> None:
        self.address, self.done, self.errors, self.seconds = address, 0, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with Client(self.address) as c:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    c.generate("healthy", "still here", params={"duration_s": 0.05, "seed": 3}, timeout_s=10)
                    self.done += 1
                except Exception as exc:  # any failure is a finding
                    self.errors.append(exc)
                self.seconds.append(time.monotonic() - start)
                time.sleep(0.02)

    def __enter__(self) -> "_Healthy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)


def test_a_segfault_ends_only_its_runner_and_the_request_runs_once_more(host, client, tmp_path) -> None:
    healthy_before = _row(client, "healthy")
    undisturbed = client.generate("faulty", "x", params={"seed": 5}).audio
    pid_before = _row(client, "faulty")["pid"]
    with _Healthy(host.address) as other:
        result = client.generate("faulty", "x", params={"seed": 5, "fault": "segv", "once": str(tmp_path / "once")})
    assert np.array_equal(result.audio, undisturbed)  # run again on a new runner, as if nothing had happened
    assert result.info["pid"] != pid_before
    assert other.errors == [] and other.done > 0
    healthy_after = _row(client, "healthy")
    assert (healthy_after["pid"], healthy_after["loads"]) == (healthy_before["pid"], healthy_before["loads"])  # no reload
    faulty = _row(client, "faulty")
    assert faulty["state"] == "ready" and faulty["runner_restarts"] == 1 and faulty["pid"] == result.info["pid"]
    assert "about to segv" in host.log()  # what the runner printed reaches the host's log


def test_a_request_that_kills_its_runner_twice_ends_with_runner_lost_and_its_id(host, client) -> None:
    ctx, sock = soak._dealer(host.address)
    try:
        sock.send_multipart(wire.encode("generate", 71, {"model": "exiter", "params": {"fault": "exit"}}))
        sock.send_multipart(wire.encode("generate", 72, {"model": "healthy", "params": {"duration_s": 0.1}}))
        finals = _finals(sock, 2)
        by_id = {m.id: m for m in finals}
        assert by_id[72].kind == "result"
        assert by_id[71].kind == "error" and by_id[71].body["code"] == "runner_lost"
        assert "exit code 3" in by_id[71].body["message"] and "run once more" in by_id[71].body["message"]
        assert _finals(sock, 1, timeout_s=1.5) == []  # exactly one final reply each
    finally:
        sock.close()
        ctx.term()
    assert client.generate("exiter", "x", params={"seed": 2}).audio.size > 0  # its third runner serves


def test_repeated_crashes_leave_the_model_failed_and_health_says_why(host, client) -> None:
    for _ in range(2):  # 2 + 1 crashes: the retry of the second request is the third
        with pytest.raises(E.RunnerLostError):
            client.generate("crasher", "x", params={"fault": "segv"})
    health = client.health()
    assert health["ok"] is False and "crasher" in health["failed"]
    why = health["failed"]["crasher"]
    assert "SIGSEGV" in why and "about to segv" in why and "3 crashes" in why
    cli = subprocess.run([sys.executable, "-m", "modelhost.host", "health", "--address", host.address],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert cli.returncode == 1 and "SIGSEGV" in cli.stdout + cli.stderr
    assert client.generate("healthy", "x", params={"duration_s": 0.05}).audio.size > 0
    client.load("crasher")  # a new request tries again (the user may have fixed something)
    assert _row(client, "crasher")["state"] == "ready"


def test_native_code_holding_the_interpreter_lock_is_stalled_not_fatal(host, client) -> None:
    client.load("gil")
    job = client.submit("gil", "x", params={"fault": "gil", "hold_s": 5})
    with _Healthy(host.address) as other:
        assert _until(lambda: "gil" in client.health()["stalled"], timeout_s=4.5)
        started = time.monotonic()
        health = client.health(timeout_s=2)
        assert time.monotonic() - started < 1.0  # the host answers at once
        assert "interpreter lock" in health["stalled"]["gil"]
    assert other.errors == [] and other.done > 0 and max(other.seconds) < 2.0
    assert job.result().audio.size > 0  # the lock was let go: the request finishes
    assert _row(client, "gil")["runner_restarts"] == 0


def test_a_run_that_ignores_its_cancel_is_killed_and_the_queue_survives(host, client) -> None:
    client.load("stubborn")
    pid = _row(client, "stubborn")["pid"]
    stuck = client.submit("stubborn", "x", params={"fault": "ignore_cancel", "hold_s": 60})
    queued = client.submit("stubborn", "y", params={"seed": 9})
    assert _until(lambda: _row(client, "stubborn")["running"] == 1)
    started = time.monotonic()
    stuck.cancel()
    with pytest.raises(CancelledError):
        stuck.result()
    assert queued.result().audio.size > 0  # not lost: it ran on the new runner
    assert time.monotonic() - started < 20  # kill_after_s = 1, then a restart (a new Python importing torch), not hold_s = 60
    assert _until(lambda: _row(client, "stubborn")["pid"] not in (pid, None))  # a new runner (ps may lag the kill)
    assert _row(client, "stubborn")["runner_restarts"] == 0  # the host's own kill is no crash
    assert "did not stop within kill_after_s" in host.log()


def test_kill_9_mid_generation_runs_the_request_again(host, client) -> None:
    params = {"duration_s": 4.0, "seed": 77}
    undisturbed = client.generate("slow", "kill me", params=params).audio
    pid = _row(client, "slow")["pid"]
    progressed = threading.Event()
    job = client.submit("slow", "kill me", params=params, progress=lambda step, total: progressed.set())
    results: list = []
    waiter = threading.Thread(target=lambda: results.append(job.result()), daemon=True)  # runs the progress callback
    waiter.start()
    assert progressed.wait(30)
    os.kill(pid, signal.SIGKILL)
    waiter.join(120)
    assert np.array_equal(results[0].audio, undisturbed)
    assert _row(client, "slow")["pid"] not in (pid, None)


def test_kill_9_mid_stream_ends_the_stream_with_runner_lost(host, client) -> None:
    client.load("streamer")
    pid = _row(client, "streamer")["pid"]
    chunks = 0
    with pytest.raises(E.RunnerLostError, match="already sent"):
        for _ in client.stream("streamer", "x", params={"seed": 4}):
            chunks += 1
            if chunks == 2:
                os.kill(pid, signal.SIGKILL)
    assert chunks >= 2
    assert len(list(client.stream("streamer", "x", params={"seed": 4, "steps": 3}))) == 3  # a new runner streams


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_unload_ends_the_runner_and_gives_its_memory_back(host, client) -> None:
    host_before = _rss(host.proc.pid)
    client.load("big")
    row = _row(client, "big")
    pid = row["pid"]
    assert row["runner_bytes"] > 150e6 and row["memory_bytes"] > 150e6  # 40 M float parameters, measured
    client.generate("big", "x", params={"duration_s": 0.1})
    assert _row(client, "big")["runner_bytes"] == row["runner_bytes"]  # measured at the load; a run keeps it
    client.unload("big")
    assert _until(lambda: not os.path.exists(f"/proc/{pid}"))  # the runner exited: all of its memory is back
    assert _row(client, "big")["pid"] is None
    assert abs(_rss(host.proc.pid) - host_before) < 0.05 * host_before


@pytest.fixture(scope="module")
def py310_venv() -> Path:
    """A second Python environment made here: Python 3.10, no torch, with the client's light dependencies."""
    base = ROOT / ".venv-py310" / "bin" / "python"
    if not base.exists():
        pytest.skip("no .venv-py310 (setup.sh --test makes it where a Python 3.10 exists)")
    real = Path(os.path.realpath(base))
    venv = short_tmp("mh-venv-") / "env"
    subprocess.run([str(real), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((ROOT / ".venv-py310" / "lib").glob("python3.10/site-packages"))
    (next((venv / "lib").glob("python3.10/site-packages")) / "light.pth").write_text(str(site) + "\n")
    return venv


def test_a_runner_under_another_python_environment(py310_venv) -> None:
    python = py310_venv / "bin" / "python"
    catalog = f"""
        [models.tone]
        {FAULTY}
        python = "{python}"
        [models.healthy]
        backend = "synth"
        width = 16
    """
    h = start_host(catalog)
    try:
        with Client(h.address) as c:
            result = c.generate("tone", "x", params={"seed": 3})
            row = _row(c, "tone")
            assert result.audio.size > 0 and row["python"] == str(python)
            assert os.path.realpath(f"/proc/{row['pid']}/exe").endswith("python3.10")
            maps = Path(f"/proc/{row['pid']}/maps").read_text()
            assert "libtorch" not in maps  # the runner needs only the light dependencies
            assert c.generate("healthy", "x", params={"duration_s": 0.05}).audio.size > 0
        config = h.log_path.parent / "catalog.toml"
        doctor = subprocess.run([sys.executable, "-m", "modelhost.host", "doctor", "--config", str(config)],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert "runner tests.support.faulty_backend:FaultyBackend" in doctor.stdout and "python 3.10" in doctor.stdout
    finally:
        h.stop()


def test_random_runner_kills_under_load_lose_and_duplicate_nothing() -> None:
    q = soak.QUICK
    figures = soak.runner_kills(q["runner_kills"], q["runner_kill_clients"], q["runner_kill_requests"])
    assert figures["kills"] >= 2
    assert (figures["lost"], figures["duplicated"], figures["wrong"]) == (0, 0, 0), figures["wrong_examples"]
    assert figures["jobs_after"] == {"queued": 0, "running": 0} and figures["serves_after"]
    assert sum(figures["runner_restarts"].values()) >= 2


def test_a_result_leaves_its_runner_through_shared_memory_with_no_copy_in_the_host(client) -> None:
    before = client.health()["shm"]["handed_over"]
    result = client.generate("healthy", "x", params={"duration_s": 5.0, "seed": 1})  # 640 kB: over the shm threshold
    assert client.shared_memory and result.audio.nbytes == 5 * 32000 * 4
    assert client.health()["shm"]["handed_over"] == before + 1  # the runner wrote it where the client reads it
