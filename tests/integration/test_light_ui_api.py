"""The light UI as a backend for TTS-WebUI's React UI, driven with exactly the calls React makes.

The payloads and what is read back are those of ``react-ui/src/pages/api/gradio/[name].tsx``
(rsxdalv/TTS-WebUI 8c9046b): ``/musicgen`` gets ``{melody, model_name, seed (a number), text,
duration, topk, topp, temperature, cfg_coef, use_multi_band_diffusion}`` and React reads
``[audio, metadata, folder_root]``; ``/rvc`` gets the ten ``run_rvc`` names and React reads
``[audio, metadata]``; the list endpoints are read as ``choices.map(x => x[1])`` (MusicGen) and
``choices.map(x => x[0])`` (RVC); the others are passed through. React's History then reads
``outputs/D/D.json`` (needs a ``date``) and plays ``outputs/D/D.ogg`` under the WebUI root.
gradio_client sends keyword dicts as @gradio/client does; each call opens a new session, as React's.

The host serves the WebUI-shaped tree of ``tests/support/webui_tree.py`` under the WebUI's own names.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import soundfile

from modelhost.client import Client
from modelhost.client.wavfile import write_wav
from tests.conftest import start_host
from tests.support.light_ui import PY310, LightUI

pytestmark = pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (Python 3.10 + Gradio, the WebUI side): "
                                                           "the README's test command creates it")

REACT_ENDPOINTS = ["/musicgen", "/musicgen_audiogen_get_models", "/musicgen_audiogen_unload_model",
                   "/musicgen_audiogen_open_model_dir", "/rvc", "/rvc_model_reload", "/rvc_index_reload",
                   "/rvc_model_open", "/rvc_index_open", "/rvc_unload_model", "/rvc_model_unload", "/bark_favorite"]
MUSICGEN_KEYS = ["_version", "_hash_version", "_audiocraft_version", "text", "melody", "model_name", "duration", "topk",
                 "topp", "temperature", "cfg_coef", "seed", "use_multi_band_diffusion", "outputs", "models", "hash", "date"]
RVC_KEYS = ["_version", "_hash_version", "pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method",
            "model_path", "index_rate", "filter_radius", "resample_sr", "rms_mix_rate", "protect", "outputs", "text",
            "date", "hash"]
BOB_INDEX = "bob/added_IVF8_Flat_nprobe_1_bob_v2"


@pytest.fixture(scope="module")
def tree_host(webui_tree):
    h = start_host("[host]\nheartbeat_s = 0.25\n", args=("--webui", str(webui_tree.root)), timeout_s=300)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def ui(tree_host, webui_tree, tmp_path_factory):
    started = LightUI(tree_host.address, tmp_path_factory.mktemp("ui-logs"), webui_root=webui_tree.root)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory):
    t = np.arange(22050) / 22050
    tone = (sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6)) * 0.2).astype(np.float32)
    return write_wav(tmp_path_factory.mktemp("in") / "voice.wav", tone, 22050)


def react_musicgen(ui: LightUI, **params):
    """``musicgen({melody, model, ...params})`` in [name].tsx, with the React page's initial values."""
    payload = dict(melody=None, model_name="facebook/musicgen-small", seed=0, text="lofi hip hop beats to relax/study to",
                   duration=1, topk=250, topp=0, temperature=1, cfg_coef=3, use_multi_band_diffusion=False)
    return ui.client().predict(**{**payload, **params}, api_name="/musicgen")


def react_rvc(ui: LightUI, voice_wav, **params):
    """``rvc({...})`` in [name].tsx with RVCParams' initial values (rms 0.5, React's default) and a chosen voice."""
    from gradio_client import handle_file

    payload = dict(pitch_up_key="0", original_audio_path=handle_file(str(voice_wav)), index_path="",
                   pitch_collection_method="harvest", model_path="bob/bob", index_rate=0.66, filter_radius=3,
                   resample_sr=0, rms_mix_rate=0.5, protect=0.33)
    return ui.client().predict(**{**payload, **params}, api_name="/rvc")


def _history_entry(root, folder_root: str) -> tuple[dict, np.ndarray, int]:
    """What React's History reads: D/D.json (with a date) and D/D.ogg."""
    folder = root / folder_root
    name = folder.name
    metadata = json.loads((folder / f"{name}.json").read_text())
    audio, rate = soundfile.read(folder / f"{name}.ogg")
    return metadata, audio, rate


def test_every_endpoint_the_react_pages_call_is_there(ui) -> None:
    api = ui.client().view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(REACT_ENDPOINTS) <= set(api)
    assert [p["parameter_name"] for p in api["/musicgen"]["parameters"]] == [
        "text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef", "seed", "use_multi_band_diffusion"]
    assert [p["parameter_name"] for p in api["/rvc"]["parameters"]] == [
        "pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method", "model_path", "index_rate",
        "filter_radius", "resample_sr", "rms_mix_rate", "protect"]
    assert len(api["/musicgen"]["returns"]) == len(api["/rvc"]["returns"]) == 3  # audio, metadata, folder_root


def test_the_model_lists_are_the_webuis(ui, webui_tree) -> None:
    models = ui.client().predict(api_name="/musicgen_audiogen_get_models")
    values = [x[1] for x in models["choices"]]  # extractChoicesTuple
    assert values[:11] == ["facebook/musicgen-melody", "facebook/musicgen-medium", "facebook/musicgen-small",
                           "facebook/musicgen-large", "facebook/audiogen-medium", "facebook/musicgen-melody-large",
                           "facebook/musicgen-stereo-small", "facebook/musicgen-stereo-medium", "facebook/musicgen-stereo-melody",
                           "facebook/musicgen-stereo-large", "facebook/musicgen-stereo-melody-large"]
    assert values[11:] == sorted(str(p) for p in webui_tree.folders)  # absolute paths, as the WebUI sends them
    assert models["choices"][0] == ["Melody", "facebook/musicgen-melody"]
    voices = [x[0] for x in ui.client().predict(api_name="/rvc_model_reload")["choices"]]  # extractChoices: labels
    assert voices == sorted(webui_tree.voices)  # any depth: the host serves them all
    indexes = [x[0] for x in ui.client().predict(api_name="/rvc_index_reload")["choices"]]
    assert indexes == sorted(webui_tree.indexes)
    assert ui.client().predict(api_name="/rvc_model_open") == str(webui_tree.checkpoints)
    assert ui.client().predict(api_name="/rvc_index_open") == str(webui_tree.checkpoints)
    assert ui.client().predict(api_name="/musicgen_audiogen_open_model_dir") == str(webui_tree.musicgen_dir)


def test_musicgen_from_react_is_saved_where_history_finds_it(ui, tree_host, webui_tree) -> None:
    audio_path, metadata, folder_root = react_musicgen(ui)
    audio, rate = soundfile.read(audio_path)
    assert rate == 32000 and audio.shape == (32000,) and np.abs(audio).max() > 0
    assert list(metadata) == MUSICGEN_KEYS and metadata["model_name"] == "facebook/musicgen-small"
    assert metadata["seed"].isdigit() and metadata["seed"] != "0"  # seed 0: the one the host drew, to reproduce it
    assert folder_root.startswith("outputs/") and folder_root.endswith("__musicgen__lofi_hip_hop_be")
    saved, ogg, ogg_rate = _history_entry(webui_tree.root, folder_root)
    assert saved == metadata and saved["date"] and ogg_rate == 32000 and abs(len(ogg) - 32000) < 2000
    folder = webui_tree.root / folder_root
    wav, _ = soundfile.read(folder / f"{folder.name}.wav", dtype="float32")
    tokens = np.load(folder / f"{folder.name}.npz")
    assert tokens["tokens"].shape[:2] == (1, 4) and json.loads(str(tokens["metadata"])) == metadata
    with Client(tree_host.address) as c:  # the saved WAV is the host's audio for the reported seed, bit for bit
        direct = c.generate("facebook/musicgen-small", metadata["text"], params={"duration": 1, "seed": int(metadata["seed"])})
    np.testing.assert_array_equal(wav, direct.audio[0])
    # React's Favorite button: bark_favorite(folder_root) copies the result where its Favorites page reads
    assert ui.client().predict(folder_root, api_name="/bark_favorite") == "favorites/" + folder.name
    favorite = webui_tree.root / "favorites" / folder.name
    assert sorted(p.name for p in favorite.iterdir()) == sorted(p.name for p in folder.iterdir())
    with pytest.raises(Exception, match="not a saved result"):
        ui.client().predict("data/models", api_name="/bark_favorite")


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="no ffmpeg: Gradio re-encodes streamed audio with it (setup.sh --test installs it)")
def test_the_pages_generate_streams_audio_while_the_host_generates(ui, tree_host, webui_tree) -> None:
    """The page's own Generate (``/musicgen_live``): its player's HLS playlist holds AAC audio while the host's job
    still runs, and the call ends with the whole result saved as ``/musicgen`` saves it (the host's exact audio)."""
    from gradio_client import Client as GradioClient

    gradio = GradioClient(ui.url, verbose=False, download_files=False)
    assert [p["parameter_name"] for p in gradio.view_api(print_info=False, return_format="dict")["named_endpoints"]
            ["/musicgen_live"]["parameters"]] == ["text", "melody", "model_name", "duration", "topk", "topp",
                                                  "temperature", "cfg_coef", "seed", "use_multi_band_diffusion"]
    job = gradio.submit(text="live", melody=None, model_name="facebook/musicgen-small", duration=8, topk=250, topp=0,
                        temperature=1, cfg_coef=3, seed="5", use_multi_band_diffusion=False, api_name="/musicgen_live")
    with Client(tree_host.address) as c:
        deadline = time.monotonic() + 120
        playlist, jobs = "", {}
        while "#EXTINF" not in playlist and not job.done() and time.monotonic() < deadline:
            time.sleep(0.05)
            if job.outputs():
                with urllib.request.urlopen(job.outputs()[0][0]["url"], timeout=10) as r:
                    playlist = r.read().decode()
                jobs = c.health()["jobs"]  # read after the playlist: was the host still generating then?
        assert "#EXTINF" in playlist, playlist
        assert jobs["running"] == 1 and "#EXT-X-ENDLIST" not in playlist  # audio to play before the end
        segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
        with urllib.request.urlopen(urllib.parse.urljoin(job.outputs()[0][0]["url"], segment), timeout=10) as r:
            aac = r.read()
        assert aac[0] == 0xFF and aac[1] & 0xF0 == 0xF0  # an ADTS (AAC) frame
        _, _, metadata, folder_root = job.result(timeout=180)
        direct = c.generate("facebook/musicgen-small", "live", params={"duration": 8, "seed": 5})
    folder = webui_tree.root / folder_root
    assert folder_root.startswith("outputs/") and list(metadata) == MUSICGEN_KEYS and metadata["seed"] == "5"
    assert _history_entry(webui_tree.root, folder_root)[0] == metadata
    wav, rate = soundfile.read(folder / f"{folder.name}.wav", dtype="float32")
    assert rate == 32000
    np.testing.assert_array_equal(wav, direct.audio[0])


def test_a_model_folder_and_audiogen_from_react(ui, webui_tree) -> None:
    for name, rate in ((str(webui_tree.root / "data/models/musicgen_audiogen/myft"), 32000),
                       (str(webui_tree.root / "data/models/musicgen_audiogen/my-sfx"), 16000),
                       ("facebook/audiogen-medium", 16000)):
        audio_path, metadata, folder_root = react_musicgen(ui, model_name=name, seed=5, text="rain on a roof")
        assert soundfile.read(audio_path)[1] == rate and metadata["model_name"] == name
        folder = webui_tree.root / folder_root
        assert (folder / f"{folder.name}.npz").exists() == (rate == 32000)  # AudioGen has no tokens


def test_rvc_from_react_with_the_webuis_index_choice(ui, webui_tree, voice_wav) -> None:
    audio_path, metadata, folder_root = react_rvc(ui, voice_wav, index_path=BOB_INDEX, pitch_up_key=12)  # a moved slider
    audio, rate = soundfile.read(audio_path, dtype="int16")
    assert audio.ndim == 1 and abs(len(audio) / rate - 1.0) < 0.05 and np.abs(audio).max() > 0
    assert list(metadata) == RVC_KEYS and metadata["text"] == "bob/bob" and metadata["pitch_up_key"] == "12"
    saved, ogg, ogg_rate = _history_entry(webui_tree.root, folder_root)
    assert saved == metadata and ogg_rate == rate and np.abs(ogg).max() <= 1.0
    no_index = react_rvc(ui, voice_wav, model_path="singers/deep/carol", pitch_collection_method="pm")  # "" passes
    assert no_index[1]["index_path"] == "" and no_index[2].endswith("__rvc__singers_deep_ca")


def test_unload_buttons_unload_on_the_host(ui, tree_host, voice_wav) -> None:
    react_musicgen(ui, duration=0.5)
    react_rvc(ui, voice_wav, pitch_collection_method="pm")
    with Client(tree_host.address) as c:
        states = {m["name"]: m["state"] for m in c.ps()}
        assert states["facebook/musicgen-small"] == "ready" and states["bob/bob"] == "ready"
        assert "facebook/musicgen-small: unloaded" in ui.client().predict(api_name="/musicgen_audiogen_unload_model")
        assert "bob/bob: unloaded" in ui.client().predict(api_name="/rvc_model_unload")  # React's route table's name
        states = {m["name"]: m["state"] for m in c.ps()}
    assert states["facebook/musicgen-small"] == states["bob/bob"] == "unloaded"
    assert "holds no rvc model" in ui.client().predict(api_name="/rvc_unload_model")  # the name RVCInputs.tsx calls


def test_a_missing_download_or_bad_value_reaches_the_caller_with_what_to_fix(ui) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="facebook/musicgen-large"):
        react_musicgen(ui, model_name="facebook/musicgen-large")  # listed by the WebUI, not downloaded
    with pytest.raises(AppError, match=r"temperature must be a number in \(0, 100\]"):
        react_musicgen(ui, temperature=0)


def test_a_webui_voice_uses_the_index_the_webui_chose(tree_host, webui_tree, voice_wav) -> None:
    from webui_adapter.forward import Forwarder, Settings

    fwd = Forwarder(Settings.from_env({"MODELHOST_ADDRESS": tree_host.address}))
    call = dict(original_audio_path=str(voice_wav), pitch_collection_method="pm", index_rate=0.66)
    try:
        chosen = fwd.forward("rvc", {**call, "model_path": "singers/deep/carol", "index_path": BOB_INDEX})
        windows = fwd.forward("rvc", {**call, "model_path": "bob\\bob", "index_path": BOB_INDEX.replace("/", "\\")})
        none = fwd.forward("rvc", {**call, "model_path": "bob/bob", "index_path": ""})
    finally:
        fwd.close()
    assert chosen.params["index"] == BOB_INDEX and chosen.info["index"] == str(webui_tree.indexes[BOB_INDEX])
    assert windows.params["index"] == BOB_INDEX and windows.info["index"] == str(webui_tree.indexes[BOB_INDEX])
    assert none.params["index"] == "" and none.info["index"] == ""
