"""The adapter's pure parts: which host model serves a WebUI name, and TTS-WebUI's shapes both ways."""

from __future__ import annotations

import numpy as np
import pytest

from webui_adapter import convert, routing

PS = [
    {"name": "musicgen", "backend": "musicgen", "source": {"checkpoint": "facebook/musicgen-small"}},
    {"name": "big", "backend": "musicgen", "source": {"checkpoint": "/models/musicgen-large"}},
    {"name": "audiogen", "backend": "audiogen", "source": {"checkpoint": "facebook/audiogen-medium"}},
    {"name": "voices/alice", "backend": "rvc", "source": {"model": "/w/data/models/rvc/checkpoints/alice.pth", "index": None}},
    {"name": "bob", "backend": "rvc", "source": {"model": "/w/data/models/rvc/checkpoints/singers/bob.pth", "index": "/x/bob.index"}},
    {"name": "bob2", "backend": "rvc", "source": {"model": "/elsewhere/singers/bob.pth", "index": None}},
    {"name": "synth", "backend": "synth", "source": {"checkpoint": None}},
]


@pytest.mark.parametrize("kind, requested, expected", [
    ("musicgen", "facebook/musicgen-small", "musicgen"),      # the WebUI's hub id = the host checkpoint
    ("musicgen", "facebook/audiogen-medium", "audiogen"),
    ("musicgen", "/models/musicgen-large/", "big"),           # a local folder, written differently
    ("musicgen", "big", "big"),                               # a host name (the light UI offers these)
    ("rvc", "alice", "voices/alice"),                         # relative to data/models/rvc/checkpoints
    ("rvc", "alice.pth", "voices/alice"),
    ("rvc", "checkpoints/singers/bob", "bob"),                # enough of the path to be unique
    ("rvc", "bob", "bob"),
])
def test_a_webui_name_finds_the_host_model_built_from_it(kind, requested, expected) -> None:
    assert routing.resolve(kind, requested, PS)["name"] == expected


def test_the_operators_map_wins_and_must_name_a_served_model() -> None:
    mapping = routing.parse_model_map("facebook/musicgen-large=big; alice = bob")
    assert mapping == {"facebook/musicgen-large": "big", "alice": "bob"}
    assert routing.resolve("musicgen", "facebook/musicgen-large", PS, mapping)["name"] == "big"
    assert routing.resolve("rvc", "alice", PS, mapping)["name"] == "bob"
    with pytest.raises(routing.NotServedError, match="maps 'x' to 'musicgen'.*voices/alice"):
        routing.resolve("rvc", "x", PS, {"x": "musicgen"})  # a MusicGen model cannot serve an RVC call
    with pytest.raises(ValueError, match="'oops' is not WEBUI_NAME=HOST_MODEL"):
        routing.parse_model_map("a=b,oops")


def test_unknown_ambiguous_and_empty_names_say_what_to_do() -> None:
    with pytest.raises(routing.NotServedError) as err:
        routing.resolve("musicgen", "facebook/musicgen-large", PS)
    text = str(err.value)
    assert "musicgen (facebook/musicgen-small)" in text and "audiogen (facebook/audiogen-medium)" in text
    assert 'checkpoint = "facebook/musicgen-large"' in text and "MODELHOST_WEBUI_MODELS" in text
    assert "synth" not in text  # only models that can serve the call are offered
    with pytest.raises(routing.NotServedError, match=r"several host models \(bob, bob2\)"):
        routing.resolve("rvc", "singers/bob", PS)
    with pytest.raises(routing.NotServedError, match="pick a voice first"):
        routing.resolve("rvc", "", PS)
    assert routing.choices("rvc", PS) == ["voices/alice", "bob", "bob2"]


def test_musicgen_parameters_follow_the_webui_and_fit_the_host() -> None:
    kw = {"text": "beat", "melody": None, "model_name": "x", "duration": 5, "topk": 250.0, "topp": 1.5,
          "temperature": 1, "cfg_coef": 3, "use_multi_band_diffusion": False, "seed": 42.0}
    call = convert.musicgen_call(kw, wants_melody=False, wants_tokens=True)
    assert call.prompt == "beat" and call.audio is None
    assert call.params == {"duration": 5.0, "top_k": 250, "top_p": 1.0, "temperature": 1.0, "cfg_coef": 3.0,
                           "seed": 42, "use_multi_band_diffusion": False, "return_tokens": True}
    assert isinstance(call.params["top_k"], int) and isinstance(call.params["seed"], int)
    melody = (44100, np.zeros((44100 * 40, 2), dtype=np.int16))  # Gradio's (T, C), 40 s
    ignored = convert.musicgen_call({**kw, "melody": melody}, wants_melody=False, wants_tokens=False)
    assert ignored.audio is None and "return_tokens" not in ignored.params  # as the WebUI: no melody model, no melody
    sent = convert.musicgen_call({**kw, "melody": melody}, wants_melody=True, wants_tokens=True)
    assert sent.sample_rate == 44100 and sent.audio.shape == (2, 44100 * 30)  # channels-first, cut to 30 s
    with pytest.raises(convert.InputError, match="duration must be a number, got 'long'"):
        convert.musicgen_call({**kw, "duration": "long"}, wants_melody=False, wants_tokens=False)


def test_rvc_parameters_follow_the_webui(tmp_path) -> None:
    from modelhost.client.wavfile import write_wav

    wav = write_wav(tmp_path / "in.wav", np.zeros((2, 4410), np.float32), 44100)
    kw = {"pitch_up_key": " -5 ", "original_audio_path": str(wav), "index_path": "added_bob", "pitch_collection_method": "pm",
          "model_path": "bob", "index_rate": 0.5, "filter_radius": 3.0, "resample_sr": 8000, "rms_mix_rate": 1, "protect": 0.33}
    call = convert.rvc_call(kw, voice_has_index=True)
    assert call.params == {"f0_up_key": -5, "f0_method": "pm", "index_rate": 0.5, "filter_radius": 3, "resample_sr": 0,
                           "rms_mix_rate": 1.0, "protect": 0.33}
    assert call.sample_rate == 44100 and call.audio.shape == (2, 4410)  # samples travel, not the path
    assert convert.rvc_call({**kw, "index_path": None}, voice_has_index=True).params["index_rate"] == 0.0
    no_index = convert.rvc_call(kw, voice_has_index=False)
    assert no_index.params["index_rate"] == 0.0 and "no index" in no_index.notes[0]
    assert convert.rvc_call({**kw, "resample_sr": 48000}, voice_has_index=True).params["resample_sr"] == 48000
    with pytest.raises(convert.InputError, match="pitch_up_key must be a whole number of semitones"):
        convert.rvc_call({**kw, "pitch_up_key": "up"}, voice_has_index=True)
    with pytest.raises(convert.InputError, match="no input audio"):
        convert.rvc_call({**kw, "original_audio_path": None}, voice_has_index=True)
    with pytest.raises(convert.InputError, match="does not exist"):
        convert.rvc_call({**kw, "original_audio_path": str(tmp_path / "gone.wav")}, voice_has_index=True)


def test_results_come_back_in_the_webuis_layout() -> None:
    mono = np.linspace(-1, 1, 8, dtype=np.float32)[None]  # the host's (1, T)
    rate, audio = convert.musicgen_output(mono, 32000, None)["audio_out"]
    assert (rate, audio.shape, audio.dtype) == (32000, (8,), np.float32)
    stereo = np.stack([mono[0], -mono[0]])  # (2, T) -> (T, 2), left then right
    _, audio = convert.musicgen_output(stereo, 32000, None)["audio_out"]
    assert audio.shape == (8, 2) and audio.flags.c_contiguous and audio[0, 0] == -1 and audio[0, 1] == 1
    rate, audio = convert.rvc_output(np.arange(5, dtype=np.int16), 40000)["audio_out"]
    assert (rate, audio.dtype, audio.tolist()) == (40000, np.int16, [0, 1, 2, 3, 4])
    tokens = convert.tokens_tensor(np.ones((4, 25), np.int32))
    assert tuple(tokens.shape) == (1, 4, 25) and str(tokens.dtype) == "torch.int64"  # as audiocraft returns them
    assert convert.tokens_tensor(None) is None
