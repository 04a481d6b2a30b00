"""The adapter's pure parts: which host model a WebUI name goes to, TTS-WebUI's shapes both ways,
its model lists and its output names."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from webui_adapter import convert, progress, routing, webui_models

PS = [
    {"name": "facebook/musicgen-small", "backend": "musicgen", "source": {"checkpoint": "facebook/musicgen-small"}},
    {"name": "musicgen", "backend": "musicgen", "source": {"checkpoint": "facebook/musicgen-small"}},
    {"name": "big", "backend": "musicgen", "source": {"checkpoint": "/models/musicgen-large"}},
    {"name": "audiogen", "backend": "audiogen", "source": {"checkpoint": "facebook/audiogen-medium"}},
    {"name": "voices/alice", "backend": "rvc", "source": {"model": "/w/data/models/rvc/checkpoints/alice.pth", "index": None}},
    {"name": "bob", "backend": "rvc", "source": {"model": "/w/data/models/rvc/checkpoints/singers/bob.pth", "index": "/x/bob.index"}},
    {"name": "bob2", "backend": "rvc", "source": {"model": "/elsewhere/singers/bob.pth", "index": None}},
    {"name": "singers/carol", "backend": "rvc",
     "source": {"model": "/w/data/models/rvc/checkpoints/singers/carol.pth", "index": None, "index_root": "/w/data/models/rvc/checkpoints"}},
    {"name": "synth", "backend": "synth", "source": {"checkpoint": None}},
]


@pytest.mark.parametrize("kind, requested, expected", [
    ("musicgen", "facebook/musicgen-small", "facebook/musicgen-small"),  # an exact name wins over "built from"
    ("musicgen", "facebook/audiogen-medium", "audiogen"),      # built from the WebUI's hub id
    ("musicgen", "/models/musicgen-large/", "big"),             # a local folder, written differently
    ("musicgen", "big", "big"),                                 # a host name (the light UI lists these too)
    ("rvc", "alice", "voices/alice"),                           # relative to data/models/rvc/checkpoints
    ("rvc", "alice.pth", "voices/alice"),
    ("rvc", "checkpoints/singers/bob", "bob"),                  # enough of the path to be unique
    ("rvc", "singers\\carol", "singers/carol"),                 # the WebUI's list on Windows
])
def test_a_webui_name_goes_to_the_host_model_that_serves_it(kind, requested, expected) -> None:
    assert routing.resolve(kind, requested, PS).name == expected


def test_a_name_the_host_does_not_list_goes_to_the_host_as_it_is() -> None:
    route = routing.resolve("musicgen", "facebook/musicgen-large", PS)
    assert (route.name, route.row, route.source) == ("facebook/musicgen-large", None, {})
    assert routing.resolve("rvc", "new/voice.pth", PS).name == "new/voice"  # dropped in after the host started


def test_the_operators_map_still_wins_but_is_never_required() -> None:
    mapping = routing.parse_model_map("facebook/musicgen-large=big; alice = bob")
    assert mapping == {"facebook/musicgen-large": "big", "alice": "bob"}
    assert routing.resolve("musicgen", "facebook/musicgen-large", PS, mapping).name == "big"
    assert routing.resolve("rvc", "alice", PS, mapping).name == "bob"
    with pytest.raises(routing.NotServedError, match="'musicgen' is a musicgen model, not rvc"):
        routing.resolve("rvc", "x", PS, {"x": "musicgen"})  # a MusicGen model cannot serve an RVC call
    with pytest.raises(ValueError, match="'oops' is not WEBUI_NAME=HOST_MODEL"):
        routing.parse_model_map("a=b,oops")


def test_ambiguous_and_empty_names_say_what_to_do() -> None:
    with pytest.raises(routing.NotServedError, match=r"several host models \(bob, bob2\)"):
        routing.resolve("rvc", "singers/bob", PS)
    with pytest.raises(routing.NoChoiceError, match="pick a voice first"):
        routing.resolve("rvc", "", PS)
    text = routing.not_served_message("musicgen", "facebook/musicgen-large", "no model named ...", PS)
    assert "facebook/musicgen-small" in text and "big (/models/musicgen-large)" in text and "synth" not in text
    assert "modelhost serve --webui" in text and "MODELHOST_WEBUI_MODELS" in text
    assert routing.choices("rvc", PS) == ["voices/alice", "bob", "bob2", "singers/carol"]


def test_musicgen_parameters_follow_the_webui_and_fit_the_host() -> None:
    kw = {"text": "beat", "melody": None, "model_name": "x", "duration": 5, "topk": 250.0, "topp": 1.5,
          "temperature": 1, "cfg_coef": 3, "use_multi_band_diffusion": True, "seed": "4294967294"}  # a Textbox's seed
    call = convert.musicgen_call(kw, wants_melody=False, wants_tokens=True)
    assert call.prompt == "beat" and call.audio is None
    assert call.params == {"duration": 5.0, "top_k": 250, "top_p": 1.0, "temperature": 1.0, "cfg_coef": 3.0,
                           "seed": 4294967294, "use_multi_band_diffusion": True, "return_tokens": True}
    assert [convert.musicgen_call({**kw, "seed": s}, False, True).params["seed"] for s in ("-1", 7, 7.0, "", None)] == [-1, 7, 7, -1, -1]
    audiogen = convert.musicgen_call(kw, wants_melody=False, wants_tokens=False)
    assert audiogen.params["use_multi_band_diffusion"] is False and "return_tokens" not in audiogen.params
    melody = (44100, np.full((44100 * 40, 2), 16384, dtype=np.int16))  # Gradio's (T, C) int16, 40 s
    ignored = convert.musicgen_call({**kw, "melody": melody}, wants_melody=False, wants_tokens=False)
    assert ignored.audio is None  # as the WebUI: no melody model, no melody
    sent = convert.musicgen_call({**kw, "melody": melody}, wants_melody=True, wants_tokens=True)
    assert sent.sample_rate == 44100 and sent.audio.shape == (2, 44100 * 30)  # channels-first, cut to 30 s
    assert sent.audio.dtype == np.float32 and sent.audio.max() == 0.5  # int16 PCM as [-1, 1] floats
    for bad, message in (({"duration": "long"}, "duration must be a number, got 'long'"),
                         ({"seed": "lucky"}, "seed must be a whole number"), ({"seed": "1.5"}, "seed must be a whole number")):
        with pytest.raises(convert.InputError, match=message):
            convert.musicgen_call({**kw, **bad}, wants_melody=False, wants_tokens=False)


def test_magnet_parameters_keep_the_tabs_names_and_fit_the_host() -> None:
    # positional as generate(model_name, text, decoding_steps_1..4), the rest by keyword as dictionarize passes it
    kw = convert.call_kwargs("magnet", ("facebook/magnet-small-10secs", "beat", 80, 40.0, 40, 20),
                             {"seed": "123", "use_sampling": True, "top_k": 0.0, "top_p": 1.5, "temperature": 0,
                              "max_cfg_coef": 20, "min_cfg_coef": 1, "span_arrangement": "stride1", "_type": "magnet"})
    call = convert.magnet_call(kw)
    assert call.prompt == "beat" and call.audio is None
    assert call.params == {"decoding_steps_1": 80, "decoding_steps_2": 40, "decoding_steps_3": 40, "decoding_steps_4": 20,
                           "use_sampling": True, "top_k": 0, "top_p": 1.0, "temperature": 0.0, "max_cfg_coef": 20.0,
                           "min_cfg_coef": 1.0, "span_arrangement": "stride1", "seed": 123, "return_tokens": True}
    assert all(type(call.params[k]) is int for k in ("top_k", "decoding_steps_2"))
    assert convert.magnet_call({"text": "x"}).params == {**convert.MAGNET_DEFAULTS, "seed": -1, "return_tokens": True}
    assert convert.magnet_call({**kw, "decoding_steps_1": 7.9}).params["decoding_steps_1"] == 7  # audiocraft's int()
    for bad, message in (({"top_k": 2.5}, "top_k must be a whole number"), ({"temperature": "hot"}, "temperature must be a number"),
                         ({"seed": "lucky"}, "seed must be a whole number"), ({"text": 5}, "text must be a string")):
        with pytest.raises(convert.InputError, match=message):
            convert.magnet_call({**kw, **bad})
    rows = [*PS, {"name": "facebook/magnet-small-10secs", "backend": "magnet", "source": {"checkpoint": "x"}},
            {"name": "mine", "backend": "magnet", "source": {"checkpoint": "/w/data/models/magnet/mine"}}]
    assert routing.resolve("magnet", "/w/data/models/magnet/mine/", rows).name == "mine"
    assert routing.choices("magnet", rows) == ["facebook/magnet-small-10secs", "mine"]
    assert "magnet" not in {m["backend"] for m in rows if m["name"] in routing.choices("musicgen", rows)}
    with pytest.raises(routing.NotServedError, match="is a musicgen model, not magnet"):
        routing.resolve("magnet", "facebook/musicgen-small", rows)


def test_rvc_parameters_and_the_webuis_index_choice(tmp_path) -> None:
    from modelhost.client.wavfile import write_wav

    wav = write_wav(tmp_path / "in.wav", np.zeros((2, 4410), np.float32), 44100)
    kw = {"pitch_up_key": " -5 ", "original_audio_path": str(wav), "index_path": "bob\\added_bob.index",
          "pitch_collection_method": "fcpe", "model_path": "bob", "index_rate": 0.5, "filter_radius": 3.0,
          "resample_sr": 8000, "rms_mix_rate": 1, "protect": 0.33}
    call = convert.rvc_call(kw, index_mode="catalog")
    assert call.params == {"f0_up_key": -5, "f0_method": "fcpe", "index_rate": 0.5, "filter_radius": 3, "resample_sr": 0,
                           "rms_mix_rate": 1.0, "protect": 0.33}
    assert call.sample_rate == 44100 and call.audio.shape == (2, 4410)  # samples travel, not the path
    webui_voice = convert.rvc_call(kw, index_mode="param")  # the WebUI's own choice, as the host's index parameter
    assert webui_voice.params["index"] == "bob/added_bob" and webui_voice.params["index_rate"] == 0.5
    none = convert.rvc_call({**kw, "index_path": ""}, index_mode="param")
    assert none.params["index"] == "" and none.params["index_rate"] == 0.0
    assert convert.rvc_call({**kw, "index_path": None}, index_mode="catalog").params["index_rate"] == 0.0
    no_index = convert.rvc_call(kw, index_mode="none")
    assert no_index.params["index_rate"] == 0.0 and "no index" in no_index.notes[0] and "index" not in no_index.params
    assert convert.rvc_call({**kw, "resample_sr": 48000}, index_mode="none").params["resample_sr"] == 48000
    with pytest.raises(convert.InputError, match="pitch_up_key must be a whole number of semitones"):
        convert.rvc_call({**kw, "pitch_up_key": "up"}, index_mode="none")
    with pytest.raises(convert.InputError, match="no input audio"):
        convert.rvc_call({**kw, "original_audio_path": None}, index_mode="none")
    with pytest.raises(convert.InputError, match="does not exist"):
        convert.rvc_call({**kw, "original_audio_path": str(tmp_path / "gone.wav")}, index_mode="none")


def test_results_come_back_in_the_webuis_layout() -> None:
    mono = np.linspace(-1, 1, 8, dtype=np.float32)[None]  # the host's (1, T)
    audio = convert.webui_layout(mono, np.float32)
    assert (audio.shape, audio.dtype) == ((8,), np.float32)
    stereo = np.stack([mono[0], -mono[0]])  # (2, T) -> (T, 2), left then right
    audio = convert.webui_layout(stereo, np.float32)
    assert audio.shape == (8, 2) and audio.flags.c_contiguous and audio[0, 0] == -1 and audio[0, 1] == 1
    assert convert.webui_layout(np.arange(5, dtype=np.int16), np.int16).tolist() == [0, 1, 2, 3, 4]
    tokens = convert.tokens_tensor(np.ones((4, 25), np.int32))
    assert tuple(tokens.shape) == (1, 4, 25) and str(tokens.dtype) == "torch.int64"  # as audiocraft returns them
    assert convert.tokens_tensor(None) is None


def test_the_model_lists_are_the_webuis_plus_the_hosts(tmp_path) -> None:
    root = tmp_path / "webui"
    for folder in ("myft", "cache", "another"):
        (root / "data/models/musicgen_audiogen" / folder).mkdir(parents=True)
    checkpoints = root / "data/models/rvc/checkpoints"
    for f in ("bob/bob.pth", "bob/added_IVF8_Flat_nprobe_1_bob_v2.index", "alice.pth", "deep/er/carol.pth"):
        (checkpoints / f).parent.mkdir(parents=True, exist_ok=True)
        (checkpoints / f).write_bytes(b"")
    music = webui_models.musicgen_choices(root, PS)
    assert music[:11] == list(webui_models.MUSICGEN_PICKER) and music[0] == ("Melody", "facebook/musicgen-melody")
    assert music[11:13] == [("another", str(root / "data/models/musicgen_audiogen/another")),
                            ("myft", str(root / "data/models/musicgen_audiogen/myft"))]  # absolute paths, no "cache"
    assert [v for _, v in music[13:]] == ["musicgen", "big", "audiogen"]  # the host's others; its hub id is listed once
    voices = webui_models.rvc_voices(root, PS)
    assert [v for _, v in voices] == ["alice", "bob/bob", "deep/er/carol", "voices/alice", "bob", "bob2", "singers/carol"]
    assert all(label == value for label, value in voices)
    indexes = [v for _, v in webui_models.rvc_indexes(root, PS)]
    assert indexes == ["bob/added_IVF8_Flat_nprobe_1_bob_v2", "bob"]  # the WebUI's, then a catalog voice's own
    assert webui_models.musicgen_choices(tmp_path / "nothing", [])[11:] == []


def test_outputs_are_named_as_the_webui_names_them() -> None:
    from webui_adapter import outputs

    date = datetime(2026, 12, 1, 11, 0, 23)
    assert outputs.folder_name("musicgen", "lofi hip hop beats to relax/study to", date) == "2026-12-01_11-00-23__musicgen__lofi_hip_hop_be"
    assert outputs.folder_name("rvc", "bob/bob", date) == "2026-12-01_11-00-23__rvc__bob_bob"
    assert outputs.title("a (b): c?") == "a_b__c_"  # one pass of "__" -> "_", as the WebUI's prompt_to_title


def test_progress_goes_to_the_console_outside_a_gradio_event(capsys) -> None:
    sink = progress.for_call()
    sink(3, 4)
    sink(4, 4)
    assert capsys.readouterr().out == "\r     3 /      4\r     4 /      4\n"
    steps = []
    progress.for_call(lambda p, desc=None, unit=None: steps.append((p, desc)))(1, 2)  # a caller's gr.Progress
    assert steps == [((1, 2), progress.DESCRIPTION)]


def test_a_taken_output_name_gets_a_suffix_instead_of_overwriting(tmp_path) -> None:
    from webui_adapter import outputs
    from webui_adapter.forward import Forwarded

    done = Forwarded((40000, np.arange(400, dtype=np.int16)), None, "bob/bob", {}, {}, {}, [])
    kw = {"model_path": "bob/bob", "index_path": "", "pitch_up_key": "0"}
    date = datetime(2026, 12, 1, 11, 0, 29)
    first = outputs.save_rvc(tmp_path, kw, done, date)[1]
    second = outputs.save_rvc(tmp_path, kw, done, date)[1]
    assert (first, second) == ("outputs/2026-12-01_11-00-29__rvc__bob_bob", "outputs/2026-12-01_11-00-29__rvc__bob_bob_2")
    for folder_root in (first, second):  # each as React's History reads it: D/D.json and D/D.ogg
        folder = tmp_path / folder_root
        assert (folder / f"{folder.name}.json").is_file() and (folder / f"{folder.name}.ogg").is_file()
