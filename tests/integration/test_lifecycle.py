"""Liveness and shutdown with real processes: kill -9 of the host, a client that vanishes, SIGTERM
drains, a second host refused, a stale socket replaced, TCP needs its token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E
from tests.conftest import ROOT, SLOW_MODEL, start_host

CATALOG = f"""
    [host]
    heartbeat_s = 0.25
    client_liveness_s = 1.5
    drain_timeout_s = 20

    [models.slow]
    {SLOW_MODEL}

    [models.synth]
    backend = "synth"
    width = 32
"""


@pytest.fixture
def own_host():
    h = start_host(CATALOG)
    yield h
    h.stop()


def _running(c: Client) -> int:
    return c.health()["jobs"]["running"]


def test_kill_9_of_the_host_raises_host_dead_within_the_liveness_window(own_host) -> None:
    started = threading.Event()
    with Client(own_host.address, heartbeat_s=0.25, liveness_s=2.0) as c:
        job = c.submit("slow", params={"duration_s": 300.0}, progress=lambda s, t: started.set())
        outcome: list[BaseException] = []
        waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(E.HostDeadError, job.result).value))
        waiter.start()
        assert started.wait(30)
        os.kill(own_host.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        waiter.join(30)
        elapsed = time.monotonic() - killed_at
    assert outcome and "stopped answering" in str(outcome[0])
    assert elapsed < 2.0 + 3.0  # the liveness window plus slack for a loaded 2-core machine
    # the killed host left its socket file; a new host on the same path removes it and serves
    assert own_host.socket_path.exists()
    again = start_host(CATALOG, folder=own_host.log_path.parent, address=own_host.address)
    try:
        with Client(again.address) as c:
            assert c.generate("synth", params={"duration_s": 0.1}).audio.size == 3200
    finally:
        again.stop()


def test_a_vanished_client_has_its_request_cancelled(own_host) -> None:
    script = textwrap.dedent(f"""
        import sys
        from modelhost.client import Client
        c = Client({own_host.address!r})
        job = c.submit("slow", params={{"duration_s": 300.0}}, progress=lambda s, t: (print("started", flush=True)))
        job.result()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        with Client(own_host.address) as c:
            assert _running(c) == 1
            child.kill()
            child.wait(10)
            # the job would run for ~30 s; the host must notice the silence and cancel it
            deadline = time.monotonic() + 15
            while _running(c) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _running(c) == 0
            assert c.generate("slow", params={"duration_s": 0.1}).audio.size == 3200
    finally:
        child.kill()


def test_sigterm_drains_in_flight_work_refuses_new_work_and_exits_0(own_host) -> None:
    started = threading.Event()
    with Client(own_host.address) as c:
        job = c.submit("slow", params={"duration_s": 15.0}, progress=lambda s, t: started.set())
        outcome: list[object] = []
        waiter = threading.Thread(target=lambda: outcome.append(job.result()))
        waiter.start()
        assert started.wait(30)
        own_host.proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if c.health()["status"] == "draining":
                break
            time.sleep(0.05)
        assert c.health()["status"] == "draining"
        with pytest.raises(E.ShuttingDownError, match="shutting down"):
            c.generate("synth", params={"duration_s": 0.1})
        waiter.join(60)
    assert outcome and outcome[0].audio.shape == (1, 480000)  # the in-flight job finished, not cancelled
    assert own_host.proc.wait(30) == 0
    assert not own_host.socket_path.exists()


def test_a_job_past_the_drain_timeout_gets_a_shutting_down_reply(tmp_path) -> None:
    h = start_host(CATALOG.replace("drain_timeout_s = 20", "drain_timeout_s = 1"))
    started = threading.Event()
    with Client(h.address) as c:
        job = c.submit("slow", params={"duration_s": 300.0}, progress=lambda s, t: started.set())
        outcome: list[BaseException] = []
        waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(E.ShuttingDownError, job.result).value))
        waiter.start()
        assert started.wait(30)
        h.proc.send_signal(signal.SIGTERM)
        waiter.join(30)
    assert outcome and "shut down" in str(outcome[0])
    assert h.proc.wait(30) == 0


def test_a_second_host_on_a_live_address_is_refused(own_host) -> None:
    second = subprocess.run([sys.executable, "-m", "modelhost.host", "serve", "--address", own_host.address],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "already serving" in second.stderr
    with Client(own_host.address) as c:
        assert c.health()["ready"]  # the first host was not disturbed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_on_loopback_needs_the_token() -> None:
    token = "test-token-0123456789abcdef"
    address = f"tcp://127.0.0.1:{_free_port()}"
    h = start_host('[models.synth]\nbackend = "synth"\nwidth = 32\n', address=address, env={"MODELHOST_TOKEN": token})
    try:
        with Client(address, token=token) as c:
            assert c.generate("synth", params={"duration_s": 0.1}).audio.size == 3200
        with Client(address, token="wrong-token-0123456789") as c:
            with pytest.raises(E.UnauthorizedError, match="MODELHOST_TOKEN"):
                c.health()
    finally:
        h.stop()
    refused = subprocess.run([sys.executable, "-m", "modelhost.host", "serve", "--address", address], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "MODELHOST_TOKEN"})
    assert refused.returncode == 2 and "needs a token" in refused.stderr


def test_two_sigterms_back_to_back_still_exit_0() -> None:
    # A process group and a shell trap each send SIGTERM: the second lands while the first is handled.
    for _ in range(3):
        h = start_host('[models.synth]\nbackend = "synth"\nwidth = 32\n')
        os.kill(h.proc.pid, signal.SIGTERM)
        os.kill(h.proc.pid, signal.SIGTERM)
        assert h.proc.wait(30) == 0, h.log()
        assert not h.socket_path.exists()
