"""The models a TTS-WebUI offers, served by a real host offline: MusicGen/AudioGen hub ids from a
Hugging Face cache in the hub's own layout (the WebUI's, moved by its .env), its checkpoint folders
and its RVC voices, with the specs ``WebuiCatalog`` builds (tests/support/webui_tree.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E

PARAMS = {"duration": 0.5, "top_k": 50, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0}


@pytest.fixture(scope="module")
def hub_host(webui_tree, tmp_path_factory):
    """A host that may look only in the WebUI's cache: the standard one is empty and the hub is offline."""
    from tests.support.launch import start_host

    empty_home = tmp_path_factory.mktemp("empty-hf-home")
    h = start_host(f"""
        [models."facebook/musicgen-small"]
        backend = "musicgen"
        checkpoint = "facebook/musicgen-small"
        hf_cache = "{webui_tree.hf_cache}"

        [models."facebook/audiogen-medium"]
        backend = "audiogen"
        checkpoint = "facebook/audiogen-medium"
        hf_cache = "{webui_tree.hf_cache}"

        [models."facebook/musicgen-large"]
        backend = "musicgen"
        checkpoint = "facebook/musicgen-large"
        hf_cache = "{webui_tree.hf_cache}"
    """, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(empty_home), "AUDIOCRAFT_CACHE_DIR": ""}, timeout_s=120)
    yield h
    h.stop()


@pytest.mark.parametrize("hub_id, cls_name", [("facebook/musicgen-small", "MusicGen"), ("facebook/audiogen-medium", "AudioGen")])
def test_a_cached_hub_id_loads_and_generates_offline(hub_host, webui_tree, hub_id, cls_name) -> None:
    import audiocraft.models
    import torch

    with Client(hub_host.address) as c:
        hosted = c.generate(hub_id, "a calm piano melody", params={**PARAMS, "seed": 77})
        ps = {m["name"]: m for m in c.ps()}[hub_id]
    assert ps["state"] == "ready" and ps["source"] == {"checkpoint": hub_id, "hf_cache": str(webui_tree.hf_cache)}
    snapshot = webui_tree.hf_cache / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    folder = next(snapshot.iterdir())
    model = getattr(audiocraft.models, cls_name).get_pretrained(str(folder), device="cpu")
    model.set_generation_params(**PARAMS)
    torch.manual_seed(77)
    local = model.generate(["a calm piano melody"])[0].numpy()
    np.testing.assert_array_equal(hosted.audio, local)


def test_a_hub_id_not_downloaded_names_the_download(hub_host, webui_tree) -> None:
    with Client(hub_host.address) as c:
        with pytest.raises(E.LoadFailedError) as info:
            c.generate("facebook/musicgen-large", "x", params={"duration": 0.5})
        assert c.health()["ready"]
    message = str(info.value)
    assert "facebook/musicgen-large is not downloaded" in message
    assert (f"huggingface-cli download facebook/musicgen-large state_dict.bin compression_state_dict.bin "
            f"--cache-dir {webui_tree.hf_cache}") in message


def test_a_hub_ids_load_size_is_estimated_from_its_cached_files(webui_tree) -> None:
    from modelhost.host.backends.musicgen import MusicGenBackend
    from modelhost.host.backends import ModelSpec

    def estimate(hub_id: str) -> int:
        return MusicGenBackend(ModelSpec(hub_id, "musicgen", options={"checkpoint": hub_id, "hf_cache": str(webui_tree.hf_cache)})).estimate_bytes()

    snapshot = next((webui_tree.hf_cache / "models--facebook--musicgen-small" / "snapshots").iterdir())
    expected = sum(os.path.getsize(snapshot / f) for f in ("state_dict.bin", "compression_state_dict.bin"))
    assert expected > 0 and estimate("facebook/musicgen-small") == expected
    assert estimate("facebook/musicgen-large") == 0


# ---- everything WebuiCatalog finds, served ----

@pytest.fixture(scope="module")
def webui_host(webui_tree):
    """``modelhost serve --webui ROOT`` and nothing else: no catalog entries, no map, the hub offline."""
    from tests.support.launch import start_host
    from modelhost.host.webui_catalog import WebuiCatalog

    specs = WebuiCatalog(webui_tree.root, environ={}).scan()  # what the host should serve (the tree's .env sets HF_HOME)
    h = start_host("", args=("--webui", str(webui_tree.root)), env={"HF_HUB_OFFLINE": "1"}, timeout_s=120)
    yield h, specs
    h.stop()


def test_every_model_the_webui_offers_is_listed_and_its_own_kind(webui_host, webui_tree) -> None:
    host, specs = webui_host
    with Client(host.address) as c:
        names = {m["name"] for m in c.ps()}
        assert set(specs) <= names and set(webui_tree.voices) <= names and set(webui_tree.folders) <= names
        rates = {name: c.generate(name, "rain on a tin roof", params={"duration": 0.5, "seed": 3}).sample_rate
                 for name in (*webui_tree.folders, *webui_tree.hub_ids)}
    sfx = next(n for n in webui_tree.folders if n.endswith("my-sfx"))
    assert specs[sfx].backend == "audiogen" and rates[sfx] == 16000  # a 16 kHz checkpoint: AudioGen
    assert rates["facebook/musicgen-small"] == 32000 and rates["facebook/audiogen-medium"] == 16000


def test_webui_voices_at_any_depth_convert_with_the_index_the_webui_sends(webui_host, webui_tree) -> None:
    host, _ = webui_host
    t = np.arange(16000) / 16000
    audio = (0.25 * sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 8))).astype(np.float32)
    with Client(host.address) as c:
        for voice, index in (("bob/bob", "bob/added_IVF8_Flat_nprobe_1_bob_v2"),
                             ("singers/deep/carol", "singers/deep/added_IVF8_Flat_nprobe_1_carol_v2"), ("alice", "")):
            result = c.generate(voice, audio=audio, sample_rate=16000, params={"f0_method": "pm", "index": index})
            assert result.audio.dtype == np.int16 and result.info["index"] == (str(webui_tree.indexes[index]) if index else "")


def test_a_voice_dropped_in_after_start_is_served_without_a_restart(webui_host, webui_tree) -> None:
    host, _ = webui_host
    new = webui_tree.checkpoints / "late" / "dave.pth"
    new.parent.mkdir(exist_ok=True)
    new.write_bytes(webui_tree.voices["alice"].read_bytes())
    audio = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32) * 0.3
    try:
        with Client(host.address) as c:
            result = c.generate("late/dave", audio=audio, sample_rate=16000, params={"f0_method": "pm"})
            assert result.audio.dtype == np.int16 and result.audio.size > 0
            assert {m["name"]: m for m in c.ps()}["late/dave"]["state"] == "ready"
    finally:
        new.unlink()


def test_a_path_outside_the_webui_and_its_cache_is_refused(webui_host, tmp_path) -> None:
    host, _ = webui_host
    outside = tmp_path / "voice.pth"
    outside.write_bytes(b"not a voice")
    with Client(host.address) as c:
        with pytest.raises(E.UnknownModelError, match="outside"):
            c.generate(str(outside), audio=np.zeros(1600, np.float32), sample_rate=16000)
        with pytest.raises(E.UnknownModelError) as err:
            c.generate("nobody/none", audio=np.zeros(1600, np.float32), sample_rate=16000)
        assert "bob/bob" in str(err.value)  # the message lists what is served
        assert c.health()["ready"]
