"""The host under load, faults and bad input (issue 12), at the sizes CI affords: each scenario of
``benchmarks.soak`` against a real host, asserting what a user would see. ``python -m benchmarks.soak``
runs the same scenarios at full size."""

from __future__ import annotations

import time

import pytest
import zmq

from benchmarks import soak
from modelhost.client import Client
from modelhost.client.protocol import wire
from modelhost.client.protocol import errors as E
from tests.conftest import SLOW_MODEL, start_host

Q = soak.QUICK


def test_concurrent_loads_never_exceed_the_budget() -> None:
    figures = soak.budget(Q["budget_rounds"])
    assert figures["errors"] == []  # the second model waits for the first, then evicts it: nobody fails
    assert figures["samples"] > Q["budget_rounds"]
    assert figures["violations"] == 0 and figures["both_on_device_samples"] == 0


def test_many_clients_get_exactly_one_right_reply_each() -> None:
    figures = soak.load(Q["load_clients"], Q["load_requests"])
    assert figures["requests"] == Q["load_clients"] * Q["load_requests"]
    assert (figures["lost"], figures["duplicated"], figures["wrong"]) == (0, 0, 0)
    assert figures["jobs_after"] == {"queued": 0, "running": 0}


def test_killed_clients_leave_no_work_behind() -> None:
    figures = soak.client_kills(Q["kills"])
    assert figures["jobs_after"] == {"queued": 0, "running": 0} and figures["serves_after"]


def test_a_killed_host_is_reported_dead_and_the_same_clients_work_after_a_restart() -> None:
    figures = soak.host_kill(Q["host_kill_clients"])
    assert figures["host_dead_raised"] == Q["host_kill_clients"] and figures["other_outcomes"] == []
    assert figures["detect_s_max"] < 2.0 + 3.0  # the liveness window, plus slack for a loaded 2-core machine
    assert figures["worked_after_restart"] == Q["host_kill_clients"]


def test_sigterm_drain_gives_every_request_exactly_one_final_reply() -> None:
    figures = soak.drain(Q["drain_jobs"])
    assert (figures["lost"], figures["duplicated"]) == (0, 0) and figures["exit_code"] == 0
    assert set(figures["outcomes"]) <= {"result", "shutting_down"} and figures["outcomes"].get("shutting_down")


# ---- single faults, on raw sockets ----

@pytest.fixture(scope="module")
def fault_host():
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25
        client_liveness_s = 2
        [models.slow]
        {SLOW_MODEL}
        [models.fast]
        backend = "synth"
        width = 16
    """)
    yield h
    h.stop()


def _finals(sock: zmq.Socket, n: int, timeout_s: float = 30.0) -> list[wire.Message]:
    out: list[wire.Message] = []
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    end = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        if poller.poll(100):
            msg = wire.decode(sock.recv_multipart(copy=False))
            if msg.kind in wire.FINAL_REPLY_KINDS:
                out.append(msg)
        sock.send_multipart(wire.encode("ping", 2**40, {}))  # heartbeats while waiting
    return out


def test_a_duplicate_id_is_refused_and_the_running_job_is_untouched(fault_host) -> None:
    ctx, sock = soak._dealer(fault_host.address)
    try:
        sock.send_multipart(wire.encode("generate", 5, {"model": "slow", "params": {"duration_s": 2.0}}))
        sock.send_multipart(wire.encode("generate", 5, {"model": "fast", "params": {"duration_s": 0.1}}))
        first = _finals(sock, 1)
        assert first[0].id == 5 and first[0].kind == "error" and first[0].body["code"] == "duplicate_id"
        second = _finals(sock, 1)
        assert second[0].id == 5 and second[0].kind == "result" and second[0].body["audio"].shape[-1] == 64000
        assert _finals(sock, 1, timeout_s=1.0) == []
    finally:
        sock.close()
        ctx.term()


def test_cancels_racing_completions_leave_exactly_one_final_reply(fault_host) -> None:
    ctx, sock = soak._dealer(fault_host.address)
    try:
        for i in range(1, 201):  # each generate is cancelled right away: it may be queued, running or done
            sock.send_multipart(wire.encode("generate", i, {"model": "fast", "params": {"duration_s": 0.01}}))
            sock.send_multipart(wire.encode("cancel", 10_000 + i, {"target": i}))
        finals = _finals(sock, 400)
        finals += _finals(sock, 1, timeout_s=1.0)
    finally:
        sock.close()
        ctx.term()
    ids = [m.id for m in finals]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 400
    outcomes = {m.kind if m.kind == "result" else m.body["code"] for m in finals if m.id <= 200}
    assert outcomes <= {"result", "cancelled"}


def test_a_failed_preload_keeps_the_host_not_ready_and_says_why() -> None:
    h = start_host("""
        preload = ["fine", "broken"]
        [models.fine]
        backend = "synth"
        width = 16
        [models.broken]
        backend = "synth"
        checkpoint = "/nonexistent/voice.pt"
    """, wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                with Client(h.address) as c:
                    health = c.health()
                if not health["preload_pending"]:
                    break
            except E.HostUnavailableError:
                pass
            time.sleep(0.2)
        assert health["ready"] is False and list(health["preload_failed"]) == ["broken"]
        assert "/nonexistent/voice.pt" in health["preload_failed"]["broken"]
        with Client(h.address) as c:  # the models that did load serve
            assert c.generate("fine", params={"duration_s": 0.05}).audio.shape[-1] == 1600
    finally:
        h.stop()

