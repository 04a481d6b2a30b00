"""``python -m webui_adapter.patch``: 2024 WebUIs (no decorator hooks) run with their models on the host.

The WebUI trees written here keep those eras' call patterns, checked against rsxdalv/TTS-WebUI:

* ``0c6bb54`` (2024-04-06, early 2024): ``src/musicgen/musicgen_tab.py`` ``generate(params,
  melody_in)`` seeds torch (``parse_or_set_seed`` -> ``set_seed`` -> ``torch.manual_seed``), calls
  ``MODEL.generate(descriptions=[text], progress=True, return_tokens=True)`` (AudioGen: no tokens),
  then, with multi-band diffusion on, ``MultiBandDiffusion.get_mbd_musicgen()``, an ``isinstance``
  check of ``MODEL.compression_model`` against ``InterleaveStereoCompressionModel`` and
  ``mbd.tokens_to_wav(tokens)``, and returns ``(MODEL.sample_rate, output.transpose())``;
  ``src/rvc_tab/rvc_tab.py`` ``run_rvc`` takes 12 arguments (``device``, ``is_half``) and returns
  ``(audio, metadata)`` from ``infer_rvc``;
* ``a9571a7`` (2024-08-20, mid 2024): the same ``generate``; ``run_rvc`` with 10 arguments.

Both bind their functions when the tabs are built (``button.click(run_rvc, ...)``, ``.then(fn=generate,
...)``), after the modules are imported: ``server.py`` here does the same, then calls positionally as
Gradio does. Their in-process paths raise, so any audio that comes back was made by the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.wavfile import write_wav
from tests.conftest import ROOT, start_host
from tests.support.stereo_musicgen import write_stereo_musicgen

MUSICGEN_TAB = '''
import numpy as np
import torch
from audiocraft.models.encodec import InterleaveStereoCompressionModel

MODEL = None

def load_model(version):
    raise AssertionError("the WebUI loaded a model in-process")

def generate(params, melody_in):
    global MODEL
    model = params["model"]
    if MODEL is None or MODEL.name != model:
        MODEL = load_model(model)
    MODEL.set_generation_params(use_sampling=True, top_k=params["topk"], top_p=params["topp"],
                                temperature=params["temperature"], cfg_coef=params["cfg_coef"], duration=params["duration"])
    torch.manual_seed(params["seed"])  # parse_or_set_seed -> set_seed
    tokens = None
    if "melody" in model and melody_in is not None:
        sr, melody = melody_in[0], torch.from_numpy(melody_in[1]).to(MODEL.device).float().t().unsqueeze(0)
        melody = melody[..., : int(sr * MODEL.lm.cfg.dataset.segment_duration)]
        output, tokens = MODEL.generate_with_chroma(descriptions=[params["text"]], melody_wavs=melody,
                                                    melody_sample_rate=sr, progress=True, return_tokens=True)
    elif model == "facebook/audiogen-medium":
        output = MODEL.generate(descriptions=[params["text"]], progress=True)
    else:
        output, tokens = MODEL.generate(descriptions=[params["text"]], progress=True, return_tokens=True)
    if params["use_multi_band_diffusion"] and model != "facebook/audiogen-medium":
        from audiocraft.models.multibanddiffusion import MultiBandDiffusion

        mbd = MultiBandDiffusion.get_mbd_musicgen()
        if isinstance(MODEL.compression_model, InterleaveStereoCompressionModel):
            left, right = MODEL.compression_model.get_left_right_codes(tokens)
            tokens = torch.cat([left, right])
        output = mbd.tokens_to_wav(tokens)
    output = output.detach().cpu().numpy().squeeze()
    return [(MODEL.sample_rate, output.transpose()), None if tokens is None else list(tokens.shape)]
'''

RVC_TAB_EARLY_2024 = '''
def run_rvc(f0up_key, original_audio_path, index_path, f0method, model_path, index_rate, device, is_half,
            filter_radius, resample_sr, rms_mix_rate, protect):
    raise AssertionError("the WebUI converted in-process")
'''

RVC_TAB_MID_2024 = '''
def run_rvc(f0up_key, original_audio_path, index_path, f0method, model_path, index_rate, filter_radius,
            resample_sr, rms_mix_rate, protect):
    raise AssertionError("the WebUI converted in-process")
'''

SERVER = '''
import json, sys
from src.musicgen import musicgen_tab
from src.rvc_tab import rvc_tab

generate, run_rvc = musicgen_tab.generate, rvc_tab.run_rvc  # bound when the tabs are built
voice = sys.argv[1]
out = {}
def params(**kw):
    return {"text": "old webui", "melody": None, "model": "facebook/musicgen-small", "duration": 1.0, "topk": 250,
            "topp": 0.0, "temperature": 1.0, "cfg_coef": 3.0, "seed": 77, "use_multi_band_diffusion": False, **kw}
era = sys.argv[2]
if era == "mid-2024":  # the same MusicGen code as early 2024: only RVC differs
    (rate, audio), meta = run_rvc("0", voice, "bob/added_bob", "pm", "bob/bob", 0.66, 3, 0, 1.0, 0.33)
    print(json.dumps({"rvc": [rate, str(audio.dtype), audio.ndim, len(audio), meta]}))
    sys.exit(0)
(rate, audio), tokens = generate(params(), None)
out["musicgen"] = [rate, list(audio.shape), str(audio.dtype), audio[:4].tolist(), tokens]
(rate, audio), tokens = generate(params(model="facebook/musicgen-stereo-small", duration=0.5), None)
out["stereo"] = [rate, list(audio.shape)]
(rate, audio), tokens = generate(params(model="facebook/audiogen-medium", use_multi_band_diffusion=True), None)
out["audiogen"] = [rate, list(audio.shape), tokens]
try:
    generate(params(use_multi_band_diffusion=True), None)
except Exception as exc:
    out["diffusion"] = f"{type(exc).__name__}: {exc}"
(rate, audio), meta = run_rvc("0", voice, "bob/added_bob", "pm", "bob/bob", 0.66, "cuda:0", True, 3, 0, 1.0, 0.33)
out["rvc"] = [rate, str(audio.dtype), audio.ndim, len(audio), meta]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def era_host(model_files, tmp_path_factory):
    stereo = write_stereo_musicgen(tmp_path_factory.mktemp("stereo") / "stereo", seed=5)
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25

        [models."facebook/musicgen-small"]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"

        [models."facebook/musicgen-stereo-small"]
        backend = "musicgen"
        checkpoint = "{stereo}"

        [models."facebook/audiogen-medium"]
        backend = "audiogen"
        checkpoint = "{model_files['audiogen']}"

        [models."bob/bob"]
        backend = "rvc"
        model = "{model_files['bob']}"
        hubert = "{model_files['hubert']}"
    """, timeout_s=300)
    yield h
    h.stop()


def _pythonpath() -> str:
    """This checkout first (the WebUI's own folder is the script's), then whatever the test run had."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def _run_era(tmp_path, host_address: str, rvc_tab: str, era: str) -> subprocess.CompletedProcess:
    webui = tmp_path / "tts-generation-webui"
    for rel, text in {"src/__init__.py": "", "src/musicgen/__init__.py": "", "src/musicgen/musicgen_tab.py": MUSICGEN_TAB,
                      "src/rvc_tab/__init__.py": "", "src/rvc_tab/rvc_tab.py": rvc_tab, "server.py": SERVER}.items():
        (webui / rel).parent.mkdir(parents=True, exist_ok=True)
        (webui / rel).write_text(textwrap.dedent(text))
    voice = write_wav(tmp_path / "in.wav", (0.2 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)
    env = {**os.environ, "MODELHOST_ADDRESS": host_address, "PYTHONPATH": _pythonpath(), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "webui_adapter.patch", "server.py", str(voice), era], cwd=webui,
                          capture_output=True, text=True, timeout=300, env=env)


def test_an_early_2024_webui_generates_on_the_host_through_the_patch(era_host, tmp_path) -> None:
    done = _run_era(tmp_path, era_host.address, RVC_TAB_EARLY_2024, "early-2024")
    assert done.returncode == 0, done.stderr
    assert "src.musicgen.musicgen_tab now generates on the host" in done.stderr
    assert "src.rvc_tab.rvc_tab now generates on the host" in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rate, shape, dtype, head, tokens = out["musicgen"]
    assert (rate, shape, dtype) == (32000, [32000], "float32") and tokens[0] == 1
    with Client(era_host.address) as c:  # the seed the old WebUI gave torch is the one the host used
        direct = c.generate("facebook/musicgen-small", "old webui", params={"duration": 1.0, "seed": 77})
    np.testing.assert_allclose(direct.audio[0, :4], head, rtol=1e-6)
    assert out["stereo"] == [32000, [15360, 2]]  # (C, T) squeezed, then transposed by the WebUI: (T, 2)
    assert out["audiogen"] == [16000, [16000], None]
    # diffusion runs on the host (never loaded in the WebUI); offline it cannot load and says so, clearly
    assert "multi-band diffusion weights cannot be loaded" in out["diffusion"] and "AttributeError" not in out["diffusion"]
    rate, dtype, ndim, length, meta = out["rvc"]
    assert (dtype, ndim) == ("int16", 1) and abs(length / rate - 1.0) < 0.05
    assert meta == {"original_audio_path": str(tmp_path / "in.wav"), "index_path": "bob/added_bob.index",
                    "model_path": "bob/bob.pth", "f0method": "pm", "f0up_key": 0, "index_rate": 0.66, "device": "cuda:0",
                    "is_half": True, "filter_radius": 3, "resample_sr": 0, "rms_mix_rate": 1.0, "protect": 0.33}


def test_a_mid_2024_webui_converts_on_the_host_through_the_patch(era_host, tmp_path) -> None:
    done = _run_era(tmp_path, era_host.address, RVC_TAB_MID_2024, "mid-2024")
    assert done.returncode == 0, done.stderr
    rate, dtype, ndim, length, meta = json.loads(done.stdout.strip().splitlines()[-1])["rvc"]
    assert (dtype, ndim) == ("int16", 1) and abs(length / rate - 1.0) < 0.05
    assert meta["model_path"] == "bob/bob" and meta["f0up_key"] == "0" and "device" not in meta


def test_the_patch_says_when_a_webui_has_nothing_it_knows(tmp_path, era_host) -> None:
    (tmp_path / "server.py").write_text("print('a newer webui')\n")
    env = {**os.environ, "MODELHOST_ADDRESS": era_host.address, "PYTHONPATH": _pythonpath()}
    done = subprocess.run([sys.executable, "-m", "webui_adapter.patch", "server.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "a newer webui"
    assert "this WebUI version is not patched" in done.stderr


RVC_TAB_UPLOADS = '''
import tempfile

def run_rvc(f0up_key: str, original_audio_path: str, index_path: tempfile._TemporaryFileWrapper, f0method: str,
            model_path: tempfile._TemporaryFileWrapper, index_rate: float, device: str, is_half: bool,
            filter_radius: int, resample_sr: int, rms_mix_rate: float, protect: float):
    return "the WebUI's own run_rvc"
'''


def test_a_webui_whose_rvc_took_uploaded_files_keeps_its_own_rvc(tmp_path, era_host) -> None:
    """Before c716b30 (checked at c71e1a7, 2024-03-13) the voice and index were uploads: not the host's to serve."""
    webui = tmp_path / "webui"
    for rel, text in {"src/__init__.py": "", "src/rvc_tab/__init__.py": "", "src/rvc_tab/rvc_tab.py": RVC_TAB_UPLOADS,
                      "server.py": "from src.rvc_tab import rvc_tab\nprint(rvc_tab.run_rvc(*range(12)))\n"}.items():
        (webui / rel).parent.mkdir(parents=True, exist_ok=True)
        (webui / rel).write_text(textwrap.dedent(text))
    env = {**os.environ, "MODELHOST_ADDRESS": era_host.address, "PYTHONPATH": _pythonpath()}
    done = subprocess.run([sys.executable, "-m", "webui_adapter.patch", "server.py"], cwd=webui,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the WebUI's own run_rvc"
    assert "src.rvc_tab.rvc_tab is from a WebUI version this patch does not know" in done.stderr
