"""The TTS-WebUI decorator extension, called the way TTS-WebUI calls it, against a real host.

The WebUI side is ``tests/support/webui_calls.py`` (an imitation of the real call chains, checked
against their code): keyword-only calls with the UI's values, ``outputs`` and ``_type``, MusicGen's
seed as a string, RVC's ``text`` and no seed; date, file name and the WAV written after the call.
The host names its models the way a host started with ``--webui`` does: the WebUI's own names
(hub ids, a voice one folder deep), nothing mapped. No test configures a name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.wavfile import write_wav
from tests.conftest import ROOT, start_host
from tests.support.stereo_musicgen import write_stereo_musicgen
from tests.support.webui_calls import MUSICGEN_OUTPUTS, WebUI
from webui_adapter import progress

PY310 = ROOT / ".venv-py310" / "bin" / "python"
# The keys of TTS-WebUI's example_extension (extensions.json at 8c9046b; the custom installer's REQUIRED_KEYS).
EXAMPLE_EXTENSION_KEYS = {"package_name", "name", "requirements", "description", "extension_type", "extension_class",
                          "author", "extension_author", "license", "website", "extension_website",
                          "extension_platform_version"}
ALICE_INDEX = "singers/added_IVF8_Flat_nprobe_1_alice_v2"


@pytest.fixture(scope="module")
def webui_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tts-webui")


@pytest.fixture(scope="module")
def webui_host(model_files, webui_root, tmp_path_factory):
    """A host whose catalog names models as a WebUI does, plus one local folder under a name of its own."""
    stereo = write_stereo_musicgen(tmp_path_factory.mktemp("stereo") / "musicgen-stereo-small", seed=5)
    folder = webui_root / "data" / "models" / "musicgen_audiogen" / "myft"
    folder.mkdir(parents=True)
    for f in ("state_dict.bin", "compression_state_dict.bin"):
        os.link(model_files["musicgen"] / f, folder / f)
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25

        [models."facebook/musicgen-small"]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
        max_duration_s = 20

        [models."facebook/audiogen-medium"]
        backend = "audiogen"
        checkpoint = "{model_files['audiogen']}"

        [models."facebook/musicgen-stereo-small"]
        backend = "musicgen"
        checkpoint = "{stereo}"

        [models.my-finetune]
        backend = "musicgen"
        checkpoint = "{folder}"

        [models."singers/alice"]
        backend = "rvc"
        model = "{model_files['alice']}"
        index = "{model_files['alice_index']}"
        hubert = "{model_files['hubert']}"

        [models."bob/bob"]
        backend = "rvc"
        model = "{model_files['bob']}"
        hubert = "{model_files['hubert']}"
    """, timeout_s=300)
    yield h
    h.stop()


@pytest.fixture
def webui(webui_host, webui_root, monkeypatch):
    """A fresh WebUI process's view: settings from the environment, no forwarder yet."""
    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_ADDRESS", webui_host.address)
    for name in ("MODELHOST_WEBUI_FALLBACK", "MODELHOST_WEBUI_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ext, "_FORWARDER", None)
    yield WebUI(webui_root)
    if ext._FORWARDER is not None:
        ext._FORWARDER.close()


@pytest.fixture(scope="module")
def voice_input(tmp_path_factory):
    """A harmonic tone (pitch trackers misread pure sines), stereo 44.1 kHz, as a user's upload might be."""
    t = np.arange(44100) / 44100
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6)) * 0.2
    return write_wav(tmp_path_factory.mktemp("voice") / "in.wav", np.stack([tone, tone]).astype(np.float32), 44100)


def _hits(address: str, name: str) -> int:
    with Client(address) as c:
        return next(m["hits"] for m in c.ps() if m["name"] == name)


def test_musicgen_by_the_webuis_hub_id_runs_on_the_host(webui, webui_host, webui_root, capsys) -> None:
    out = webui.musicgen(text="a calm beat", model_name="facebook/musicgen-small", duration=1, seed="123")
    assert webui.local_calls == []
    seen = webui.inner_kwargs[-1]  # what the WebUI handed the inner decorator: keywords, a string seed, no progress
    assert (seen["_type"], seen["seed"], seen["outputs"]) == ("musicgen", "123", MUSICGEN_OUTPUTS) and "progress" not in seen
    rate, audio = out["audio_out"]
    assert type(rate) is int and rate == 32000
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.shape == (32000,)
    tokens = out["tokens"]  # decorator_save_musicgen_npz calls tokens.cpu().numpy()
    assert type(tokens).__module__ == "torch" and tokens.ndim == 3 and tokens.shape[0] == 1
    saved = webui_root / out["folder_root"] / f"{out['filename']}.wav"
    assert saved.is_file() and out["filename"].endswith("__musicgen__a_calm_beat")
    assert (webui_root / out["folder_root"] / f"{out['filename']}.npz").is_file()
    # no Gradio event here: progress on the console, as audiocraft prints it ("\r    13 /     28"), to the last step
    assert re.search(r"\r +(\d+) / +\1\n$", capsys.readouterr().out)
    with Client(webui_host.address) as c:  # the WebUI's seed went along: the host alone gives the same samples
        direct = c.generate("facebook/musicgen-small", "a calm beat", params={"duration": 1.0, "seed": 123})
    np.testing.assert_array_equal(direct.audio[0], audio)


def test_a_webui_model_folder_reaches_the_host_model_built_from_it(webui, webui_host, webui_root) -> None:
    folder = str(webui_root / "data" / "models" / "musicgen_audiogen" / "myft")  # the absolute path the WebUI sends
    before = _hits(webui_host.address, "my-finetune")
    out = webui.musicgen(text="fine tuned", model_name=folder, duration=0.5, seed="7")
    assert out["audio_out"][1].shape == (15360,) and webui.local_calls == []  # 0.5 s = 12 frames of 1280 samples
    assert _hits(webui_host.address, "my-finetune") == before + 1


def test_audiogen_by_its_hub_id_returns_no_tokens_and_skips_diffusion(webui) -> None:
    out = webui.musicgen(text="rain", model_name="facebook/audiogen-medium", duration=1, seed="5",
                         use_multi_band_diffusion=True)  # the WebUI skips diffusion for AudioGen; so does the host call
    rate, audio = out["audio_out"]
    assert (rate, audio.dtype, audio.shape, out["tokens"]) == (16000, np.float32, (16000,), None)
    assert webui.local_calls == []


def test_a_stereo_model_returns_samples_by_two_channels(webui, webui_root) -> None:
    out = webui.musicgen(text="wide", model_name="facebook/musicgen-stereo-small", duration=0.5, seed="3")
    rate, audio = out["audio_out"]
    assert (rate, audio.shape, audio.dtype) == (32000, (15360, 2), np.float32)
    assert not np.array_equal(audio[:, 0], audio[:, 1])  # two real channels, not one copied
    from scipy.io import wavfile

    assert wavfile.read(webui_root / out["folder_root"] / f"{out['filename']}.wav")[1].shape == (15360, 2)


def test_a_melody_goes_only_to_melody_models_as_in_the_webui(webui) -> None:
    melody = (44100, (np.sin(np.arange(44100 * 2) / 20)[:, None] * [8000, 4000]).astype(np.int16))  # Gradio's (T, C) int16
    plain = webui.musicgen(text="tune", model_name="facebook/musicgen-small", duration=0.5, seed="11")
    with_melody = webui.musicgen(text="tune", model_name="facebook/musicgen-small", duration=0.5, seed="11", melody=melody)
    np.testing.assert_array_equal(plain["audio_out"][1], with_melody["audio_out"][1])


def test_an_rvc_voice_one_folder_deep_converts_on_the_host(webui, webui_root, voice_input) -> None:
    out = webui.rvc(model_path="singers/alice", index_path=ALICE_INDEX, original_audio_path=str(voice_input),
                    pitch_collection_method="pm")
    seen = webui.inner_kwargs[-1]
    assert (seen["_type"], seen["text"]) == ("rvc", "singers/alice") and "seed" not in seen and "progress" not in seen
    rate, audio = out["audio_out"]
    assert webui.local_calls == [] and set(out) >= {"audio_out"} and "tokens" not in out
    assert type(rate) is int and audio.dtype == np.int16 and audio.ndim == 1
    assert abs(audio.shape[0] / rate - 1.0) < 0.05 and np.abs(audio).max() > 0  # one second in, one out
    assert (webui_root / out["folder_root"] / f"{out['filename']}.wav").is_file()
    assert out["filename"].endswith("__rvc__singers_alice")
    windows = webui.rvc(model_path="singers\\alice", index_path="", original_audio_path=str(voice_input),
                        pitch_collection_method="pm")  # the WebUI lists voices with the OS separator
    assert windows["audio_out"][1].dtype == np.int16


def test_the_webuis_index_choice_decides_whether_an_index_is_used(webui_host, voice_input) -> None:
    from webui_adapter.forward import Forwarder, Settings

    fwd = Forwarder(Settings.from_env({"MODELHOST_ADDRESS": webui_host.address}))
    base = dict(original_audio_path=str(voice_input), pitch_collection_method="pm", index_rate=0.5)
    try:
        chosen = fwd.forward("rvc", {**base, "model_path": "singers/alice", "index_path": ALICE_INDEX})
        none = fwd.forward("rvc", {**base, "model_path": "singers/alice", "index_path": ""})
        no_index = fwd.forward("rvc", {**base, "model_path": "bob/bob", "index_path": "bob/added_bob"})
    finally:
        fwd.close()
    assert chosen.params["index_rate"] == 0.5 and none.params["index_rate"] == 0.0
    assert no_index.params["index_rate"] == 0.0 and "no index" in no_index.notes[0]


def test_a_model_the_host_does_not_serve_fails_with_the_hosts_word_and_what_to_do(webui, webui_host, monkeypatch) -> None:
    with pytest.raises(Exception) as err:
        webui.musicgen(text="x", model_name="facebook/musicgen-large", duration=1)
    text = str(err.value)
    assert "serves no musicgen/audiogen model 'facebook/musicgen-large'" in text
    assert "no model named 'facebook/musicgen-large' in the catalog" in text  # the host's own message
    assert "modelhost serve --webui" in text and webui.local_calls == []
    with Client(webui_host.address) as c:
        assert c.health()["ready"]

    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_WEBUI_FALLBACK", "local")
    monkeypatch.setattr(ext, "_FORWARDER", None)
    out = webui.musicgen(text="x", model_name="facebook/musicgen-large", duration=1)
    assert out["local"] and webui.local_calls == ["musicgen"]


def test_an_operators_map_still_works_but_is_never_needed(webui, monkeypatch) -> None:
    monkeypatch.setenv("MODELHOST_WEBUI_MODELS", "facebook/musicgen-large=facebook/musicgen-small")
    out = webui.musicgen(text="mapped", model_name="facebook/musicgen-large", duration=0.5, seed="1")
    assert out["audio_out"][1].shape == (15360,) and webui.local_calls == []


def test_bad_input_fails_clearly_and_the_host_keeps_serving(webui, voice_input, webui_host) -> None:
    with pytest.raises(Exception, match="pitch_up_key must be a whole number of semitones"):
        webui.rvc(model_path="singers/alice", pitch_up_key="an octave", original_audio_path=str(voice_input))
    with pytest.raises(Exception, match="no input audio"):
        webui.rvc(model_path="singers/alice", original_audio_path=None)
    with pytest.raises(Exception, match="temperature must be"):
        webui.musicgen(text="x", model_name="facebook/musicgen-small", temperature=0, duration=0.5)
    assert webui.local_calls == []
    with Client(webui_host.address) as c:
        assert c.health()["ready"]


def test_other_calls_pass_straight_through(webui) -> None:
    def bark(text, **kwargs):
        webui.local_calls.append("bark")
        return {"audio_out": (24000, np.ones(3, np.float32)), "text": text}

    out = webui.other(bark, text="hello", _type="bark", seed="3", outputs=MUSICGEN_OUTPUTS)
    assert webui.local_calls == ["bark"] and out["text"] == "hello" and out["audio_out"][1].tolist() == [1, 1, 1]


def test_host_down_says_how_to_start_it_or_falls_back_when_configured(webui, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MODELHOST_ADDRESS", f"ipc://{tmp_path}/nobody.sock")
    with pytest.raises(Exception) as err:
        webui.musicgen(text="x", model_name="facebook/musicgen-small", duration=1)
    assert "no host answers" in str(err.value) and "modelhost serve --webui" in str(err.value)
    assert "MODELHOST_WEBUI_FALLBACK=local" in str(err.value) and webui.local_calls == []

    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_WEBUI_FALLBACK", "local")
    monkeypatch.setattr(ext, "_FORWARDER", None)
    out = webui.musicgen(text="x", model_name="facebook/musicgen-small", duration=1)
    assert out["local"] and webui.local_calls == ["musicgen"]


# A Gradio app wired as the WebUI wires MusicGen: dictionarize's wrapper (the ten input names, no
# progress parameter) calling the decorated chain; gradio_client watches the event's progress.
PROGRESS_APP = """
import inspect, json, sys, time
import gradio as gr
from gradio_client import Client
from tests.support.webui_calls import MUSICGEN_INPUTS, WebUI

webui = WebUI(sys.argv[1])

def wrapper(*values):
    return webui.musicgen(**dict(zip(MUSICGEN_INPUTS, values)))["audio_out"]

wrapper.__signature__ = inspect.Signature(
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in MUSICGEN_INPUTS])
with gr.Blocks() as app:
    inputs = [gr.Textbox(), gr.Audio(type="numpy"), gr.Textbox(), gr.Slider(1, 360), gr.Number(), gr.Slider(0, 1.5),
              gr.Slider(0, 1.5), gr.Slider(0, 10), gr.Textbox(), gr.Checkbox()]
    gr.Button().click(wrapper, inputs, gr.Audio(type="numpy"), api_name="musicgen")
app.queue().launch(server_port=int(sys.argv[2]), prevent_thread_lock=True, quiet=True)
job = Client(f"http://127.0.0.1:{sys.argv[2]}/", verbose=False).submit(
    "a calm beat", None, "facebook/musicgen-small", 6, 250, 0, 1, 3, "42", False, api_name="/musicgen")
seen = []
while not job.done():
    for unit in job.status().progress_data or []:
        seen.append([unit.index, unit.length, unit.desc])
    time.sleep(0.02)
job.result()
print(json.dumps({"gradio": gr.__version__, "progress": seen}))
app.close()
"""


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (the WebUI side, with Gradio): the README's test command creates it")
def test_host_progress_fills_the_webuis_progress_bar(webui_host, tmp_path) -> None:
    from tests.support.light_ui import free_port

    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MODELHOST_ADDRESS": webui_host.address,
           "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([str(PY310), "-c", PROGRESS_APP, str(tmp_path), str(free_port())], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"gradio"')))
    assert report["gradio"] == "5.49.1"  # TTS-WebUI's pin
    steps = [(index, length) for index, length, desc in report["progress"] if desc == progress.DESCRIPTION]
    assert len(set(steps)) >= 2, report  # the bar moved while the host generated, not only at the end
    assert all(0 < index <= length for index, length in steps) and len({length for _, length in steps}) == 1


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (the WebUI side, with Gradio): the README's test command creates it")
def test_inside_gradio_errors_reach_the_ui_as_gr_error(tmp_path) -> None:
    code = ("import gradio, webui_adapter.main as m\n"
            "f = m.decorator_modelhost(lambda **kw: 'local')\n"
            "try:\n    f(text='x', model_name='facebook/musicgen-small', seed='1', outputs={}, _type='musicgen')\n"
            "except gradio.Error as e:\n    print('gr.Error:', e)\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MODELHOST_ADDRESS": f"ipc://{tmp_path}/none.sock"}
    done = subprocess.run([str(PY310), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gr.Error: ") and "modelhost serve" in done.stdout


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310: the README's test command creates it")
def test_the_extension_imports_on_python_3_10_without_torch_or_sockets() -> None:
    code = ("import sys, webui_adapter.main as m; assert sys.version_info[:2] == (3, 10); "
            "print(m.extension__tts_generation_webui()['extension_class'], "
            "sorted(x for x in ('torch', 'gradio') if x in sys.modules), m._FORWARDER)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(PY310), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inner [] None"


def test_the_registration_snippet_is_what_tts_webui_reads() -> None:
    import importlib

    entry = json.loads((ROOT / "webui_adapter" / "extensions.external.json").read_text())["decorators"][0]
    assert set(entry) == EXAMPLE_EXTENSION_KEYS and all(isinstance(v, str) for v in entry.values())
    assert entry["package_name"] == "webui_adapter" and importlib.import_module(f"{entry['package_name']}.main")
    assert (entry["extension_type"], entry["extension_class"]) == ("decorator", "inner")
    # pip would take a bare name from the package index (someone else's "modelhost"): the snippet names a path,
    # which `modelhost webui install` replaces with this copy
    assert entry["requirements"].startswith("/") and "|" not in entry["description"]  # the list tab is a markdown table
    assert sys.modules["webui_adapter.main"].extension__tts_generation_webui() == entry
