"""The shared real daemon, called through both clients: results, progress, cancel, errors, concurrency,
garbage input. Every test here would fail if the host or the client misbehaved."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from modelhost.client import AsyncClient, Client
from modelhost.client.protocol import errors as E


class SyncCaller:
    """Runs calls through ``Client``."""

    def __init__(self, address: str) -> None:
        self.client = Client(address)

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def close(self) -> None:
        self.client.close()


class AsyncCaller:
    """Runs the same calls through ``AsyncClient`` on a private event loop, so tests read alike."""

    def __init__(self, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = AsyncClient(address)

    def __getattr__(self, name: str):
        method = getattr(self.client, name)
        return lambda *a, **k: self.loop.run_until_complete(method(*a, **k))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def caller(request, host):
    c = SyncCaller(host.address) if request.param == "sync" else AsyncCaller(host.address)
    yield c
    c.close()


def test_generate_returns_audio_from_the_checkpoint_model(caller) -> None:
    result = caller.generate("synth", "rain on a tin roof", params={"duration_s": 0.5, "seed": 123})
    assert result.sample_rate == 32000
    assert result.audio.dtype == np.float32 and result.audio.shape == (1, 16000)
    assert np.isfinite(result.audio).all() and 0 < np.abs(result.audio).max() <= 1
    assert result.info["seed"] == 123
    assert set(result.timings_ns) == {"queue_ns", "load_ns", "run_ns", "host_ns"}
    again = caller.generate("synth", "rain on a tin roof", params={"duration_s": 0.5, "seed": 123})
    np.testing.assert_array_equal(again.audio, result.audio)
    other = caller.generate("synth", "rain on a tin roof", params={"duration_s": 0.5, "seed": 124})
    assert not np.array_equal(other.audio, result.audio)


def test_stereo_output_and_audio_input(caller) -> None:
    result = caller.generate("stereo", "birds", params={"duration_s": 0.25})
    assert result.audio.shape == (2, 8000)
    # audio-to-audio: 10 s of 32 kHz stereo float32 in (2.56 MB, out of band both ways)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 320000)).astype(np.float32)
    out = caller.generate("stereo", audio=audio, sample_rate=32000, params={"seed": 5})
    assert out.audio.shape == (2, 320000) and out.sample_rate == 32000
    assert np.corrcoef(out.audio[0], audio[0])[0, 1] > 0.5  # the output follows the input


def test_progress_arrives_in_order_before_the_result(caller) -> None:
    events: list[tuple[int, int]] = []
    result = caller.generate("slow", "x", params={"duration_s": 2.0}, progress=lambda s, t: events.append((s, t)))
    assert len(events) >= 3
    steps = [s for s, _ in events]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert events[-1][0] == events[-1][1] == 2000  # the last step, reported before the result returned
    assert result.audio.shape == (1, 64000)


def test_unknown_model_and_bad_params_are_clear_errors(caller) -> None:
    with pytest.raises(E.UnknownModelError, match="known models: broken, slow, stereo, synth"):
        caller.generate("nope")
    with pytest.raises(E.BadParamsError, match="duration_s"):
        caller.generate("synth", params={"duration_s": -1})
    with pytest.raises(E.BadParamsError, match="temprature"):
        caller.generate("synth", params={"temprature": 0.5})
    with pytest.raises(E.BadParamsError, match="sample_rate"):
        caller.generate("stereo", audio=np.zeros(10, np.float32))
    assert caller.health()["ready"]  # the host serves on


def test_a_model_that_cannot_load_fails_clearly_and_the_host_serves_on(caller) -> None:
    with pytest.raises(E.LoadFailedError, match="/nonexistent/voice.pt does not exist"):
        caller.generate("broken", "hi")
    status = {m["name"]: m for m in caller.ps()}["broken"]
    assert status["state"] == "failed" and "does not exist" in status["error"]
    assert caller.generate("synth", params={"duration_s": 0.1}).audio.size == 3200


def test_load_unload_and_ps_tell_the_truth(host) -> None:
    with Client(host.address) as c:
        before = {m["name"]: m for m in c.ps()}
        assert before["synth"]["state"] == "ready" and before["synth"]["memory_bytes"] > 0
        assert before["slow"]["device"] in ("auto", "cpu")
        status = c.unload("stereo")
        assert status["state"] == "unloaded" and status["memory_bytes"] == 0
        assert c.health()["models"]["stereo"] == "unloaded"
        c.generate("stereo", params={"duration_s": 0.1})  # loads again on first use
        after = {m["name"]: m for m in c.ps()}["stereo"]
        assert after["state"] == "ready" and after["memory_bytes"] == before["stereo"]["memory_bytes"]
        assert after["hits"] > before["stereo"]["hits"] and after["last_used"] is not None
        assert c.load("stereo")["state"] == "ready"


class Running:
    """A generate submitted through ``client`` and waited on in a background thread."""

    def __init__(self, client: Client, model: str, duration_s: float) -> None:
        self.started = threading.Event()
        self.outcome: list[object] = []
        self.job = client.submit(model, "x", params={"duration_s": duration_s}, progress=lambda s, t: self.started.set())
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()
        assert self.started.wait(30), "no progress event within 30 s"

    def _wait(self) -> None:
        try:
            self.outcome.append(self.job.result())
        except Exception as exc:  # the test asserts on it
            self.outcome.append(exc)

    def finish(self) -> object:
        self.thread.join(60)
        assert self.outcome, "the job never ended"
        return self.outcome[0]


def test_a_slow_generation_does_not_block_health_ps_or_other_models(host) -> None:
    with Client(host.address) as c:
        slow = Running(c, "slow", 60.0)
        health = c.health()
        assert health["jobs"]["running"] >= 1  # answered while the slow job runs
        assert {m["name"]: m for m in c.ps()}["slow"]["running"] == 1
        out = c.generate("synth", params={"duration_s": 0.2})
        assert out.audio.size == 6400 and not slow.outcome  # the other model finished first
        slow.job.cancel()
        assert isinstance(slow.finish(), E.CancelledError)


def test_cancel_a_running_generation(host) -> None:
    with Client(host.address) as c:
        slow = Running(c, "slow", 120.0)
        assert c.cancel(slow.job.id) is True
        assert isinstance(slow.finish(), E.CancelledError)
        assert c.cancel(slow.job.id) is False  # already over
        assert {m["name"]: m for m in c.ps()}["slow"]["running"] == 0


def test_cancel_a_queued_generation(host) -> None:
    with Client(host.address) as c:
        first = Running(c, "slow", 60.0)
        queued = c.submit("slow", params={"duration_s": 1.0})
        queued.cancel()
        with pytest.raises(E.CancelledError, match="cancelled"):
            queued.result()
        assert not first.outcome  # the running one was not touched
        first.job.cancel()
        assert isinstance(first.finish(), E.CancelledError)


def test_cancelling_an_async_task_cancels_the_host_job(host) -> None:
    async def scenario() -> dict:
        started = asyncio.Event()
        async with AsyncClient(host.address) as c:
            task = asyncio.ensure_future(c.generate("slow", params={"duration_s": 120.0}, progress=lambda s, t: started.set()))
            await asyncio.wait_for(started.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(100):
                ps = {m["name"]: m for m in await c.ps()}
                if ps["slow"]["running"] == 0:
                    return ps
                await asyncio.sleep(0.1)
            return ps

    assert asyncio.run(scenario())["slow"]["running"] == 0


def test_client_timeout_raises_and_cancels_on_the_host(host) -> None:
    with Client(host.address) as c:
        with pytest.raises(E.DeadlineExceededError):
            c.generate("slow", params={"duration_s": 120.0}, timeout_s=1.0)
        deadline = time.monotonic() + 10
        while {m["name"]: m for m in c.ps()}["slow"]["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {m["name"]: m for m in c.ps()}["slow"]["running"] == 0


def test_many_threads_share_one_client_and_many_clients_share_the_host(host) -> None:
    with Client(host.address) as shared:
        expected = {seed: shared.generate("synth", "p", params={"duration_s": 0.2, "seed": seed}).audio for seed in range(1, 9)}
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def work(seed: int, client: Client) -> None:
            try:
                results[seed] = client.generate("synth", "p", params={"duration_s": 0.2, "seed": seed}).audio
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        own = [Client(host.address) for _ in range(4)]
        threads = [threading.Thread(target=work, args=(seed, shared if seed % 2 else own[seed // 2 - 1])) for seed in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for c in own:
            c.close()
    assert not errors
    for seed, audio in expected.items():
        np.testing.assert_array_equal(results[seed], audio)  # every caller got its own request's audio


def test_many_tasks_share_one_async_client(host) -> None:
    async def scenario() -> list:
        async with AsyncClient(host.address) as c:
            return await asyncio.gather(*(c.generate("synth", "p", params={"duration_s": 0.2, "seed": s}) for s in range(1, 9)))

    results = asyncio.run(scenario())
    with Client(host.address) as c:
        for seed, result in zip(range(1, 9), results):
            assert result.info["seed"] == seed
            np.testing.assert_array_equal(result.audio, c.generate("synth", "p", params={"duration_s": 0.2, "seed": seed}).audio)


def _raw_dealer(address: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.connect(address)
    return ctx, sock


def test_a_burst_of_garbage_gets_one_error_reply_each_and_the_host_serves_on(host) -> None:
    rng = np.random.default_rng(7)
    garbage = [[rng.bytes(int(rng.integers(0, 200)))] for _ in range(150)]
    garbage += [[msgpack.packb({"v": 1, "k": "generate", "id": i, "b": {"model": 3}})] for i in range(20)]
    garbage += [[msgpack.packb({"v": 99, "k": "health", "id": 1000 + i, "b": {}})] for i in range(20)]
    garbage += [[msgpack.packb({"v": 1, "k": "result", "id": 5, "b": {}})]]  # a reply kind sent as a request
    garbage += [[b"\x91" * 50_000], [b""] * 70]
    ctx, sock = _raw_dealer(host.address)
    try:
        for frames in garbage:
            sock.send_multipart(frames)
        replies = [msgpack.unpackb(sock.recv_multipart()[0]) for _ in garbage]
    finally:
        sock.close()
        ctx.term()
    assert all(r["k"] == "error" and r["b"]["code"] and r["b"]["message"] for r in replies)
    codes = {r["b"]["code"] for r in replies}
    assert {"bad_request", "version_mismatch", "too_large"} <= codes
    assert [r["id"] for r in replies if r["b"]["code"] == "version_mismatch"] == list(range(1000, 1020))
    with Client(host.address) as c:
        assert c.generate("synth", params={"duration_s": 0.1}).audio.size == 3200


def test_socket_file_is_private(host) -> None:
    mode = os.stat(host.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(host.socket_path.parent).st_mode) == 0o700
