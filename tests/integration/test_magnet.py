"""MAGNeT through one real host: random-weight MAGNeT checkpoints built through audiocraft's own builders
(``host.random_weights.write_magnet``), served from a TTS-WebUI tree and its Hugging Face cache in the hub's
layout (``--webui``, offline: the six picker ids and a folder under ``data/models/magnet``), compared
bit for bit with in-process audiocraft, and called the way the WebUI's MAGNeT tab calls its inner
decorator (``tests/support/webui_calls.py``, checked against tts_webui_extension.audiocraft 4271f86).

In-process references load with audiocraft's own ``MAGNeT.get_pretrained`` and then take the attention
the host selects where xformers cannot run (``use_torch_attention``): audiocraft's loader would pick
xformers, which has no CPU kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.protocol import errors as E
from modelhost.host.backends.magnet import use_torch_attention
from tests.support.launch import short_tmp, start_host
from tests.support.webui_calls import MUSICGEN_OUTPUTS, WebUI
from tests.support.webui_tree import MAGNET_HUB, MAGNET_SEGMENT_S

MUSIC = "facebook/magnet-small-10secs"
FEW_STEPS = {"decoding_steps_1": 3, "decoding_steps_2": 2, "decoding_steps_3": 2, "decoding_steps_4": 2}
# Where every tab parameter matters (top_p 0, so top_k counts), at a few steps: what each case varies from.
BASE = {**FEW_STEPS, "use_sampling": True, "top_k": 0, "top_p": 0.0, "temperature": 1.0, "max_cfg_coef": 20.0,
        "min_cfg_coef": 1.0, "span_arrangement": "nonoverlap"}


@pytest.fixture(scope="module")
def musicgen_efficient():
    """A MusicGen whose attention follows audiocraft's process-wide backend, as the published ones do."""
    from modelhost.host import random_weights as weights

    return weights.write_audiocraft(short_tmp("mh-mg-") / "musicgen", "musicgen", seed=3, memory_efficient=True)


@pytest.fixture(scope="module")
def magnet_host(webui_tree, musicgen_efficient):
    """``--webui`` (MAGNeT's six ids and folder, offline) beside a catalog: a MusicGen sharing the process, and a
    MAGNeT that asks for xformers."""
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25

        [models.musicgen-efficient]
        backend = "musicgen"
        checkpoint = "{musicgen_efficient}"

        [models.magnet-xformers]
        backend = "magnet"
        checkpoint = "{next(iter(webui_tree.magnet_folders.values()))}"
        attention = "xformers"
    """, args=("--webui", str(webui_tree.root)), env={"HF_HUB_OFFLINE": "1"}, timeout_s=120)
    yield h
    h.stop()


@pytest.fixture
def client(magnet_host):
    with Client(magnet_host.address) as c:
        yield c


@pytest.fixture(scope="module")
def in_process(webui_tree):
    """In-process references, one loaded model per hub id."""
    models: dict[str, object] = {}
    return lambda hub_id: models.get(hub_id) or models.setdefault(hub_id, _in_process(webui_tree, hub_id))


def _in_process(webui_tree, hub_id: str):
    """audiocraft's own MAGNeT from the hub id's cached snapshot, with the host's attention selection."""
    import audiocraft.modules.transformer as transformer
    from audiocraft.models import MAGNeT

    try:
        model = MAGNeT.get_pretrained(str(_snapshot(webui_tree, hub_id)), device="cpu")
    finally:
        transformer.set_efficient_attention_backend("torch")  # the loader's process-wide xformers: not in this process
    use_torch_attention(model.lm)
    return model


def _snapshot(webui_tree, hub_id: str):
    return next((webui_tree.hf_cache / f"models--{hub_id.replace('/', '--')}" / "snapshots").iterdir())


def _generation_params(params: dict) -> dict:
    """The tab's parameters as the tab hands them to ``set_generation_params``."""
    out = {k: v for k, v in params.items() if not k.startswith("decoding_steps_")}
    out["decoding_steps"] = [params[f"decoding_steps_{i}"] for i in range(1, 5)]
    return out


def _reference(model, text: str, params: dict, seed: int):
    import torch

    model.set_generation_params(**_generation_params(params))
    torch.manual_seed(seed)
    wav, tokens = model.generate([text], progress=True, return_tokens=True)
    return wav[0].numpy(), tokens[0].numpy()


# ---- the backend ----

@pytest.mark.parametrize("hub_id", [MUSIC, "facebook/audio-magnet-small"])
def test_a_seed_gives_in_process_audiocrafts_samples_bit_for_bit(client, in_process, hub_id) -> None:
    params = {**BASE, "top_k": 20, "temperature": 2.0, "max_cfg_coef": 5.0, "min_cfg_coef": 2.0}
    hosted = client.generate(hub_id, "a calm piano", params={**params, "seed": 1234, "return_tokens": True})
    audio, tokens = _reference(in_process(hub_id), "a calm piano", params, 1234)
    rate = {"magnet": 32000, "audio-magnet": 16000}[MAGNET_HUB[hub_id]]
    assert hosted.sample_rate == rate and hosted.info["seed"] == 1234
    assert hosted.audio.dtype == np.float32 and hosted.audio.shape == audio.shape == (1, MAGNET_SEGMENT_S * 24 * rate // 25)
    np.testing.assert_array_equal(hosted.audio, audio)  # 48 of 50 frames: nonoverlap trims to whole 3-frame spans
    np.testing.assert_array_equal(hosted.info["tokens"], tokens)
    assert hosted.info["tokens"].shape == (4, 48)


def _base_audio(in_process, cache: dict = {}) -> np.ndarray:  # noqa: B006 (one reference per module run)
    if "base" not in cache:
        cache["base"] = _reference(in_process(MUSIC), "drums", BASE, 7)[0]
    return cache["base"]


@pytest.mark.parametrize("key, value", [
    ("decoding_steps_1", 4), ("decoding_steps_2", 3), ("decoding_steps_3", 3), ("decoding_steps_4", 3),
    ("use_sampling", False), ("top_k", 5), ("top_p", 0.5), ("temperature", 3.0), ("max_cfg_coef", 3.0),
    ("min_cfg_coef", 5.0), ("span_arrangement", "stride1"),
])
def test_each_tab_parameter_reaches_audiocraft(client, in_process, key, value) -> None:
    """Changed alone, each parameter changes the samples, and to exactly audiocraft's for that value."""
    base = _base_audio(in_process)
    changed = client.generate(MUSIC, "drums", params={**BASE, key: value, "seed": 7})
    audio, _ = _reference(in_process(MUSIC), "drums", {**BASE, key: value}, 7)
    np.testing.assert_array_equal(changed.audio, audio)
    assert base.shape != audio.shape or not np.array_equal(base, audio)


@pytest.mark.parametrize("params, needle", [
    ({"decoding_steps_1": 0}, "decoding_steps_1 must be an int in [1, 1000], got 0"),
    ({"decoding_steps_3": 2.5}, "decoding_steps_3 must be an int in [1, 1000], got 2.5"),
    ({"use_sampling": "yes"}, "use_sampling must be true or false"),
    ({"top_k": 257}, "top_k must be an int in [0, 256]"),
    ({"top_p": 1.5}, "top_p must be a number in [0, 1]"),
    ({"temperature": -1}, "temperature must be a number in [0, 100]"),
    ({"max_cfg_coef": 101}, "max_cfg_coef must be a number in [0, 100]"),
    ({"min_cfg_coef": -0.5}, "min_cfg_coef must be a number in [0, 100]"),
    ({"span_arrangement": "overlap"}, "span_arrangement must be one of nonoverlap, stride1, got 'overlap'"),
    ({"duration": 5}, "unknown parameters for a magnet model: ['duration']"),
    ({"seed": "12"}, "seed must be an int"),
])
def test_a_wrong_value_is_refused_naming_the_parameter(client, params, needle) -> None:
    with pytest.raises(E.BadParamsError) as info:
        client.generate(MUSIC, "x", params={**FEW_STEPS, **params})
    assert needle in str(info.value)


def test_audio_input_is_refused(client) -> None:
    with pytest.raises(E.BadParamsError, match="takes text only"):
        client.generate(MUSIC, "x", audio=np.zeros(16000, np.float32), sample_rate=16000, params=FEW_STEPS)


def test_unseeded_requests_share_a_pass_and_a_seeded_one_runs_alone(client) -> None:
    unseeded = {**FEW_STEPS, "seed": -1}
    alone = client.generate(MUSIC, "a calm piano", params={**FEW_STEPS, "seed": 77})
    blocker = client.submit(MUSIC, "a blocker", params={"decoding_steps_1": 200, "decoding_steps_2": 100,
                                                         "decoding_steps_3": 100, "decoding_steps_4": 50, "seed": 5})
    seeded = client.submit(MUSIC, "a calm piano", params={**FEW_STEPS, "seed": 77})
    progress: dict[int, list[tuple[int, int]]] = {i: [] for i in range(3)}
    rows = [client.submit(MUSIC, f"prompt {i}", params=unseeded, progress=lambda s, t, i=i: progress[i].append((s, t)))
            for i in range(3)]
    other = client.submit(MUSIC, "other", params={**unseeded, "span_arrangement": "stride1"})
    assert blocker.result().info["batch_rows"] == 1
    together = seeded.result()
    assert together.info["batch_rows"] == 1 and together.info["seed"] == 77
    np.testing.assert_array_equal(together.audio, alone.audio)
    results = [r.result() for r in rows]
    assert [r.info["batch_rows"] for r in results] == [3, 3, 3]
    assert all(r.info["seed"] == -1 and r.audio.shape == alone.audio.shape for r in results)
    assert not np.array_equal(results[0].audio, results[1].audio)  # each row its own samples
    assert all(progress[i] and progress[i][-1] == (9, 9) for i in range(3))  # each row hears its own steps
    assert other.result().info["batch_rows"] == 1 and other.result().audio.shape == (1, 64000)  # stride1: all 50 frames
    row = next(m for m in client.ps() if m["name"] == MUSIC)
    assert row["max_batch_size"] == 8 and row["details"] == {"attention": "torch", "segment_s": 2.0}


def test_a_stream_is_the_whole_result_in_one_chunk(client) -> None:
    job = client.stream(MUSIC, "drums", params={**FEW_STEPS, "seed": 3})
    chunks = list(job)
    result = job.result()
    assert len(chunks) == 1 and chunks[0].offset == 0
    np.testing.assert_array_equal(chunks[0].audio, result.audio)


def test_a_magnet_load_leaves_the_attention_of_musicgen_in_the_same_process_alone(client, musicgen_efficient) -> None:
    """audiocraft's MAGNeT loader switches the process to xformers, which has no CPU kernel: a MusicGen beside
    the MAGNeT would then fail (or, on a GPU, change its samples). The host's load keeps the switch as it was."""
    import torch
    from audiocraft.models import MusicGen

    client.load("facebook/magnet-medium-30secs")
    hosted = client.generate("musicgen-efficient", "drums", params={"duration": 0.5, "top_k": 50, "seed": 21})
    model = MusicGen.get_pretrained(str(musicgen_efficient), device="cpu")
    model.set_generation_params(duration=0.5, top_k=50)
    torch.manual_seed(21)
    np.testing.assert_array_equal(hosted.audio, model.generate(["drums"])[0].numpy())


def test_xformers_attention_is_refused_where_xformers_cannot_run(client) -> None:
    with pytest.raises(E.LoadFailedError) as info:
        client.generate("magnet-xformers", "x", params=FEW_STEPS)
    assert 'attention = "xformers" but xformers cannot run on cpu' in str(info.value)
    assert client.health()["ready"]


# ---- what the WebUI offers ----

def test_the_six_picker_ids_and_a_magnet_folder_are_served_offline(client, webui_tree) -> None:
    assert len(webui_tree.magnet_hub_ids) == 6
    rows = {m["name"]: m for m in client.ps()}
    for name in (*webui_tree.magnet_hub_ids, *webui_tree.magnet_folders):
        assert rows[name]["backend"] == "magnet"
        result = client.generate(name, "rain on a tin roof", params={**FEW_STEPS, "seed": 3})
        kind = MAGNET_HUB.get(name, "magnet")
        assert result.sample_rate == {"magnet": 32000, "audio-magnet": 16000}[kind]
    folder = next(iter(webui_tree.magnet_folders))
    assert rows[folder]["source"] == {"checkpoint": folder}
    assert rows[MUSIC]["source"] == {"checkpoint": MUSIC, "hf_cache": str(webui_tree.hf_cache)}


# ---- the WebUI's MAGNeT tab, through the decorator extension ----

@pytest.fixture
def webui(magnet_host, webui_tree, monkeypatch, tmp_path):
    import webui_adapter.main as ext

    monkeypatch.setenv("MODELHOST_ADDRESS", magnet_host.address)
    for name in ("MODELHOST_WEBUI_FALLBACK", "MODELHOST_WEBUI_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ext, "_FORWARDER", None)
    yield WebUI(tmp_path)
    if ext._FORWARDER is not None:
        ext._FORWARDER.close()


def test_the_webuis_magnet_tab_runs_on_the_host_and_gets_its_shapes(webui, in_process, tmp_path) -> None:
    import torch

    # the tab's values as Gradio passes them: a string seed, a Number's float, sliders' numbers
    values = dict(model_name=MUSIC, text="a calm beat", seed="123", top_k=20.0, top_p=0.0, temperature=2.0,
                  max_cfg_coef=5.0, min_cfg_coef=2.0, decoding_steps_1=3, decoding_steps_2=2.0, decoding_steps_3=2,
                  decoding_steps_4=2, span_arrangement="stride1", use_sampling=True)
    out = webui.magnet(**values)
    assert webui.local_calls == []
    seen = webui.inner_kwargs[-1]
    assert (seen["_type"], seen["seed"], seen["outputs"]) == ("magnet", "123", MUSICGEN_OUTPUTS)
    rate, audio = out["audio_out"]
    assert type(rate) is int and rate == 32000
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.shape == (64000,)
    tokens = out["tokens"]
    assert isinstance(tokens, torch.Tensor) and tokens.dtype == torch.int64 and tuple(tokens.shape) == (1, 4, 50)
    # what the WebUI's own generate returns for these values, with the seed its outer decorator sets
    params = {k: values[k] for k in BASE}
    params.update(top_k=20, decoding_steps_2=2)
    reference, reference_tokens = _reference(in_process(MUSIC), "a calm beat", params, 123)
    np.testing.assert_array_equal(audio, reference.squeeze())
    np.testing.assert_array_equal(tokens[0].numpy(), reference_tokens)
    saved = list((tmp_path / "outputs").glob("*__magnet__a_calm_beat/*"))
    assert sorted(p.suffix for p in saved) == [".npz", ".wav"]
    assert np.load(next(p for p in saved if p.suffix == ".npz"))["tokens"].shape == (1, 4, 50)


def test_a_refused_tab_value_shows_the_hosts_message(webui) -> None:
    with pytest.raises(Exception, match="decoding_steps_1 must be an int in \\[1, 1000\\], got 0") as info:
        webui.magnet(model_name=MUSIC, text="x", decoding_steps_1=0)
    assert "bad_params" in str(info.value) and webui.local_calls == []


def test_a_magnet_call_naming_a_model_of_another_kind_is_refused(webui) -> None:
    with pytest.raises(Exception, match="is a musicgen model, not magnet"):
        webui.magnet(model_name="facebook/musicgen-small", text="x", **FEW_STEPS)
    assert webui.local_calls == []


# ---- MAGNeT's attention (in-process: the layers audiocraft's builders make) ----

def test_stage_attention_stays_within_the_stage_mask(webui_tree, in_process) -> None:
    """Stages 2-4 see only frames within ``subcodes_context`` per layer. With ``use_torch_attention`` a token
    beyond that reach changes nothing; audiocraft's own torch branch (what its backend switch offers where
    xformers cannot run) drops the mask and attends causally, so an early token far away changes the logits."""
    import audiocraft.modules.transformer as transformer
    import torch
    from audiocraft.models import MAGNeT

    model = in_process(MUSIC)
    reach = model.lm.subcodes_context * len(model.lm.transformer.layers)  # 5 frames per layer, 2 layers
    attributes, _ = model._prepare_tokens_and_attributes(["x"], None)
    conditions = model.lm.condition_provider(model.lm.condition_provider.tokenize(attributes))
    tokens = torch.randint(0, model.lm.card, (1, 4, 48), generator=torch.Generator().manual_seed(0))

    def change(lm, frame: int, moved: int) -> float:
        """How much the stage-3 logits at ``frame`` move when codebook 1's token at ``moved`` changes."""
        other = tokens.clone()
        other[0, 0, moved] = (other[0, 0, moved] + 1) % lm.card
        with torch.no_grad():
            a, b = lm(tokens, [], conditions, stage=2), lm(other, [], conditions, stage=2)
        return (a[0, 2, frame] - b[0, 2, frame]).abs().max().item()

    frame = 30
    assert change(model.lm, frame, frame - reach - 2) == 0 and change(model.lm, frame, frame + reach + 2) == 0
    assert change(model.lm, frame, frame - 3) > 0 and change(model.lm, frame, frame + 3) > 0
    naive = MAGNeT.get_pretrained(str(_snapshot(webui_tree, MUSIC)), device="cpu")
    transformer.set_efficient_attention_backend("torch")  # audiocraft's torch branch, as selected by its own switch
    assert change(naive.lm, frame, frame - reach - 2) > 0 and change(naive.lm, frame, frame + 3) == 0  # causal
