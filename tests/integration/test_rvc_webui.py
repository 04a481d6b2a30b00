"""RVC voices as TTS-WebUI keeps and calls them: HuBERT from the Hugging Face cache, the index the WebUI
chose per request (under ``index_root``, cached), and the ``fcpe`` pitch method through torchfcpe.

Conversions are compared in-process on the real backend (seeded, so equal inputs give equal samples)
and end to end through a real host on the WebUI-shaped tree of ``tests/support/webui_tree.py``.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E

HUBERT_REF = "hf://lj1995/VoiceConversionWebUI/hubert_base.pt"
BOB_INDEX = "bob/added_IVF8_Flat_nprobe_1_bob_v2"


def _voiced(hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.25 * sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 8))).astype(np.float32)


def _voice_options(tree, voice: str = "bob/bob", **extra) -> dict:
    return {"model": str(tree.voices[voice]), "hubert": HUBERT_REF, "hf_cache": str(tree.hf_cache), **extra}


# ---- in-process: the real backend, seeded ----

@pytest.fixture(scope="module")
def backends(webui_tree):
    """bob with index_root (WebUI style) and bob with the same index fixed in the catalog."""
    from modelhost.host.backends.rvc import RvcBackend
    from modelhost.host.backends import ModelSpec

    made = {
        "webui": RvcBackend(ModelSpec("bob/bob", "rvc", "cpu", _voice_options(webui_tree, index_root=str(webui_tree.checkpoints)))),
        "catalog": RvcBackend(ModelSpec("bob", "rvc", "cpu", _voice_options(webui_tree, index=str(webui_tree.indexes[BOB_INDEX])))),
        "plain": RvcBackend(ModelSpec("bob-plain", "rvc", "cpu", _voice_options(webui_tree))),
    }
    for b in made.values():
        b.load("cpu")
    yield made
    for b in made.values():
        b.unload()


def _convert(backend, params: dict, hz: float = 220.0):
    import torch

    from modelhost.host.backends import GenerateRequest, RunContext

    torch.manual_seed(0)  # RVC's NSF source and flow draw noise from torch's global RNG
    return backend.generate(GenerateRequest(None, params, _voiced(hz), 16000), RunContext.detached())


def test_the_webui_index_value_converts_as_the_same_index_fixed_in_the_catalog(backends, webui_tree) -> None:
    params = {"f0_method": "pm", "index_rate": 1.0}
    chosen = _convert(backends["webui"], {**params, "index": BOB_INDEX})
    fixed = _convert(backends["catalog"], params)
    np.testing.assert_array_equal(chosen.audio, fixed.audio)
    assert chosen.info["index"] == fixed.info["index"] == str(webui_tree.indexes[BOB_INDEX])
    # other spellings of the same index: with .index, absolute, with a Windows WebUI's separator
    for spelling in (BOB_INDEX + ".index", str(webui_tree.indexes[BOB_INDEX]), BOB_INDEX.replace("/", "\\")):
        np.testing.assert_array_equal(_convert(backends["webui"], {**params, "index": spelling}).audio, chosen.audio)
    # no index: "" (the WebUI's empty choice) or absent, same as a voice without one; and not what the index gives
    none = _convert(backends["webui"], {**params, "index": ""})
    assert none.info["index"] == ""
    np.testing.assert_array_equal(none.audio, _convert(backends["webui"], params).audio)
    np.testing.assert_array_equal(none.audio, _convert(backends["plain"], params).audio)
    assert not np.array_equal(none.audio, chosen.audio)
    # index_rate 0 ignores the index, as rvc does
    np.testing.assert_array_equal(_convert(backends["webui"], {**params, "index": BOB_INDEX, "index_rate": 0.0}).audio,
                                  _convert(backends["plain"], {**params, "index_rate": 0.0}).audio)


@pytest.mark.parametrize("value, needle", [
    ("../../../../etc/passwd", "refused: it is not under this voice's index folder"),
    ("/etc/hosts", "refused: it is not under this voice's index folder"),
    ("bob/added_IVF9_nothing", "does not exist"),
    (3, "index must be a string"),
])
def test_an_index_outside_index_root_or_missing_is_refused(backends, value, needle) -> None:
    with pytest.raises(E.BadParamsError, match=needle.replace("(", r"\(")):
        _convert(backends["webui"], {"f0_method": "pm", "index": value})


def test_index_is_an_unknown_parameter_without_index_root(backends) -> None:
    with pytest.raises(E.BadParamsError, match=r"unknown parameters for an rvc voice: \['index'\]"):
        _convert(backends["plain"], {"f0_method": "pm", "index": BOB_INDEX})
    assert "index_root" not in backends["plain"].source()
    assert backends["webui"].source()["index_root"] == str(backends["webui"].index_root)


def test_indexes_are_read_once_and_again_only_when_the_file_changes(backends, webui_tree, tmp_path) -> None:
    from modelhost.host import random_weights as weights
    from modelhost.host.backends.rvc import INDEXES, RvcBackend
    from modelhost.host.backends import ModelSpec

    root = tmp_path / "checkpoints"
    shutil.copytree(webui_tree.checkpoints / "bob", root / "bob")
    backend = RvcBackend(ModelSpec("bob/bob", "rvc", "cpu", _voice_options(webui_tree, index_root=str(root))))
    backend.load("cpu")
    before = INDEXES.loads
    first = _convert(backend, {"f0_method": "pm", "index": BOB_INDEX})
    again = _convert(backend, {"f0_method": "pm", "index": BOB_INDEX})
    assert INDEXES.loads == before + 1
    np.testing.assert_array_equal(first.audio, again.audio)
    time.sleep(0.01)
    weights.write_faiss_index(root / "new.index", seed=9)
    os.replace(root / "new.index", root / f"{BOB_INDEX}.index")  # retrained in place: a new file, a new mtime
    changed = _convert(backend, {"f0_method": "pm", "index": BOB_INDEX})
    assert INDEXES.loads == before + 2
    assert not np.array_equal(changed.audio, first.audio)
    assert INDEXES.paths().count(os.path.realpath(root / f"{BOB_INDEX}.index")) == 1  # the stale entry is gone
    backend.unload()


def test_pitch_quantisation_is_rvcs_own(backends) -> None:
    """fcpe's pitch goes through the same Hz -> coarse bins mapping rvc-python applies to its methods."""
    from modelhost.host.backends.rvc import _coarse_pitch

    pipeline = backends["plain"].vc.pipeline
    x = np.pad(_voiced(180.0).astype(np.float64), 16000)
    coarse, f0 = pipeline.get_f0("k", x, x.size // 160, 3, "pm", 3)
    assert (f0 > 0).any()
    np.testing.assert_array_equal(_coarse_pitch(f0.copy()), coarse)


def test_fcpe_hears_the_pitch_and_transposes_it(backends) -> None:
    for hz in (220.0, 330.0):
        result = _convert(backends["plain"], {"f0_method": "fcpe"}, hz=hz)
        assert result.info["f0_method"] == "fcpe" and abs(result.info["f0_median_hz"] - hz) < hz * 0.05
    up = _convert(backends["plain"], {"f0_method": "fcpe", "f0_up_key": 12}, hz=220.0)
    assert abs(up.info["f0_median_hz"] - 440) < 22


# ---- through a real host ----

@pytest.fixture(scope="module")
def host(webui_tree, tmp_path_factory):
    from tests.support.launch import start_host

    empty_cache = tmp_path_factory.mktemp("empty-hf")
    h = start_host(f"""
        [models."bob/bob"]
        backend = "rvc"
        device = "cpu"
        model = "{webui_tree.voices['bob/bob']}"
        hubert = "{HUBERT_REF}"
        hf_cache = "{webui_tree.hf_cache}"
        index_root = "{webui_tree.checkpoints}"

        [models.undownloaded]
        backend = "rvc"
        model = "{webui_tree.voices['alice']}"
        hubert = "{HUBERT_REF}"
        hf_cache = "{empty_cache}"
    """, timeout_s=120)
    yield h
    h.stop()


def test_fcpe_and_the_webui_index_through_a_host(host, webui_tree) -> None:
    with Client(host.address) as c:
        result = c.generate("bob/bob", audio=(_voiced(220, rate=44100) * 32767).astype(np.int16), sample_rate=44100,
                            params={"f0_method": "fcpe", "index": BOB_INDEX, "index_rate": 0.66})
        assert result.audio.dtype == np.int16 and result.sample_rate == 32000 and abs(result.audio.size - 32000) < 1000
        assert result.info["f0_method"] == "fcpe" and abs(result.info["f0_median_hz"] - 220) < 11
        assert result.info["index"] == str(webui_tree.indexes[BOB_INDEX])
        ps = {m["name"]: m for m in c.ps()}["bob/bob"]
        assert ps["source"]["index_root"] == str(webui_tree.checkpoints)
        assert ps["details"]["shared"]["fcpe"]["bytes"] > 0  # the bundled FCPE model, shared per device
        with pytest.raises(E.BadParamsError, match="refused"):
            c.generate("bob/bob", audio=_voiced(220), sample_rate=16000, params={"index": "../../../../../etc/x"})


def test_hubert_missing_from_the_cache_names_the_download(host) -> None:
    with Client(host.address) as c:
        with pytest.raises(E.LoadFailedError) as info:
            c.load("undownloaded")
        assert "huggingface-cli download lj1995/VoiceConversionWebUI hubert_base.pt --cache-dir" in str(info.value)
        assert c.health()["ready"]
