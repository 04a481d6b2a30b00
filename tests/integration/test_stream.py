"""Streaming generation through a real host and the CLI: chunks arrive before the end and join into the exact
result; leaving early, a deadline or a bad interval stop it cleanly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest

from modelhost.client import CancelledError, Client, DeadlineExceededError
from modelhost.client.wavfile import read_wav
from modelhost.host.launch import ROOT


def test_seeded_stream_joins_into_the_non_streamed_result(model_host):
    with Client(model_host.address) as c:
        params = {"duration": 3, "seed": 11}
        job = c.stream("musicgen", "drums", params=params, interval_s=0.5)
        chunks = list(job)
        streamed = job.result()
        plain = c.generate("musicgen", "drums", params=params)
    assert len(chunks) >= 3
    assert [ch.seq for ch in chunks] == list(range(len(chunks)))
    assert chunks[0].offset == 0
    for a, b in zip(chunks, chunks[1:]):
        assert b.offset == a.offset + a.audio.shape[-1]
    assert np.array_equal(streamed.audio, plain.audio)
    joined = np.concatenate([ch.audio for ch in chunks], axis=-1)
    assert joined.shape == plain.audio.shape
    assert np.abs(joined - plain.audio).max() < 1e-5


def _idle(c: Client, timeout_s: float = 20.0) -> dict:
    """The host's job counts once nothing runs or waits (what a user sees in `modelhost health`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = c.health()["jobs"]
        if jobs == {"queued": 0, "running": 0} or time.monotonic() > deadline:
            return jobs
        time.sleep(0.05)


def test_leaving_a_stream_early_stops_the_generation_on_the_host(model_host):
    with Client(model_host.address) as c:
        job = c.stream("musicgen", "a long piece", params={"duration": 18, "seed": 3}, interval_s=0.5)
        first = next(iter(job))
        assert first.offset == 0 and first.audio.shape[-1] > 0
        job.close()
        with pytest.raises(CancelledError):
            job.result()
        assert _idle(c) == {"queued": 0, "running": 0}
        again = c.generate("musicgen", "after", params={"duration": 0.5, "seed": 4})  # the model still serves
        assert again.audio.shape[-1] > 0


def test_a_stream_past_its_deadline_raises_from_the_iteration_and_stops(model_host):
    with Client(model_host.address) as c:
        job = c.stream("musicgen", "too long", params={"duration": 18}, interval_s=0.5, timeout_s=0.4)
        with pytest.raises(DeadlineExceededError):
            for _ in job:
                pass
        assert _idle(c) == {"queued": 0, "running": 0}


def test_cli_generate_stream_writes_the_wav_as_it_arrives(model_host, tmp_path):
    out = tmp_path / "streamed.wav"
    done = subprocess.run([sys.executable, "-m", "modelhost.host", "generate", "musicgen", "drums", "--stream",
                           "--stream-interval", "0.5", "--param", "duration=3", "--param", "seed=11",
                           "-o", str(out), "--address", model_host.address],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    written, rate = read_wav(out)
    with Client(model_host.address) as c:
        plain = c.generate("musicgen", "drums", params={"duration": 3, "seed": 11})
    assert rate == plain.sample_rate
    assert written.shape == plain.audio.shape
    assert np.abs(written - plain.audio).max() <= 1.5 / 32767  # the same audio, as 16-bit PCM


def test_cli_stream_interval_must_be_positive(model_host, tmp_path):
    done = subprocess.run([sys.executable, "-m", "modelhost.host", "generate", "musicgen", "x", "--stream",
                           "--stream-interval", "0", "-o", str(tmp_path / "o.wav"), "--address", model_host.address],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--stream-interval must be" in done.stderr, done.stderr


def test_async_stream_gives_the_same_chunks_and_result(model_host):
    from modelhost.client import AsyncClient

    async def run():
        async with AsyncClient(model_host.address) as c:
            stream = c.stream("musicgen", "drums", params={"duration": 2, "seed": 5}, interval_s=0.5)
            chunks = [chunk async for chunk in stream]
            return chunks, stream.result

    chunks, result = asyncio.run(run())
    with Client(model_host.address) as c:
        plain = c.generate("musicgen", "drums", params={"duration": 2, "seed": 5})
    assert len(chunks) >= 2 and [ch.seq for ch in chunks] == list(range(len(chunks)))
    assert result is not None and np.array_equal(result.audio, plain.audio)
    assert np.abs(np.concatenate([ch.audio for ch in chunks], axis=-1) - plain.audio).max() < 1e-5
