"""A blocking call made alone on a client sends and receives on the caller's thread (``Connection.call``);
beside other requests, or once it must wait long, it goes through the I/O thread. Both ways give every
request exactly one final reply, the right one, and a dead host, a cancel, a deadline or a close still
end a call that was on the caller's thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E
from tests.conftest import start_host

STUCK = 'backend = "tests.support.stuck_backend:StuckBackend"\nstuck_s = 30\nwidth = 8\ndepth = 1'


def test_a_lone_call_runs_on_the_callers_thread_and_the_switch_turns_that_off(host, monkeypatch) -> None:
    with Client(host.address) as c:
        for _ in range(3):  # calls before the handshake and the shared-memory offer go through the I/O thread
            c.health()
        time.sleep(0.1)  # the offer's answers are in
        before = c._conn.direct_calls
        for _ in range(10):
            assert c.generate("synth", "x", params={"duration_s": 0.01, "seed": 3}).audio.shape[-1] > 0
        # all but a call that met the I/O thread's idle read of the socket (twice a heartbeat, a few microseconds)
        assert c._conn.direct_calls - before >= 9
    monkeypatch.setenv("MODELHOST_DIRECT_CALLS", "0")
    with Client(host.address) as c:
        c.health()
        c.generate("synth", "x", params={"duration_s": 0.01, "seed": 3})
        assert c._conn.direct_calls == 0


def test_threads_sharing_a_client_mix_both_ways_and_each_gets_its_own_reply(host) -> None:
    seeds = list(range(1, 13))
    with Client(host.address) as ref:
        expected = {s: ref.generate("synth", "x", params={"duration_s": 0.02, "seed": s}).audio.copy() for s in seeds}
    got: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    first_alone = threading.Event()  # thread 0's first call runs with nothing else in flight: on its own thread

    def worker(t: int) -> None:
        try:
            if t > 0:
                first_alone.wait(30)
            for i, s in enumerate(seeds):
                params = {"duration_s": 0.02, "seed": s}
                if t >= 2 and i % 2:  # through the I/O thread, beside the others' calls
                    audio = c.submit("synth", "x", params=params).result().audio
                elif t >= 2:
                    stream = c.stream("synth", "x", params=params)
                    for _ in stream:
                        pass
                    audio = stream.result().audio
                else:  # blocking calls: on the caller's thread when alone, else through the I/O thread
                    audio = c.generate("synth", "x", params=params).audio
                    assert c.health()["ready"]
                got[(t, s)] = np.array(audio)
                first_alone.set()
                time.sleep(0.002 if t < 2 else 0.02)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            first_alone.set()

    with Client(host.address) as c:
        for _ in range(3):
            c.health()
        before = c._conn.direct_calls
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        direct = c._conn.direct_calls - before
    assert errors == []
    assert len(got) == 4 * len(seeds)
    for (t, s), audio in got.items():
        np.testing.assert_array_equal(audio, expected[s])
    blocking = 2 * len(seeds) * 2  # generate + health of threads 0 and 1
    assert 0 < direct < blocking  # some on their caller's thread, some (beside others) through the I/O thread


def test_progress_of_a_long_call_reaches_the_caller_as_it_runs(host) -> None:
    steps: list[tuple[int, int, float]] = []
    start = time.monotonic()
    with Client(host.address) as c:
        c.health()
        result = c.generate("slow", "x", params={"duration_s": 3.0, "seed": 5},
                            progress=lambda step, total: steps.append((step, total, time.monotonic() - start)))
    assert result.audio.shape[-1] == 3 * result.sample_rate
    assert len(steps) >= 2 and steps[-1][0] == steps[-1][1]
    assert steps[0][2] < time.monotonic() - start - 0.05  # the first came well before the end, not with the result


def _slow_call_in_a_thread(c: Client) -> tuple[threading.Thread, list[BaseException]]:
    """A blocking 20 s generate started on its own thread; the list gets what it raised."""
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            c.generate("slow", "x", params={"duration_s": 20.0, "seed": 1})
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    return caller, outcome


def test_a_cancel_from_another_thread_ends_a_call_on_the_callers_thread(host) -> None:
    with Client(host.address, shm=False) as c:
        job = c.submit("synth", "x", params={"duration_s": 0.01})
        job.result()
        next_id = job.id + 1  # the blocking generate below takes the next request id
        caller, outcome = _slow_call_in_a_thread(c)
        time.sleep(0.1)  # within the borrow (half a heartbeat): the socket is on the caller's thread
        t0 = time.monotonic()
        assert c.cancel(next_id) is True
        caller.join(timeout=10)
        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], E.CancelledError)
        assert time.monotonic() - t0 < 5.0


def test_a_deadline_ends_a_call_on_the_callers_thread(host) -> None:
    with Client(host.address) as c:
        c.health()
        t0 = time.monotonic()
        with pytest.raises(E.DeadlineExceededError):
            c.generate("slow", "x", params={"duration_s": 20.0, "seed": 1}, timeout_s=0.3)
        assert 0.25 < time.monotonic() - t0 < 3.0
        assert c.health()["ready"]  # the connection goes on


def test_a_close_from_another_thread_ends_a_call_on_the_callers_thread(host) -> None:
    c = Client(host.address)
    c.health()
    caller, outcome = _slow_call_in_a_thread(c)
    time.sleep(0.1)
    c.close()
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], E.HostUnavailableError)


def test_a_host_killed_during_a_call_on_the_callers_thread_is_reported_dead_at_once() -> None:
    h = start_host(f"[host]\nheartbeat_s = 1.0\nclient_liveness_s = 5\n\n[models.stuck]\n{STUCK}\n")
    try:
        # a long borrow (half of a 4 s heartbeat): the kill lands while the socket is on the caller's thread
        with Client(h.address, heartbeat_s=4.0, liveness_s=8.0) as c:
            c.load("stuck")
            c.health()
            outcome: list[BaseException] = []

            def call() -> None:
                try:
                    c.generate("stuck", "x", params={"duration_s": 0.01})
                except BaseException as exc:  # noqa: BLE001
                    outcome.append(exc)

            caller = threading.Thread(target=call)
            caller.start()
            time.sleep(0.3)
            t0 = time.monotonic()
            h.proc.kill()
            caller.join(timeout=12)
            assert not caller.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], E.HostDeadError), outcome
            assert time.monotonic() - t0 < 2.0  # the disconnect, not the 8 s liveness window
    finally:
        h.stop(timeout_s=5)
