"""Shared fixtures: real host daemons in subprocesses on temp ipc:// sockets, real checkpoint files.

One session-wide host (``host``) serves most integration tests; tests that kill or stop a host
start their own with ``start_host``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked gpu need a CUDA device; on a CPU-only machine they are skipped, saying so."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here): the warm CPU tier exists only beside a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

from tests.support.launch import ROOT, HostProcess, short_tmp, start_host, wait_until_ready  # noqa: F401 (re-exported for tests)

# A model that computes ~0.1 s per second of audio here: duration_s sets how long it runs.
SLOW_MODEL = 'backend = "synth"\nwidth = 512\ndepth = 4\nhop = 32'


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    return short_tmp()


@pytest.fixture(scope="session")
def synth_checkpoint(checkpoint_dir: Path) -> Path:
    """A real synth checkpoint file, written through the backend's own save path."""
    from modelhost.host.backends.synth import save_checkpoint

    return save_checkpoint(checkpoint_dir / "synth.pt", {"width": 96, "depth": 2, "hop": 320}, init_seed=11)


@pytest.fixture(scope="session")
def host(synth_checkpoint: Path):
    """The shared host: a checkpoint-backed model, a stereo one, a slow one, and one that cannot load."""
    h = start_host(f"""
        preload = ["synth", "stereo"]

        [host]
        heartbeat_s = 0.25
        client_liveness_s = 2

        [models.synth]
        backend = "synth"
        checkpoint = "{synth_checkpoint}"

        [models.stereo]
        backend = "synth"
        width = 64
        channels = 2

        [models.slow]
        {SLOW_MODEL}

        [models.broken]
        backend = "synth"
        checkpoint = "/nonexistent/voice.pt"
    """)
    yield h
    h.stop()


@pytest.fixture(scope="session")
def model_files() -> dict[str, Path]:
    """Checkpoints written once per session through host.random_weights (the libraries' own classes)."""
    from modelhost.host import random_weights as weights

    root = short_tmp("mh-models-")
    voices = root / "voices"
    files = {
        "musicgen": weights.write_audiocraft(root / "musicgen", "musicgen", seed=1),
        "audiogen": weights.write_audiocraft(root / "audiogen", "audiogen", seed=2),
        "hubert": weights.write_hubert(root / "hubert_base.pt"),
        "alice": weights.write_rvc_voice(voices / "alice.pth", seed=3),
        "alice_index": weights.write_faiss_index(voices / "added_IVF8_Flat_nprobe_1_alice_v2.index"),
        "bob": weights.write_rvc_voice(voices / "bob.pth", seed=4),
    }
    files["voices"] = voices
    return files


@pytest.fixture(scope="session")
def model_host(model_files):
    h = start_host(f"""
        preload = ["musicgen", "audiogen", "voices"]

        [host]
        heartbeat_s = 0.25

        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
        max_duration_s = 20

        [models.audiogen]
        backend = "audiogen"
        checkpoint = "{model_files['audiogen']}"
        device = "cpu"
        batch_window_ms = 250

        [models.voices]
        backend = "rvc"
        folder = "{model_files['voices']}"
        hubert = "{model_files['hubert']}"

        [models.lost-voice]
        backend = "rvc"
        model = "{model_files['voices']}/missing.pth"
        hubert = "{model_files['hubert']}"
    """, timeout_s=300)
    yield h
    h.stop()


@pytest.fixture(scope="session")
def webui_tree():
    """A TTS-WebUI-shaped tree and its Hugging Face cache with random weights (tests/support/webui_tree.py),
    built once per session; tests must not change it (copy what they alter)."""
    from tests.support.webui_tree import build_webui_tree

    return build_webui_tree(short_tmp("mh-webui-"))
