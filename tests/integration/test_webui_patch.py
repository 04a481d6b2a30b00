"""``python -m webui_adapter.patch``: an early-2024 WebUI (no decorator hooks) run with its models on the host.

The WebUI tree written here keeps only what the patch relies on from that era's modules: MusicGen's
``load_model`` and a ``generate`` that drives the model through audiocraft's API after seeding torch,
and RVC's ``run_rvc`` with its signature and return value. Their in-process paths raise, so any
audio that comes back was made by the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from modelhost.client import Client
from modelhost.client.wavfile import write_wav
from tests.conftest import ROOT

MUSICGEN_TAB = '''
import numpy as np
import torch

MODEL = None

def load_model(version):
    raise AssertionError("the WebUI loaded a model in-process")

def generate(params, melody_in):
    global MODEL
    if MODEL is None or MODEL.name != params["model"]:
        MODEL = load_model(params["model"])
    MODEL.set_generation_params(use_sampling=True, top_k=params["topk"], top_p=params["topp"],
                                temperature=params["temperature"], cfg_coef=params["cfg_coef"], duration=params["duration"])
    torch.manual_seed(params["seed"])  # the era's parse_or_set_seed -> set_seed
    output, tokens = MODEL.generate(descriptions=[params["text"]], progress=True, return_tokens=True)
    output = output.detach().cpu().numpy().squeeze()
    return (MODEL.sample_rate, output), tokens.cpu().numpy().shape
'''

RVC_TAB = '''
def run_rvc(f0up_key, original_audio_path, index_path, f0method, model_path, index_rate, filter_radius,
            resample_sr, rms_mix_rate, protect):
    raise AssertionError("the WebUI converted in-process")
'''

SERVER = '''
import json, sys
from src.musicgen import musicgen_tab
from src.rvc_tab import rvc_tab

params = dict(model="musicgen", text="old webui", duration=1.0, topk=250, topp=0.0, temperature=1.0, cfg_coef=3.0, seed=77)
(rate, audio), token_shape = musicgen_tab.generate(params, None)
(rvc_rate, rvc_audio), metadata = rvc_tab.run_rvc("0", sys.argv[1], "", "pm", "bob", 0.66, 3, 0, 1.0, 0.33)
print(json.dumps({"rate": rate, "shape": list(audio.shape), "dtype": str(audio.dtype), "head": audio[:4].tolist(),
                  "tokens": list(token_shape), "rvc_rate": rvc_rate, "rvc_dtype": str(rvc_audio.dtype),
                  "rvc_len": len(rvc_audio), "host_model": metadata["host_model"], "argv": sys.argv[1:]}))
'''


def test_an_old_webui_generates_on_the_host_through_the_patch(model_host, tmp_path) -> None:
    webui = tmp_path / "tts-generation-webui"
    for rel, text in {"src/__init__.py": "", "src/musicgen/__init__.py": "", "src/musicgen/musicgen_tab.py": MUSICGEN_TAB,
                      "src/rvc_tab/__init__.py": "", "src/rvc_tab/rvc_tab.py": RVC_TAB, "server.py": SERVER}.items():
        (webui / rel).parent.mkdir(parents=True, exist_ok=True)
        (webui / rel).write_text(textwrap.dedent(text))
    voice = write_wav(tmp_path / "in.wav", (0.2 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)
    env = {**os.environ, "MODELHOST_ADDRESS": model_host.address, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "webui_adapter.patch", "server.py", str(voice)], cwd=webui,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "src.musicgen.musicgen_tab now generates on the host" in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["rate"], out["shape"], out["dtype"]) == (32000, [32000], "float32")
    assert out["tokens"][0] == 1 and out["argv"] == [str(voice)]
    assert (out["rvc_rate"], out["rvc_dtype"], out["host_model"]) == (32000, "int16", "voices/bob")  # the tiny test voice is a 32 kHz one
    with Client(model_host.address) as c:  # the seed the old WebUI gave torch is the one the host used
        direct = c.generate("musicgen", "old webui", params={"duration": 1.0, "seed": 77})
    np.testing.assert_allclose(direct.audio[0, :4], out["head"], rtol=1e-6)


def test_the_patch_says_when_a_webui_has_nothing_it_knows(tmp_path, model_host) -> None:
    (tmp_path / "server.py").write_text("print('a newer webui')\n")
    env = {**os.environ, "MODELHOST_ADDRESS": model_host.address, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "webui_adapter.patch", "server.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "a newer webui"
    assert "use the decorator extension" in done.stderr
