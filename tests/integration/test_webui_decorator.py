"""The TTS-WebUI decorator extension, loaded and applied the way TTS-WebUI does, against a real host.

TTS-WebUI imports ``{package}.main``, takes every name starting with ``decorator_``, reverses the
list and applies each to functions with the signatures below; the UI calls them with keywords only,
``_type`` and ``seed`` among them. The undecorated functions here stand for the WebUI's in-process
model calls: they record that they ran, which a forwarded call must never do.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.wavfile import write_wav
from tests.conftest import ROOT

PY310 = ROOT / ".venv-py310" / "bin" / "python"
MUSICGEN_KW = dict(text="a calm beat", melody=None, duration=1.0, topk=250, topp=0.0, temperature=1.0, cfg_coef=3.0,
                   use_multi_band_diffusion=False)
RVC_KW = dict(pitch_up_key="0", index_path="added_IVF8_Flat_nprobe_1_alice_v2", pitch_collection_method="pm",
              model_path="alice", index_rate=0.66, filter_radius=3, resample_sr=0, rms_mix_rate=1, protect=0.33)


def tts_webui_inner_decorator():
    """What tts_webui.extensions_loader.decorator_extensions builds from this package."""
    module = importlib.import_module("webui_adapter.main")
    wrappers = [getattr(module, n) for n in dir(module) if n.startswith("decorator_")]
    wrappers.reverse()

    def decorator(fn):
        for wrapper in wrappers:
            fn = wrapper(fn)
        return fn

    return decorator


class WebUI:
    """The WebUI's own generation functions (TTS-WebUI's signatures), decorated; ``local_calls`` counts local runs."""

    def __init__(self) -> None:
        self.local_calls: list[str] = []
        inner = tts_webui_inner_decorator()

        @inner
        def generate(text, melody, model_name, duration, topk, topp, temperature, cfg_coef, use_multi_band_diffusion, **kwargs):
            self.local_calls.append("musicgen")
            return {"audio_out": (1, np.zeros(1, np.float32)), "tokens": None, "local": True}

        @inner
        def run_rvc(pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path, index_rate,
                    filter_radius, resample_sr, rms_mix_rate, protect, **kwargs):
            self.local_calls.append("rvc")
            return {"audio_out": (1, np.zeros(1, np.int16)), "local": True}

        @inner
        def bark(text, **kwargs):
            self.local_calls.append("bark")
            return {"audio_out": (24000, np.ones(3, np.float32)), "text": text}

        self.generate, self.run_rvc, self.bark = generate, run_rvc, bark


@pytest.fixture
def webui(model_host, monkeypatch):
    """A fresh WebUI process's view: settings from the environment, no forwarder yet."""
    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_ADDRESS", model_host.address)
    monkeypatch.delenv("MODELHOST_WEBUI_FALLBACK", raising=False)
    monkeypatch.delenv("MODELHOST_WEBUI_MODELS", raising=False)
    monkeypatch.setattr(ext, "_FORWARDER", None)
    yield WebUI()
    if ext._FORWARDER is not None:
        ext._FORWARDER.close()


@pytest.fixture(scope="module")
def voice_input(tmp_path_factory):
    """A harmonic tone (pitch trackers misread pure sines), stereo 44.1 kHz, as a user's upload might be."""
    t = np.arange(44100) / 44100
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6)) * 0.2
    return write_wav(tmp_path_factory.mktemp("voice") / "in.wav", np.stack([tone, tone]).astype(np.float32), 44100)


def test_musicgen_calls_run_on_the_host_in_the_webuis_shapes(webui, model_host) -> None:
    steps = []
    out = webui.generate(**MUSICGEN_KW, model_name="musicgen", seed=123, _type="musicgen", date="2026-11-24",
                         progress=lambda p, desc=None: steps.append(p))
    assert webui.local_calls == []
    rate, audio = out["audio_out"]
    assert type(rate) is int and rate == 32000
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.shape == (32000,)
    tokens = out["tokens"]  # what decorator_save_musicgen_npz saves with tokens.cpu().numpy()
    assert type(tokens).__module__ == "torch" and tokens.ndim == 3 and tokens.shape[0] == 1
    assert tokens.cpu().numpy().dtype == np.int64
    assert steps and steps[-1][0] == steps[-1][1]  # the host's progress reached the call's progress display
    with Client(model_host.address) as c:  # the seed went along: the host alone gives the same samples
        direct = c.generate("musicgen", "a calm beat", params={"duration": 1.0, "seed": 123})
    np.testing.assert_array_equal(direct.audio[0], audio)


def test_audiogen_is_chosen_by_name_and_returns_no_tokens(webui) -> None:
    out = webui.generate(**MUSICGEN_KW, model_name="audiogen", seed=5, _type="musicgen")
    rate, audio = out["audio_out"]
    assert (rate, audio.dtype, audio.shape, out["tokens"]) == (16000, np.float32, (16000,), None)
    assert webui.local_calls == []


def test_webui_hub_names_reach_the_host_model_they_are_mapped_to(webui, monkeypatch) -> None:
    monkeypatch.setenv("MODELHOST_WEBUI_MODELS", "facebook/musicgen-small=musicgen")
    out = webui.generate(**MUSICGEN_KW, model_name="facebook/musicgen-small", seed=1, _type="musicgen")
    assert out["audio_out"][1].shape == (32000,) and webui.local_calls == []


def test_rvc_reads_the_webuis_file_and_returns_int16(webui, voice_input) -> None:
    out = webui.run_rvc(**RVC_KW, original_audio_path=str(voice_input), _type="rvc", seed=7)
    rate, audio = out["audio_out"]
    assert webui.local_calls == [] and set(out) == {"audio_out"}
    assert type(rate) is int and audio.dtype == np.int16 and audio.ndim == 1
    assert abs(audio.shape[0] / rate - 1.0) < 0.05  # one second in, one second out, at the voice's rate
    assert np.abs(audio).max() > 0


def test_positional_arguments_bind_to_the_webuis_parameter_order(webui, voice_input) -> None:
    args = [RVC_KW["pitch_up_key"], str(voice_input), *[RVC_KW[k] for k in
            ("index_path", "pitch_collection_method", "model_path", "index_rate", "filter_radius", "resample_sr",
             "rms_mix_rate", "protect")]]
    out = webui.run_rvc(*args, _type="rvc")
    assert out["audio_out"][1].dtype == np.int16 and webui.local_calls == []


def test_other_calls_pass_straight_through(webui) -> None:
    out = webui.bark(text="hello", _type="bark", seed=3)
    assert webui.local_calls == ["bark"] and out["text"] == "hello" and out["audio_out"][1].tolist() == [1, 1, 1]
    assert webui.bark(text="no type")["text"] == "no type"


def test_bad_input_and_unserved_models_fail_clearly_and_the_host_keeps_serving(webui, voice_input, model_host) -> None:
    with pytest.raises(Exception, match="pitch_up_key must be a whole number of semitones"):
        webui.run_rvc(**{**RVC_KW, "pitch_up_key": "an octave"}, original_audio_path=str(voice_input), _type="rvc")
    with pytest.raises(Exception, match=r"f0_method must be one of pm, harvest, crepe, rmvpe, got 'fcpe' \[bad_params\]"):
        webui.run_rvc(**{**RVC_KW, "pitch_collection_method": "fcpe"}, original_audio_path=str(voice_input), _type="rvc")
    with pytest.raises(Exception, match="serves no musicgen/audiogen model for 'facebook/musicgen-large'"):
        webui.generate(**MUSICGEN_KW, model_name="facebook/musicgen-large", _type="musicgen")
    assert webui.local_calls == []
    with Client(model_host.address) as c:
        assert c.health()["ready"]


def test_host_down_says_how_to_start_it_or_falls_back_when_configured(webui, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MODELHOST_ADDRESS", f"ipc://{tmp_path}/nobody.sock")
    with pytest.raises(Exception) as err:
        webui.generate(**MUSICGEN_KW, model_name="musicgen", _type="musicgen")
    assert "no host answers" in str(err.value) and "modelhost serve" in str(err.value)
    assert "MODELHOST_WEBUI_FALLBACK=local" in str(err.value) and webui.local_calls == []

    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_WEBUI_FALLBACK", "local")
    monkeypatch.setattr(ext, "_FORWARDER", None)
    out = webui.generate(**MUSICGEN_KW, model_name="musicgen", _type="musicgen")
    assert out["local"] and webui.local_calls == ["musicgen"]


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (the WebUI side, with Gradio): the README's test command creates it")
def test_inside_gradio_errors_reach_the_ui_as_gr_error(tmp_path) -> None:
    code = ("import gradio, webui_adapter.main as m\n"
            "f = m.decorator_modelhost(lambda **kw: 'local')\n"
            "try:\n    f(text='x', model_name='musicgen', _type='musicgen')\n"
            "except gradio.Error as e:\n    print('gr.Error:', e)\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MODELHOST_ADDRESS": f"ipc://{tmp_path}/none.sock"}
    done = subprocess.run([str(PY310), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gr.Error: ") and "modelhost serve" in done.stdout


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310: the README's test command creates it")
def test_the_extension_imports_on_python_3_10_without_torch_or_sockets() -> None:
    code = ("import sys, webui_adapter.main as m; assert sys.version_info[:2] == (3, 10); "
            "print(m.extension__tts_generation_webui()['extension_class'], "
            "sorted(x for x in ('torch', 'gradio', 'host') if x in sys.modules), m._FORWARDER)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(PY310), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inner [] None"


def test_the_registration_snippet_is_what_tts_webui_reads() -> None:
    import json

    snippet = json.loads((ROOT / "webui_adapter" / "extensions.external.json").read_text())
    entry = snippet["decorators"][0]
    assert entry["package_name"] == "webui_adapter" and importlib.import_module(f"{entry['package_name']}.main")
    assert (entry["extension_type"], entry["extension_class"]) == ("decorator", "inner")
    assert sys.modules["webui_adapter.main"].extension__tts_generation_webui() == entry
