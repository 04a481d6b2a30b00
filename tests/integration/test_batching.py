"""Dynamic batching and activation admission through a real host with random-weight MusicGen/AudioGen.

Compatible unseeded requests share one audiocraft pass (``info["batch_rows"]``), each with its own
progress, result and cancel; a seeded request runs alone and its audio does not depend on what was
queued with it; a device too small for two requests' activations runs them one after the other.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E
from tests.support.launch import short_tmp, start_host

UNSEEDED = {"duration": 1.0, "top_k": 50, "seed": -1}


@pytest.fixture
def client(model_host):
    with Client(model_host.address) as c:
        yield c


def _blocker(client: Client, seconds: float = 1.5):
    """A seeded request (it runs alone) that keeps musicgen busy while the test queues others behind it."""
    return client.submit("musicgen", "a blocker", params={"duration": seconds, "seed": 5}, timeout_s=120)


def test_seeded_runs_alone_and_compatible_unseeded_requests_share_one_pass(client) -> None:
    alone = client.generate("musicgen", "a calm piano", params={"duration": 1.0, "top_k": 50, "seed": 77})
    blocker = _blocker(client)
    seeded = client.submit("musicgen", "a calm piano", params={"duration": 1.0, "top_k": 50, "seed": 77})
    progress: dict[int, list[tuple[int, int]]] = {i: [] for i in range(3)}
    rows = [client.submit("musicgen", f"prompt {i}", params=UNSEEDED, timeout_s=120,
                          progress=lambda s, t, i=i: progress[i].append((s, t))) for i in range(3)]
    other = client.submit("musicgen", "shorter", params={**UNSEEDED, "duration": 0.5})
    assert blocker.result().info["batch_rows"] == 1
    together = seeded.result()
    assert together.info["batch_rows"] == 1 and together.info["seed"] == 77
    np.testing.assert_array_equal(together.audio, alone.audio)  # as exact as with nothing queued beside it
    results = [r.result() for r in rows]
    assert [r.info["batch_rows"] for r in results] == [3, 3, 3]
    for i, r in enumerate(results):
        assert r.audio.shape == alone.audio.shape and np.isfinite(r.audio).all() and r.info["seed"] == -1
        steps = progress[i]
        assert steps and steps[-1][0] == steps[-1][1]  # each row hears its own progress, to the end
    assert not np.array_equal(results[0].audio, results[1].audio)  # rows are their own samples
    short = other.result()
    assert short.info["batch_rows"] == 1 and short.audio.shape[-1] < alone.audio.shape[-1] // 2 + 1280  # another key
    row = _musicgen(client)
    assert row["max_batch_size"] == 8 and row["activation_bytes_per_s"] > 0  # measured from the runs


def test_cancelling_one_row_answers_it_at_once_and_the_rest_of_its_batch_completes(client) -> None:
    params = {**UNSEEDED, "duration": 20.0}  # the catalog's longest: the batch runs for a while
    rows = [client.submit("musicgen", f"long {i}", params=params, timeout_s=120) for i in range(3)]
    deadline = time.monotonic() + 60
    while _musicgen(client)["batch_rows"] != 3:
        assert time.monotonic() < deadline, "the three requests never ran as one batch"
        time.sleep(0.005)
    rows[1].cancel()
    with pytest.raises(E.CancelledError):
        rows[1].result()
    row = _musicgen(client)
    assert row["batch_rows"] == 3 and row["running"] == 2  # answered while the other two still run
    done = [rows[0].result(), rows[2].result()]
    assert [r.info["batch_rows"] for r in done] == [3, 3]
    assert all(r.audio.shape[-1] == 20 * 32000 for r in done)
    assert _musicgen(client)["running"] == 0


def test_a_lone_request_waits_batch_window_ms_for_company(client) -> None:
    """audiogen's catalog entry (tests/conftest.py) sets batch_window_ms = 250: a request arriving 50 ms
    after another compatible one, to an idle model, still shares its pass."""
    first = client.submit("audiogen", "rain", params=UNSEEDED)
    time.sleep(0.05)
    second = client.submit("audiogen", "wind", params=UNSEEDED)
    assert [first.result().info["batch_rows"], second.result().info["batch_rows"]] == [2, 2]
    seeded = client.generate("audiogen", "rain", params={**UNSEEDED, "seed": 9})
    assert seeded.info["batch_rows"] == 1 and seeded.timings_ns["queue_ns"] < 0.2e9  # seeded: no wait for company


def test_a_batch_whose_parameters_are_refused_answers_every_row(client) -> None:
    blocker = _blocker(client, 1.0)
    bad = [client.submit("musicgen", f"bad {i}", params={**UNSEEDED, "top_k": 100000}) for i in range(2)]
    blocker.result()
    for job in bad:
        with pytest.raises(E.BadParamsError, match="top_k"):
            job.result()
    assert client.generate("musicgen", "after", params=UNSEEDED).info["batch_rows"] == 1


def _musicgen(client: Client) -> dict:
    return next(r for r in client.ps() if r["name"] == "musicgen")


def test_two_models_run_side_by_side_when_their_activations_fit(client) -> None:
    """The control for the test below: with room, musicgen and audiogen runs overlap."""
    a, b = _two_models(client)
    assert _overlap_s(a, b) > 0


@pytest.fixture(scope="module")
def tight_host(model_files):
    """musicgen and audiogen on a CPU budget with room for their weights and one request's activations."""
    files = [p for m in ("musicgen", "audiogen") for p in model_files[m].iterdir()]
    weights = sum(p.stat().st_size for p in files)
    activation = 256 * 2**20  # per second of audio per row: a floor well above what the tiny models measure
    h = start_host(f"""
        preload = ["musicgen", "audiogen"]
        [budget]
        cpu = {int(1.5 * weights + 1.5 * activation)}
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
        device = "cpu"
        activation = "256MiB"
        [models.audiogen]
        backend = "audiogen"
        checkpoint = "{model_files['audiogen']}"
        device = "cpu"
        activation = "256MiB"
    """, folder=short_tmp("mh-tight-"), timeout_s=300)
    yield h
    h.stop()


def test_requests_whose_activations_do_not_fit_together_queue_and_all_complete(tight_host) -> None:
    with Client(tight_host.address) as c:
        a, b = _two_models(c)
        assert _overlap_s(a, b) <= 0.02  # one waited for the other's activations to leave the device
        rows = [c.submit("musicgen", f"p{i}", params=UNSEEDED) for i in range(3)]
        assert [r.result().info["batch_rows"] for r in rows] == [1, 1, 1]  # a batch of two would not fit
        assert {r["name"]: r["state"] for r in c.ps()} == {"musicgen": "ready", "audiogen": "ready"}


def _two_models(client: Client):
    params = {"duration": 2.0, "seed": 9}  # seeded: each runs at once, never waiting in a batch window for company
    jobs = [client.submit(m, "rain", params=params, timeout_s=120) for m in ("musicgen", "audiogen")]
    return [j.result() for j in jobs]


def _overlap_s(a, b) -> float:
    """How long two results' runs overlapped, from the host's timings (their arrivals are ~1 ms apart)."""
    spans = [(r.timings_ns["queue_ns"], r.timings_ns["queue_ns"] + r.timings_ns["run_ns"]) for r in (a, b)]
    return (min(spans[0][1], spans[1][1]) - max(spans[0][0], spans[1][0])) / 1e9


@pytest.fixture(scope="module")
def batch_oom_host():
    h = start_host("""
        [models.slow]
        backend = "synth"
        width = 512
        depth = 4
        hop = 32
        [models.tight]
        backend = "tests.support.batch_oom_backend:BatchOomBackend"
        width = 512
        depth = 4
        hop = 32
    """, folder=short_tmp("mh-boom-"))
    yield h
    h.stop()


def test_a_batch_that_runs_out_of_memory_is_rerun_one_row_at_a_time(batch_oom_host) -> None:
    with Client(batch_oom_host.address) as c:
        blocker = c.submit("tight", params={"duration_s": 3.0, "seed": 3})  # seeded: alone
        rows = [c.submit("tight", f"row {i}", params={"duration_s": 0.2}) for i in range(3)]
        assert blocker.result().info["batch_rows"] == 1
        results = [r.result() for r in rows]  # the pass of three failed; each row then ran alone
        assert [r.info["batch_rows"] for r in results] == [1, 1, 1]
        assert all(r.audio.shape[-1] == round(0.2 * 32000) for r in results)
        models = {m["name"]: m for m in c.ps()}
        assert models["tight"]["details"]["batch_ooms"] == 1  # the three were tried as one pass first
        assert models["slow"]["max_batch_size"] == 1  # synth does not batch
