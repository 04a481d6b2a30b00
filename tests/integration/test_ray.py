"""A host on Ray Serve (`serve --ray ADDRESS`): a real one-node Ray cluster on this machine (`ray start --head`),
real replicas running the same backends (synth, and a tiny MusicGen through audiocraft's builders), the same
clients. Requests from two clients spread over two replicas; progress, streaming and cancel pass through; a
replica killed mid-request is retried (nothing streamed yet) or ends with ``replica_lost`` (audio streamed);
a restarted front end finds its replicas warm."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'modelhost[ray]'")

from modelhost.client import CancelledError, Client  # noqa: E402
from modelhost.client.protocol.errors import ReplicaLostError  # noqa: E402
from modelhost.client.wavfile import read_wav  # noqa: E402
from tests.support.launch import short_tmp, start_host, start_ray_cluster  # noqa: E402
from tests.conftest import SLOW_MODEL  # noqa: E402


def _catalog(musicgen_checkpoint) -> str:
    return f"""
        [host]
        heartbeat_s = 0.25

        [models.synth]
        backend = "synth"
        width = 64

        [models.slow]
        {SLOW_MODEL}

        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{musicgen_checkpoint}"
        max_duration_s = 30

        [ray.models.synth]
        num_replicas = 2
        num_cpus = 0.25

        [ray.models.slow]
        num_cpus = 0.25

        [ray.models.musicgen]
        num_cpus = 0.25
    """


class Front:
    """The front end under test; ``restart`` replaces it with a new process on the same socket."""

    def __init__(self, cluster, catalog: str) -> None:
        self.cluster, self.catalog, self.folder = cluster, catalog, short_tmp()
        self.host = self._start()

    def _start(self):
        return start_host(self.catalog, folder=self.folder, args=("--ray", self.cluster.address), timeout_s=240)

    @property
    def address(self) -> str:
        return self.host.address

    def restart(self) -> float:
        assert self.host.stop() == 0
        started = time.monotonic()
        self.host = self._start()
        return time.monotonic() - started


@pytest.fixture(scope="module")
def ray_front(model_files):
    cluster = start_ray_cluster(num_cpus=4)
    try:
        front = Front(cluster, _catalog(model_files["musicgen"]))
        yield front
        front.host.stop()
    finally:
        cluster.stop()


def _replica_of(c: Client, model: str, other_than: str | None = None) -> dict:
    """The ps row a replica of ``model`` reported (with its replica id and pid), once the model is ready
    (on a replica other than ``other_than``)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        row = {r["name"]: r for r in c.ps()}[model]
        if row["state"] == "ready" and row.get("pid") and row.get("replica") != other_than:
            return row
        time.sleep(0.2)
    raise AssertionError(f"{model} has no ready replica: {row}")


def test_two_clients_spread_over_two_replicas_that_run_the_same_backend(ray_front):
    seen: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def client(offset: int) -> None:
        try:
            with Client(ray_front.address) as c:
                for i in range(8):
                    r = c.generate("synth", "tone", params={"duration_s": 1.0, "seed": offset + i})
                    assert r.audio.shape == (1, 32000)
                    seen.setdefault(r.info["replica"], []).append(offset + i)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert len(seen) == 2, f"all 16 requests went to {list(seen)}"
    with Client(ray_front.address) as c:  # the same seed gives the same audio on either replica
        by_replica: dict[str, np.ndarray] = {}
        for _ in range(40):
            r = c.generate("synth", "tone", params={"duration_s": 0.5, "seed": 7})
            by_replica.setdefault(r.info["replica"], r.audio)
            if len(by_replica) == 2:
                break
        first, second = by_replica.values()
        assert np.array_equal(first, second)
        row = {m["name"]: m for m in c.ps()}["synth"]
        assert row["replicas"] == 2 and row["ray"]["status"] == "RUNNING"
        health = c.health()
        assert health["ready"] and health["ray"]["deployments"]["synth"]["replica_states"] == {"RUNNING": 2}


def test_progress_and_streamed_chunks_come_through_the_ray_hop(ray_front):
    steps: list[tuple[int, int]] = []
    with Client(ray_front.address) as c:
        job = c.stream("musicgen", "drums", params={"duration": 3, "seed": 11}, interval_s=0.5,
                       progress=lambda step, total: steps.append((step, total)))
        chunks = list(job)
        result = job.result()
        plain = c.generate("musicgen", "drums", params={"duration": 3, "seed": 11})
    assert len(chunks) >= 3 and chunks[0].offset == 0
    joined = np.concatenate([ch.audio for ch in chunks], axis=-1)
    assert joined.shape == result.audio.shape
    assert np.abs(joined - result.audio).max() < 1e-5
    assert np.array_equal(result.audio, plain.audio)  # seeded: streamed or not, the same audio
    assert steps and steps[-1][0] == steps[-1][1]


def test_a_cancelled_request_stops_in_its_replica(ray_front):
    with Client(ray_front.address) as c:
        job = c.submit("slow", params={"duration_s": 600.0})
        time.sleep(1.0)
        job.cancel()
        with pytest.raises(CancelledError):
            job.result()
        started = time.monotonic()
        short = c.generate("slow", params={"duration_s": 1.0}, timeout_s=60)  # slow has one replica, one row at a time
        assert short.audio.shape[-1] == 32000
        assert time.monotonic() - started < 30  # the 600 s job no longer holds the replica


def test_a_deadline_ends_the_request_and_its_job_in_the_replica(ray_front):
    from modelhost.client import DeadlineExceededError

    with Client(ray_front.address) as c:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            c.generate("slow", params={"duration_s": 600.0}, timeout_s=2.0)
        assert time.monotonic() - started < 20
        short = c.generate("slow", params={"duration_s": 1.0}, timeout_s=60)
        assert short.audio.shape[-1] == 32000
        assert time.monotonic() - started < 40  # the 600 s job did not keep the replica


def test_a_client_killed_mid_request_frees_its_replica(ray_front):
    import subprocess
    import sys

    script = ("import sys; from modelhost.client import Client\n"
              "c = Client(sys.argv[1])\n"
              "job = c.submit('slow', params={'duration_s': 600.0}, progress=lambda s, t: print('running', flush=True))\n"
              "job.result()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, ray_front.address], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
    finally:
        proc.kill()
        proc.wait()
    started = time.monotonic()
    with Client(ray_front.address) as c:
        assert c.generate("slow", params={"duration_s": 1.0}, timeout_s=120).audio.shape[-1] == 32000
    assert time.monotonic() - started < 40  # the host noticed the silent client and stopped its job in the replica


def test_a_replica_killed_before_any_audio_is_retried_on_a_new_one(ray_front):
    with Client(ray_front.address) as c:
        victim = _replica_of(c, "slow")
        ran, outcome = threading.Event(), []
        job = c.submit("slow", params={"duration_s": 20.0}, progress=lambda step, total: ran.set(), timeout_s=180)
        waiter = threading.Thread(target=lambda: outcome.append(job.result()))  # progress callbacks run in the waiter
        waiter.start()
        assert ran.wait(60)  # it runs in the replica
        os.kill(victim["pid"], signal.SIGKILL)
        waiter.join(180)
        result = outcome[0]
        assert result.audio.shape[-1] == 20 * 32000
        assert result.info["replica"] != victim["replica"]  # Serve replaced it; the request ran once more there


def test_a_replica_killed_mid_stream_ends_the_stream_with_replica_lost(ray_front):
    with Client(ray_front.address) as c:
        victim = _replica_of(c, "musicgen")
        job = c.stream("musicgen", "drums", params={"duration": 30}, interval_s=0.5, timeout_s=180)
        started = None
        with pytest.raises(ReplicaLostError, match="died during this request"):
            for _chunk in job:
                if started is None:
                    os.kill(victim["pid"], signal.SIGKILL)
                    started = time.monotonic()
        assert time.monotonic() - started < 30  # a clear error soon after, never a hang
        _replica_of(c, "musicgen", other_than=victim["replica"])  # Ray brings up a new one
        assert c.generate("musicgen", "drums", params={"duration": 1}).audio.size > 0


def test_a_restarted_front_end_finds_its_replicas_warm(ray_front):
    with Client(ray_front.address) as c:
        before = {c.generate("synth", params={"duration_s": 0.2}).info["replica"] for _ in range(12)}
    took_s = ray_front.restart()
    assert "keeping the running deployment" in ray_front.host.log()
    with Client(ray_front.address) as c:
        after = {c.generate("synth", params={"duration_s": 0.2}).info["replica"] for _ in range(12)}
    assert after <= before  # the same replica processes: nothing was redeployed or reloaded
    assert took_s < 120


def test_cli_health_ps_and_a_streamed_generate_through_ray(ray_front, tmp_path):
    import subprocess
    import sys

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "modelhost.host", *args, "--address", ray_front.address],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"ray at {ray_front.cluster.address}: synth running x2, slow running x1, musicgen running x1" in cli("health")
    table = cli("ps").splitlines()
    assert table[0].split()[-1] == "REPLICAS"
    synth = next(line.split() for line in table if line.startswith("synth "))
    assert synth[2] == "ready" and synth[7].startswith("cpu@") and synth[-1] == "2"
    out = tmp_path / "drums.wav"
    cli("generate", "musicgen", "drums", "--param", "duration=2", "--stream", "--quiet", "-o", str(out))
    audio, rate = read_wav(out)
    assert audio.shape[-1] / rate == pytest.approx(2.0, abs=0.05)


def test_a_model_that_cannot_load_fails_with_why_and_the_others_serve(ray_front):
    from modelhost.client.protocol.errors import LoadFailedError

    host = start_host("""
        [models.tone]
        backend = "synth"
        width = 32
        [models.broken]
        backend = "synth"
        checkpoint = "/nonexistent/voice.pt"
        [ray.models.tone]
        num_cpus = 0.1
        [ray.models.broken]
        num_cpus = 0.1
    """, folder=short_tmp(), args=("--ray", ray_front.cluster.address), wait_ready=False)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not host.socket_path.exists():  # it binds once Ray answers
            assert host.proc.poll() is None, host.log()
            time.sleep(0.2)
        with Client(host.address) as c:
            while time.monotonic() < deadline and "broken" not in c.health()["failed"]:
                time.sleep(0.5)
            health = c.health()
            assert "/nonexistent/voice.pt" in health["failed"]["broken"] and not health["ready"]
            with pytest.raises(LoadFailedError, match="broken is not running on Ray"):
                c.generate("broken", params={"duration_s": 0.1})
            assert c.generate("tone", params={"duration_s": 0.1}).audio.size > 0
    finally:
        host.stop()


def test_the_light_ui_works_unchanged_against_a_ray_host(ray_front, tmp_path):
    from tests.support.light_ui import PY310, LightUI

    if not PY310.exists():
        pytest.skip("no .venv-py310 (Python 3.10 + Gradio, the WebUI side): the README's test command creates it")
    import soundfile

    ui = LightUI(ray_front.address, tmp_path, webui_root=tmp_path)  # results are saved under tmp_path/outputs
    try:
        ui.wait_ready()
        audio, metadata, _folder = ui.client().predict(
            melody=None, model_name="musicgen", seed=5, text="drums", duration=1, topk=250, topp=0, temperature=1,
            cfg_coef=3, use_multi_band_diffusion=False, api_name="/musicgen")  # React's /musicgen payload
    finally:
        ui.stop()
    wav, rate = soundfile.read(audio)
    assert len(wav) / rate == pytest.approx(1.0, abs=0.05)
    assert metadata["model_name"] == "musicgen" and str(metadata["seed"]) == "5"


def test_serve_ray_without_an_address_runs_a_local_ray_that_ends_with_the_host():
    host = start_host('[models.tone]\nbackend = "synth"\nwidth = 32\n[ray.models.tone]\nnum_cpus = 0.5\n',
                      folder=short_tmp(), args=("--ray",), timeout_s=240)
    try:
        with Client(host.address) as c:
            assert c.generate("tone", params={"duration_s": 0.5}).audio.shape == (1, 16000)
            replica = _replica_of(c, "tone")
            assert c.health()["ray"]["address"] == "local"
    finally:
        assert host.stop() == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{replica['pid']}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{replica['pid']}")  # the replica went with the host's local Ray
