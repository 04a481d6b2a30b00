"""Shared memory between a real host and real clients: the same audio as frames, thousands of transfers with
nothing left behind, kill -9 of either side with segments in use, and an old (version 1) client on frames."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq

from modelhost.client import Client, HostDeadError
from modelhost.client.protocol import shm, wire
from tests.conftest import ROOT, SLOW_MODEL, start_host

pytestmark = pytest.mark.skipif(not shm.available(), reason="shared memory needs Linux (memfd_create, /proc)")

CATALOG = f"""
    [host]
    heartbeat_s = 0.25
    client_liveness_s = 1.5

    [models.mix]
    backend = "synth"
    width = 8
    depth = 1
    hop = 4096
    channels = 2

    [models.slow]
    {SLOW_MODEL}
"""


@pytest.fixture(scope="module")
def shm_host():
    h = start_host(CATALOG)
    yield h
    h.stop()


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (2, int(44100 * seconds))).astype(np.float32)


def _memfds(pid: int | str, key: str = "") -> int:
    """How many mappings of modelhost segments (with ``key``: of that writer) process ``pid`` holds."""
    with open(f"/proc/{pid}/maps") as maps:
        return sum(1 for line in maps if f"memfd:modelhost-{key}" in line)


def _until(check, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_large_audio_travels_through_shared_memory_both_ways_and_equals_the_frames_path(shm_host) -> None:
    audio = _audio(30)  # 10.6 MB each way
    with Client(shm_host.address) as c, Client(shm_host.address, shm=False) as plain:
        c.health()
        assert _until(lambda: c.shared_memory) and not plain.shared_memory
        shared = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 5})
        framed = plain.generate("mix", audio=audio, sample_rate=44100, params={"seed": 5})
        assert shared.audio.shape == framed.audio.shape == audio.shape
        assert np.array_equal(shared.audio, framed.audio)
        assert _memfds("self") >= 1  # the result is a view into the host's segment, mapped here
        stats = c.health()["shm"]
        assert stats["peers"] >= 1 and stats["mapped_from_peers"] >= 1  # the host mapped our request's audio
        assert stats["lent"] >= 1  # our result still holds a host segment
        del shared
        gc.collect()
        assert _until(lambda: c.health()["shm"]["lent"] == 0)  # dropping the array gave it back


def test_thousands_of_transfers_reuse_a_few_segments_and_leave_nothing_behind(shm_host) -> None:
    audio = _audio(2.0)  # 706 KB each way: above the threshold
    host_pid = shm_host.proc.pid

    def footprint(c: Client) -> tuple:
        gc.collect()
        assert _until(lambda: c.health()["shm"]["lent"] == 0)
        return (c.health()["shm"]["segments"], len(os.listdir(f"/proc/{host_pid}/fd")), _memfds("self"), _memfds(host_pid))

    with Client(shm_host.address) as c:
        first = None
        for i in range(2000):
            out = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 1}).audio
            if first is None:
                first = out.copy()
            elif i % 250 == 0:
                assert np.array_equal(out, first)  # a reused segment never shows another call's bytes
            if i == 100:
                assert c.shared_memory
                del out
                warm = footprint(c)
        del out
        assert footprint(c) == warm  # segments, the host's descriptors, mappings on both sides: none grew


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from modelhost.client import Client
    c = Client(sys.argv[1])
    audio = np.ones((2, 44100 * 10), np.float32) * 0.1
    held = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 2}).audio   # a host segment, held
    assert c.shared_memory
    job = c.submit("slow", audio=np.ones((1, 300000), np.float32) * 0.1, sample_rate=16000,
                   progress=lambda s, t: None)   # our segment, mapped by the host while the job runs
    while c.health()["jobs"]["running"] == 0:
        time.sleep(0.05)
    print(c._conn._pool.key, flush=True)
    time.sleep(600)
""")


def test_a_client_killed_with_segments_in_use_is_detached_and_nothing_stays_mapped(shm_host) -> None:
    host_pid = shm_host.proc.pid
    with Client(shm_host.address) as watcher:
        watcher.health()
        assert _until(lambda: watcher.shared_memory)
        before = watcher.health()["shm"]
        child = subprocess.Popen([sys.executable, "-c", CHILD, shm_host.address], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            key = child.stdout.readline().strip()
            assert key, "the child client did not start"
            during = watcher.health()["shm"]
            assert during["peers"] == before["peers"] + 1 and during["lent"] >= 1
            assert _memfds(host_pid, key) >= 1  # the host maps the child's request audio
            child.kill()
            child.wait(10)
            # the host sees the process gone, frees what it lent, cancels the silent client's job, unmaps its memory
            assert _until(lambda: watcher.health()["shm"]["peers"] == before["peers"])
            assert _until(lambda: watcher.health()["jobs"]["running"] == 0)
            assert _until(lambda: _memfds(host_pid, key) == 0), "the dead client's segment is still mapped in the host"
            assert watcher.health()["shm"]["lent"] == 0
        finally:
            child.kill()
        audio = _audio(5)
        out = watcher.generate("mix", audio=audio, sample_rate=44100, params={"seed": 3})
        assert out.audio.shape == audio.shape and watcher.shared_memory


def test_the_host_killed_with_segments_in_use_leaves_the_client_readable_then_a_new_host_works(tmp_path) -> None:
    devshm = set(os.listdir("/dev/shm"))
    first = start_host(CATALOG)
    try:
        with Client(first.address, liveness_s=1.5) as c:
            audio = _audio(10)
            held = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 4}).audio
            assert c.shared_memory
            kept = held.copy()
            host_key = c._conn._maps.key
            job = c.submit("slow", audio=audio, sample_rate=44100)  # in flight when the host dies
            time.sleep(0.3)
            first.proc.kill()
            first.proc.wait(10)
            with pytest.raises(HostDeadError):
                job.result()
            assert np.array_equal(held, kept)  # the result outlives its host: the memory is ours until dropped
            second = start_host(CATALOG, folder=first.log_path.parent, address=first.address)
            try:
                again = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 4}).audio
                assert np.array_equal(again, kept)
                assert _until(lambda: c.shared_memory)
                del held
                gc.collect()
                assert _memfds("self", host_key) == 0  # the dead host's segment is gone from this process
            finally:
                second.stop()
    finally:
        first.proc.kill()
    assert set(os.listdir("/dev/shm")) <= devshm  # memfds: nothing is ever left in /dev/shm


def test_an_old_client_speaking_version_1_gets_its_large_result_in_frames(shm_host) -> None:
    audio = _audio(10)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(shm_host.address)
    try:
        sock.send_multipart(wire.encode("generate", 7, {"model": "mix", "audio": audio, "sample_rate": 44100,
                                                         "params": {"seed": 6}}, version=1), copy=False)
        assert sock.poll(60_000)
        while True:
            frames = sock.recv_multipart(copy=False)
            msg = wire.decode(frames)
            if msg.kind != "progress":
                break
        assert msg.version == 1 and msg.kind == "result" and len(frames) == 2  # header + the audio as a frame
        with Client(shm_host.address) as c:
            new = c.generate("mix", audio=audio, sample_rate=44100, params={"seed": 6})
        assert np.array_equal(msg.body["audio"], new.audio)
    finally:
        sock.close(0)
        ctx.term()
