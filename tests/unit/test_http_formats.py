"""The HTTP API's pure parts: format names (OpenAI's and ElevenLabs'), the encoder round trip, and [http] config."""

from __future__ import annotations

import numpy as np
import pytest

from modelhost.host.config import ConfigError, parse_config
from modelhost.host.http_api.codec import AudioEncoder, decode_audio
from modelhost.host.http_api.formats import FormatError, elevenlabs_format, openai_format, output_rate_hz


@pytest.mark.parametrize("name, container, rate, kbps", [
    ("mp3_44100_128", "mp3", 44100, 128), ("mp3_22050_32", "mp3", 22050, 32), ("opus_48000_64", "ogg", 48000, 64),
    ("pcm_16000", "s16le", 16000, None), ("wav_44100", "wav", 44100, None), ("ulaw_8000", "mulaw", 8000, None),
    ("alaw_8000", "alaw", 8000, None),
])
def test_elevenlabs_output_formats(name, container, rate, kbps):
    fmt = elevenlabs_format(name)
    assert (fmt.container, fmt.rate_hz, fmt.channels) == (container, rate, 1)
    assert fmt.bit_rate == (kbps * 1000 if kbps else None)


@pytest.mark.parametrize("name, says", [
    ("mp3_44100", "need a bit rate"), ("pcm_16000_64", "takes no bit rate"), ("mp3_40000_128", "not possible"),
    ("opus_44100_64", "not possible"), ("ulaw_16000", "not possible"), ("ogg_44100", "codec_rate"), (7, "codec_rate"),
    ("mp3_44100_999", "8 to 320 kbps"),
])
def test_bad_elevenlabs_formats_say_what_exists(name, says):
    with pytest.raises(FormatError, match=says):
        elevenlabs_format(name)


def test_openai_formats_and_the_rate_each_codec_takes():
    assert openai_format("pcm").rate_hz == 24000 and openai_format("pcm").channels == 1
    with pytest.raises(FormatError, match="wav, mp3, flac, opus, aac, pcm"):
        openai_format("ogg")
    assert output_rate_hz(openai_format("wav"), 40000) == 40000
    assert output_rate_hz(openai_format("mp3"), 40000) == 44100  # LAME has no 40 kHz: the next rate up
    assert output_rate_hz(openai_format("aac"), 32000) == 32000
    assert output_rate_hz(openai_format("opus"), 16000) == 48000


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_wav_round_trip_keeps_16_bit_samples_whole_or_in_pieces(dtype):
    rng = np.random.default_rng(1)
    samples = rng.integers(-20000, 20000, size=(2, 40000)).astype(np.int16)
    audio = samples if dtype == np.int16 else samples.astype(np.float32) / 32768
    whole = AudioEncoder(openai_format("wav"), whole=True)
    whole.push(audio, 32000)
    streamed = AudioEncoder(openai_format("wav"), whole=False)
    pieces = [streamed.push(audio[:, i:i + 3000], 32000) for i in range(0, 40000, 3000)] + [streamed.finish()]
    for data in (whole.finish(), b"".join(pieces)):
        decoded, rate = decode_audio(data, max_seconds=10)
        assert rate == 32000 and np.array_equal(np.rint(decoded * 32768).astype(np.int16), samples)


def test_http_config_needs_a_key_off_loopback_and_long_keys(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELHOST_API_KEY", raising=False)
    address = "ipc:///tmp/x/host.sock"
    assert parse_config({"http": {"listen": "127.0.0.1:8000"}}, address=address).http.api_keys == ()
    with pytest.raises(ConfigError, match="reachable from other machines without a key"):
        parse_config({"http": {"listen": "0.0.0.0:8000"}}, address=address)
    keys = tmp_path / "keys"
    keys.write_text("first-key-0123456789\n\nsecond-key-0123456789\n")
    config = parse_config({"http": {"listen": "0.0.0.0:8000", "api_keys_file": str(keys)}}, address=address).http
    assert config.api_keys == ("first-key-0123456789", "second-key-0123456789") and config.url == "http://127.0.0.1:8000"
    monkeypatch.setenv("MODELHOST_API_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        parse_config({"http": {"listen": "127.0.0.1:8000"}}, address=address)
    monkeypatch.delenv("MODELHOST_API_KEY")
    with pytest.raises(ConfigError, match="unknown keys in \\[http\\]"):
        parse_config({"http": {"listen": "127.0.0.1:8000", "port": 1}}, address=address)
    assert parse_config({"http": {"listen": "[::1]:8000"}}, address=address).http.url == "http://[::1]:8000"
