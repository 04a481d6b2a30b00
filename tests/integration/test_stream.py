"""Streaming generation through a real host and the CLI: chunks arrive before the end and join into the exact
result, which is audiocraft's own in-process audio for the seed; leaving early, a deadline, a killed client or a
bad interval stop it cleanly."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from modelhost.client import CancelledError, Client, DeadlineExceededError
from modelhost.client.wavfile import read_wav
from tests.support.launch import ROOT, start_host


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


@pytest.mark.parametrize("family, cls_name", [("musicgen", "MusicGen"), ("audiogen", "AudioGen")])
def test_a_seeded_streams_result_is_audiocrafts_in_process_audio(model_host, model_files, family, cls_name):
    import audiocraft.models
    import torch

    params = {"duration": 3.0, "top_k": 50, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0}
    with Client(model_host.address) as c:
        job = c.stream(family, "rain on a tin roof", params={**params, "seed": 1234}, interval_s=0.5)
        chunks = list(job)
        streamed = job.result()
    # the same checkpoint through audiocraft's own loader, generated the way the host's backend calls it
    # (host/backends/musicgen.py) after seeding the way the host seeds (host/backends/rng.py: torch, numpy, random)
    model = getattr(audiocraft.models, cls_name).get_pretrained(str(model_files[family]), device="cpu")
    model.set_generation_params(**params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        np.random.seed(1234)
        random.seed(1234)
        wav, _ = model.generate(["rain on a tin roof"], progress=True, return_tokens=True)
    local = wav[0].float().numpy()
    assert len(chunks) >= 3  # streamed, not one chunk at the end
    assert streamed.audio.dtype == np.float32 and streamed.audio.shape == local.shape
    np.testing.assert_array_equal(streamed.audio, local)
    assert np.abs(np.concatenate([ch.audio for ch in chunks], axis=-1) - local).max() < 1e-5


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
    assert done.stderr.count("\n") == 1 and "argument --stream-interval: must be a number of seconds from 0.1" in done.stderr, done.stderr


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


# A client process that streams until it is killed: it says when the first chunk is in.
_STREAMING_CLIENT = """
import sys
from modelhost.client import Client
c = Client(sys.argv[1], heartbeat_s=0.25)
for chunk in c.stream("musicgen", "a long piece", params={"duration": 18, "seed": 3}, interval_s=0.5):
    print("chunk", chunk.seq, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _generate_outcomes(port: int) -> dict[str, float]:
    """modelhost_requests_total for musicgen's generate requests, by outcome (the host's /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "modelhost_requests")
    return {s.labels["outcome"]: s.value for s in family.samples if s.name == "modelhost_requests_total"
            and s.labels.get("model") == "musicgen" and s.labels.get("kind") == "generate"}


def test_a_client_killed_mid_stream_stops_the_generation_and_the_model_keeps_serving(model_files):
    liveness_s = 2.0
    port = _free_port()
    h = start_host(f"""
        preload = ["musicgen"]
        [host]
        heartbeat_s = 0.25
        client_liveness_s = {liveness_s}
        metrics = "127.0.0.1:{port}"
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
    """, timeout_s=300)
    try:
        client = subprocess.Popen([sys.executable, "-c", _STREAMING_CLIENT, h.address], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None and client.stdout.readline().startswith("chunk 0")
        finally:
            client.kill()  # SIGKILL: no cancel, no goodbye; only its heartbeats stop
            client.wait()
        killed = time.monotonic()
        with Client(h.address) as c:  # 18 s of audio in 0.5 s chunks takes minutes here: it was still generating
            jobs = _idle(c, timeout_s=30)
            stopped_after_s = time.monotonic() - killed
            assert jobs == {"queued": 0, "running": 0}
            # its process is seen gone on the next tick, no wait for the liveness window: well under a second on an
            # idle machine; the bound leaves room for stopping a generation on a loaded 2-core machine
            assert stopped_after_s < liveness_s + 3.0
            deadline = time.monotonic() + 10
            while _generate_outcomes(port).get("cancelled") != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _generate_outcomes(port) == {"cancelled": 1}  # it ended as cancelled, never as a result
            again = c.generate("musicgen", "after", params={"duration": 0.5, "seed": 4})  # the model still serves
        assert again.audio.shape[-1] > 0
        assert _generate_outcomes(port) == {"cancelled": 1, "result": 1}
    finally:
        h.stop()
