"""Residency in a real host on the CPU: synth models of chosen sizes against a small budget, pins,
keep-alive, loads that do not stall other models, one load for concurrent requests, and the
out-of-memory retry path with torch's real error type."""

from __future__ import annotations

import threading
import time

import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E
from tests.support.launch import start_host
from modelhost.host.backends.synth import parameter_count

MIB = 2**20
# width 512, depth 4 -> ~1.2M parameters -> 4.8 MB of float32 weights each
SIZE_KEYS = 'backend = "synth"\nwidth = 512\ndepth = 4'
EACH_BYTES = 4 * parameter_count(512, 4, 320, 1)


@pytest.fixture(scope="module")
def small_budget_host():
    """Room for two of the three 4.8 MB models on the CPU, and a pinned one."""
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25

        [budget]
        cpu = {int(EACH_BYTES * 2.5)}

        [models.a]
        {SIZE_KEYS}
        [models.b]
        {SIZE_KEYS}
        [models.c]
        {SIZE_KEYS}
        [models.short]
        backend = "synth"
        width = 32
        keep_alive = "1s"
        [models.oom-once]
        backend = "tests.support.oom_backend:OomBackend"
        width = 32
        oom_times = 1
        [models.oom-always]
        backend = "tests.support.oom_backend:OomBackend"
        width = 32
        oom_times = 1000
    """)
    yield h
    h.stop()


def _ps(c: Client) -> dict[str, dict]:
    return {m["name"]: m for m in c.ps()}


def _gen(c: Client, model: str) -> None:
    c.generate(model, params={"duration_s": 0.05})


def test_eviction_keeps_the_budget_and_evicted_models_come_back(small_budget_host) -> None:
    with Client(small_budget_host.address) as c:
        for name in ("a", "b", "c"):
            c.unload(name)
        _gen(c, "a")
        for _ in range(5):
            _gen(c, "b")  # b is used more: a (used once) is the one to go
        _gen(c, "c")
        ps = _ps(c)
        assert ps["a"]["state"] == "unloaded" and ps["a"]["evictions"] >= 1
        assert ps["b"]["state"] == ps["c"]["state"] == "ready"
        cpu = {d["device"]: d for d in c.devices()}["cpu"]
        resident = sum(ps[n]["memory_bytes"] for n in ("a", "b", "c") if ps[n]["state"] == "ready")
        assert resident <= cpu["budget_bytes"]
        _gen(c, "a")  # comes back on demand, evicting the least valuable of the others
        ps = _ps(c)
        assert ps["a"]["state"] == "ready" and ps["a"]["loads"] >= 2
        assert [ps[n]["state"] for n in ("b", "c")].count("ready") == 1


def test_pinned_models_are_never_evicted_and_no_room_says_why(small_budget_host) -> None:
    with Client(small_budget_host.address) as c:
        for name in ("a", "b", "c"):
            c.unload(name)
        _gen(c, "a")
        _gen(c, "b")
        assert c.pin("a")["pinned"] and c.pin("b")["pinned"]
        with pytest.raises(E.OutOfMemoryError) as info:
            _gen(c, "c")
        assert "a (" in str(info.value) and "pinned" in str(info.value) and "missing" in str(info.value)
        ps = _ps(c)
        assert ps["a"]["state"] == ps["b"]["state"] == "ready" and ps["c"]["state"] != "ready"
        c.unpin("b")
        _gen(c, "c")
        ps = _ps(c)
        assert ps["c"]["state"] == "ready" and ps["b"]["state"] == "unloaded" and ps["a"]["state"] == "ready"
        c.unpin("a")


def test_keep_alive_unloads_idle_models_and_requests_can_extend_it(small_budget_host) -> None:
    with Client(small_budget_host.address) as c:
        _gen(c, "short")
        deadline = time.monotonic() + 10
        while _ps(c)["short"]["state"] == "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _ps(c)["short"]["state"] == "unloaded"
        c.generate("short", params={"duration_s": 0.05}, keep_alive_s=120)
        time.sleep(2.5)
        status = _ps(c)["short"]
        assert status["state"] == "ready" and status["keep_until"] > time.time() + 100


def test_out_of_memory_frees_room_and_retries_once(small_budget_host) -> None:
    with Client(small_budget_host.address) as c:
        _gen(c, "b")
        assert _ps(c)["b"]["state"] == "ready"
        out = c.generate("oom-once", params={"duration_s": 0.05})
        assert out.audio.size == 1600
        assert _ps(c)["b"]["state"] == "unloaded"  # evicted to make room for the retry
        with pytest.raises(E.OutOfMemoryError, match="ran out of device memory"):
            c.generate("oom-always", params={"duration_s": 0.05})
        assert c.health()["ready"]  # the host stays up


def test_a_load_does_not_stall_other_models_and_concurrent_requests_share_one_load() -> None:
    # "big" takes seconds to build (~120M parameters); "small" is resident
    h = start_host("""
        preload = ["small"]
        [models.small]
        backend = "synth"
        width = 32
        [models.big]
        backend = "synth"
        parameters = 120000000
        depth = 1
    """)
    try:
        with Client(h.address) as c:
            results: list[tuple[str, float]] = []

            def big() -> None:
                c.generate("big", params={"duration_s": 0.05})
                results.append(("big", time.monotonic()))

            threads = [threading.Thread(target=big) for _ in range(3)]
            for t in threads:
                t.start()
            while _ps(c)["big"]["state"] != "loading":
                time.sleep(0.01)
            c.generate("small", params={"duration_s": 0.05})
            small_done = time.monotonic()
            assert _ps(c)["big"]["state"] == "loading"  # the small request finished while big was still loading
            assert c.health()["models"]["big"] == "loading"  # and health answered too
            for t in threads:
                t.join(120)
            assert len(results) == 3 and all(done > small_done for _, done in results)
            assert _ps(c)["big"]["loads"] == 1  # three requests, one load
    finally:
        h.stop()


def test_preload_runs_in_catalog_order_with_a_warm_up_and_ready_waits_for_it() -> None:
    h = start_host("""
        preload = ["second", "first"]
        [models.first]
        backend = "synth"
        width = 32
        [models.second]
        backend = "synth"
        width = 64
    """)
    try:
        with Client(h.address) as c:
            health = c.health()
            assert health["ready"] and health["preload_pending"] == []
            assert all(m["state"] == "ready" for m in c.ps())
        log = h.log()
        marks = [log.index(s) for s in ("loaded second", "warmed up second", "loaded first", "warmed up first")]
        assert marks == sorted(marks)
    finally:
        h.stop()
