"""MusicGen, AudioGen and RVC voices in one real host, loaded from random-weight checkpoints written in
the formats users have (audiocraft folders, a fairseq HuBERT, RVC v2 .pth and faiss .index files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E


@pytest.fixture
def client(model_host):
    with Client(model_host.address) as c:
        yield c


def _sine(hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _voiced(hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """A voice-like tone (fundamental plus harmonics): harvest, made for speech, misreads pure sines."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.25 * sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 8))).astype(np.float32)


# ---- audiocraft ----

@pytest.mark.parametrize("family, cls_name", [("musicgen", "MusicGen"), ("audiogen", "AudioGen")])
def test_same_seed_gives_the_same_samples_as_audiocraft_in_process(client, model_files, family, cls_name) -> None:
    import torch
    import audiocraft.models

    params = {"duration": 1.0, "top_k": 50, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0}
    hosted = client.generate(family, "a calm piano melody", params={**params, "seed": 1234})
    model = getattr(audiocraft.models, cls_name).get_pretrained(str(model_files[family]), device="cpu")
    model.set_generation_params(**params)
    torch.manual_seed(1234)
    local = model.generate(["a calm piano melody"])[0].numpy()
    assert hosted.audio.dtype == np.float32 and hosted.audio.shape == local.shape
    np.testing.assert_array_equal(hosted.audio, local)
    assert hosted.sample_rate == model.sample_rate == {"musicgen": 32000, "audiogen": 16000}[family]
    assert hosted.info["seed"] == 1234


def test_random_seeds_are_reported_and_reproduce(client) -> None:
    first = client.generate("musicgen", "drums", params={"duration": 0.5, "seed": 0})
    seed = first.info["seed"]
    assert seed > 0
    again = client.generate("musicgen", "drums", params={"duration": 0.5, "seed": seed})
    np.testing.assert_array_equal(again.audio, first.audio)
    assert client.generate("musicgen", "drums", params={"duration": 0.5, "seed": -1}).info["seed"] == -1


def test_progress_and_tokens(client) -> None:
    events: list[tuple[int, int]] = []
    result = client.generate("musicgen", "x", params={"duration": 2.0, "return_tokens": True},
                             progress=lambda s, t: events.append((s, t)))
    steps = [s for s, _ in events]
    assert steps and steps == sorted(steps) and events[-1][0] == events[-1][1]
    tokens = result.info["tokens"]
    assert tokens.dtype == np.int32 and tokens.shape == (4, 50)  # 4 codebooks, 25 frames per second


@pytest.mark.parametrize("params, needle", [
    ({"duration": -1}, "duration must be a number in (0, 20]"),
    ({"duration": 21}, "duration must be a number in (0, 20]"),
    ({"top_k": -1}, "top_k must be an int in [0, 256]"),
    ({"top_p": 1.5}, "top_p"),
    ({"temperature": 0}, "temperature"),
    ({"topk": 5}, "unknown parameters for a musicgen model: ['topk']"),
    ({"seed": "x"}, "seed must be an int"),
])
def test_out_of_range_parameters_name_the_parameter(client, params, needle) -> None:
    with pytest.raises(E.BadParamsError) as info:
        client.generate("musicgen", "x", params=params)
    assert needle in str(info.value)


def test_melody_to_a_model_without_melody_support_is_refused(client) -> None:
    with pytest.raises(E.BadParamsError, match="takes no melody"):
        client.generate("musicgen", "x", audio=_sine(440), sample_rate=16000, params={"duration": 1.0})
    with pytest.raises(E.BadParamsError, match="takes no melody"):
        client.generate("audiogen", "x", audio=_sine(440), sample_rate=16000, params={"duration": 1.0})


# ---- RVC ----

def test_voice_converts_audio_to_int16_at_its_rate(client) -> None:
    result = client.generate("voices/alice", audio=_sine(220), sample_rate=16000, params={"f0_method": "pm"})
    assert result.audio.dtype == np.int16 and result.audio.ndim == 1
    assert result.sample_rate == 32000 and abs(result.audio.size - 32000) < 1000
    assert result.info["f0_method"] == "pm" and result.info["version"] == "v2"
    resampled = client.generate("voices/alice", audio=_sine(220), sample_rate=16000,
                                params={"f0_method": "pm", "resample_sr": 48000})
    assert resampled.sample_rate == 48000 and abs(resampled.audio.size - 48000) < 1500


@pytest.mark.parametrize("method", ["harvest", "pm"])
def test_pitch_is_never_served_from_another_request(client, method) -> None:
    # rvc-python caches harvest pitch by input path: a reused key returned stale pitch. Here each
    # request is its own, so 220 Hz and 440 Hz inputs (sent as int16 stereo at 44.1 kHz, like a WAV)
    # are heard as 220 and 440 Hz, in either order.
    def median_f0(hz: float) -> float:
        mono = (_voiced(hz, rate=44100) * 32767).astype(np.int16)
        audio = np.stack([mono, mono])
        return client.generate("voices/alice", audio=audio, sample_rate=44100, params={"f0_method": method}).info["f0_median_hz"]

    low, high, low_again = median_f0(220), median_f0(440), median_f0(220)
    assert abs(low - 220) < 11 and abs(high - 440) < 22 and abs(low_again - 220) < 11
    up = client.generate("voices/bob", audio=_voiced(220), sample_rate=16000, params={"f0_method": method, "f0_up_key": 12})
    assert abs(up.info["f0_median_hz"] - 440) < 22  # transposed by an octave


def test_two_voices_share_one_hubert(client) -> None:
    ps = {m["name"]: m for m in client.ps()}
    alice, bob = ps["voices/alice"], ps["voices/bob"]
    assert alice["state"] == bob["state"] == "ready"
    hubert = alice["details"]["shared"]["hubert"]
    assert hubert["holders"] == 2 and hubert == bob["details"]["shared"]["hubert"]
    assert hubert["bytes"] > 0
    # each voice is charged its own weights plus half of the one HuBERT
    assert alice["memory_bytes"] == alice["details"]["own_bytes"] + hubert["bytes"] // 2


@pytest.mark.parametrize("params, needle", [
    ({"f0_method": "rmvpe"}, "no rmvpe weights configured"),
    ({"f0_method": "yin"}, "f0_method must be one of pm, harvest, crepe, rmvpe"),
    ({"index_rate": 2}, "index_rate must be a number in [0, 1]"),
    ({"resample_sr": 8000}, "resample_sr must be 0"),
    ({"pitch": 3}, "unknown parameters for an rvc voice: ['pitch']"),
])
def test_voice_parameter_errors(client, params, needle) -> None:
    with pytest.raises(E.BadParamsError) as info:
        client.generate("voices/alice", audio=_sine(220), sample_rate=16000, params=params)
    assert needle in str(info.value)
    with pytest.raises(E.BadParamsError, match="send audio="):
        client.generate("voices/bob", "no audio")


def test_a_missing_voice_file_is_a_clear_load_error(client) -> None:
    with pytest.raises(E.LoadFailedError, match="missing.pth does not exist"):
        client.load("lost-voice")
    assert client.health()["models"]["voices/alice"] == "ready"


def test_all_families_resident_at_once_on_the_catalog_device(client) -> None:
    ps = {m["name"]: m for m in client.ps()}
    for name in ("musicgen", "audiogen", "voices/alice", "voices/bob"):
        assert ps[name]["state"] == "ready" and ps[name]["device"] == "cpu" and ps[name]["memory_bytes"] > 0


def test_nothing_is_written_into_site_packages(client) -> None:
    import rvc_python

    package = Path(rvc_python.__file__).parent

    def snapshot() -> dict[str, float]:
        return {str(p): p.stat().st_mtime for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}

    before = snapshot()
    client.generate("voices/bob", audio=_sine(300), sample_rate=16000, params={"f0_method": "harvest"})
    client.unload("voices/bob")
    client.load("voices/bob")
    assert snapshot() == before
    assert not (package / "base_model").exists()  # no downloaded weights
    assert os.environ.get("MODELHOST_NEVER_SET") is None
