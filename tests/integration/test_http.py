"""The HTTP API against one real host (`serve --http` with an API key): the OpenAI and ElevenLabs SDKs and
plain HTTP, every endpoint and format, streaming, keys, disconnects, bad input, concurrency.

One host for the module: synth (text or audio in), a slow synth, tiny random-weight MusicGen and
AudioGen (they stream) and two RVC voices (``voices/alice``, ``voices/bob``: their ids hold a slash).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave

import httpx
import numpy as np
import pytest

from modelhost.client import Client
from tests.conftest import ROOT, SLOW_MODEL, start_host

KEY = "http-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no HTTP API at {url} within {timeout_s} s")


class Api:
    def __init__(self, host, url: str) -> None:
        self.host, self.url = host, url

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, headers={**AUTH, **kwargs.pop("headers", {})}, timeout=kwargs.pop("timeout", 120), **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, headers={**AUTH, **kwargs.pop("headers", {})}, timeout=30, **kwargs)

    def jobs(self) -> dict:
        with Client(self.host.address) as c:
            return c.health(timeout_s=5)["jobs"]


@pytest.fixture(scope="module")
def api(model_files):
    port = free_port()
    host = start_host(f"""
        preload = ["synth", "musicgen", "audiogen", "voices"]

        [host]
        heartbeat_s = 0.25
        client_liveness_s = 2

        [http]
        max_inflight = 6

        [models.synth]
        backend = "synth"
        width = 64

        [models.slow]
        {SLOW_MODEL}

        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
        max_duration_s = 60
        stream_interval_s = 0.5

        [models.audiogen]
        backend = "audiogen"
        checkpoint = "{model_files['audiogen']}"

        [models.voices]
        backend = "rvc"
        folder = "{model_files['voices']}"
        hubert = "{model_files['hubert']}"
    """, env={"MODELHOST_API_KEY": KEY}, args=("--http", f"127.0.0.1:{port}"), timeout_s=300)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        yield Api(host, url)
    finally:
        host.stop()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    from modelhost.host.http_api.codec import decode_audio

    return decode_audio(data, max_seconds=600)


def sine_wav(seconds: float = 0.5, rate: int = 16000, hz: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


# ---- OpenAI --------------------------------------------------------------------------------------------


def test_the_openai_sdk_lists_the_models_and_makes_every_format(api):
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=f"{api.url}/v1", max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"synth", "slow", "musicgen", "audiogen", "voices/alice", "voices/bob"} <= ids
    with Client(api.host.address) as c:
        reference = c.generate("synth", "a tone", params={"duration_s": 1.0, "seed": 5})
    expected = np.clip(np.rint(reference.audio[0] * 32768), -32768, 32767).astype(np.int16)
    for fmt, rate in [("wav", 32000), ("mp3", 32000), ("flac", 32000), ("opus", 48000), ("aac", 32000), ("pcm", 24000)]:
        reply = client.audio.speech.create(model="synth", input="a tone", voice="alloy", response_format=fmt,
                                           extra_body={"duration_s": 1.0, "seed": 5})
        data = reply.read()
        if fmt == "pcm":  # OpenAI's pcm: 24 kHz, 16-bit little-endian mono, no header
            assert len(data) == 2 * 24000
            continue
        audio, got_rate = decode(data)
        assert got_rate == rate, fmt
        assert abs(audio.shape[1] / rate - 1.0) < 0.1, (fmt, audio.shape)
        if fmt in ("wav", "flac"):  # lossless: the host's samples, as 16-bit
            got = np.rint(audio[0] * 32768).astype(np.int16)
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, fmt
    head = reply.response.headers
    assert head["content-type"] == "audio/pcm"


def test_model_parameters_go_as_extra_fields_or_in_params_as_tts_webui_sends_them(api):
    flat = api.post("/v1/audio/speech", json={"model": "synth", "input": "x", "response_format": "wav",
                                              "duration_s": 0.5, "seed": 9})
    nested = api.post("/v1/audio/speech", json={"model": "synth", "input": "x", "response_format": "wav",
                                                "params": {"duration_s": 0.5, "seed": 9}, "stream": False})
    assert flat.status_code == nested.status_code == 200
    assert flat.content == nested.content and len(flat.content) == 44 + 2 * 16000
    assert flat.headers["content-length"] == str(len(flat.content))  # a whole file states its length
    with wave.open(io.BytesIO(flat.content)) as w:
        assert w.getnframes() == 16000 and w.getframerate() == 32000


def test_speed_stretches_the_audio_keeping_its_rate(api):
    normal = api.post("/v1/audio/speech", json={"model": "synth", "input": "x", "response_format": "wav", "duration_s": 1.0})
    fast = api.post("/v1/audio/speech", json={"model": "synth", "input": "x", "response_format": "wav", "duration_s": 1.0,
                                              "speed": 2.0})
    a, b = decode(normal.content)[0], decode(fast.content)[0]
    assert abs(b.shape[1] / a.shape[1] - 0.5) < 0.02


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_a_streaming_model_sends_audio_long_before_it_ends(api, fmt):
    started = time.monotonic()
    first_s, parts = None, []
    with httpx.stream("POST", f"{api.url}/v1/audio/speech", headers=AUTH, timeout=120, json={
            "model": "musicgen", "input": "drums", "response_format": fmt, "duration": 6, "seed": 3}) as reply:
        assert reply.status_code == 200 and "content-length" not in reply.headers  # chunked
        for data in reply.iter_raw():
            if first_s is None:
                first_s = time.monotonic() - started
            parts.append(data)
    total_s = time.monotonic() - started
    body = b"".join(parts)
    assert first_s < 0.5 * total_s, (first_s, total_s)
    if fmt == "wav":  # length unknown when the header went out: RIFF and data sizes 0xFFFFFFFF, 44 bytes
        assert body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff" and body[36:44] == b"data\xff\xff\xff\xff"
        audio, rate = decode(body)
        assert rate == 32000 and abs(audio.shape[1] - 6 * 32000) <= 32000 * 0.05
    else:
        assert abs(len(body) - 2 * 24000 * 6) <= 2 * 24000 * 0.05
    whole = api.post("/v1/audio/speech", json={"model": "musicgen", "input": "drums", "response_format": "wav",
                                               "duration": 6, "seed": 3, "stream": False})
    if fmt == "wav":  # the streamed samples are the whole file's (the chunks join to the result)
        streamed, plain = decode(body)[0], decode(whole.content)[0]
        assert streamed.shape == plain.shape and np.abs(streamed - plain).max() <= 2 / 32768


@pytest.mark.parametrize("fmt, rate", [("mp3", 32000), ("flac", 32000), ("opus", 48000), ("aac", 32000)])
def test_every_format_streams_into_a_file_that_decodes_whole(api, fmt, rate):
    with httpx.stream("POST", f"{api.url}/v1/audio/speech", headers=AUTH, timeout=120, json={
            "model": "musicgen", "input": "drums", "response_format": fmt, "duration": 2}) as reply:
        assert reply.status_code == 200 and "content-length" not in reply.headers
        pieces = [data for data in reply.iter_raw()]
    assert len(pieces) >= 2  # sent as the chunks came, not in one piece
    audio, got_rate = decode(b"".join(pieces))
    assert got_rate == rate and abs(audio.shape[1] / rate - 2.0) < 0.1


def test_speed_applies_to_a_stream_too(api):
    reply = api.post("/v1/audio/speech", json={"model": "musicgen", "input": "drums", "response_format": "pcm",
                                               "duration": 2, "speed": 2.0})
    assert reply.status_code == 200 and abs(len(reply.content) / (2 * 24000) - 1.0) < 0.05  # 2 s played in 1 s


def test_stream_format_sse_sends_base64_audio_events_then_done(api):
    events = []
    with httpx.stream("POST", f"{api.url}/v1/audio/speech", headers=AUTH, timeout=120, json={
            "model": "musicgen", "input": "bells", "response_format": "pcm", "duration": 2, "stream_format": "sse"}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    import base64

    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 3
    assert events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert abs(len(pcm) - 2 * 24000 * 2) <= 2 * 24000 * 0.05


def test_voices_list_the_rvc_voices_and_take_ids_with_a_slash(api):
    voices = api.get("/v1/audio/voices").json()["voices"]
    assert {v["voice_id"] for v in voices} == {"voices/alice", "voices/bob"}
    assert api.get("/v1/audio/voices/voices/alice").json() == {"voices": [{"value": "voices/alice", "label": "voices/alice"}]}
    assert api.get("/v1/audio/voices/musicgen").json() == {"voices": [{"value": "default", "label": "default"}]}
    assert api.get("/v1/audio/models").json()["models"][0] == {"id": "synth"}
    missing = api.get("/v1/audio/voices/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"


# ---- ElevenLabs ----------------------------------------------------------------------------------------


def test_the_elevenlabs_sdk_makes_sound_effects_with_the_default_or_a_named_model(api):
    from elevenlabs.client import ElevenLabs

    client = ElevenLabs(api_key=KEY, base_url=api.url)
    pcm = b"".join(client.text_to_sound_effects.convert(text="rain", duration_seconds=1.0, output_format="pcm_16000"))
    assert len(pcm) == 2 * 16000  # audiogen (the default sound model), 1 s, 16-bit mono at 16 kHz
    mp3 = b"".join(client.text_to_sound_effects.convert(text="rain", duration_seconds=1.0, prompt_influence=0.8,
                                                        model_id="musicgen"))
    audio, rate = decode(mp3)  # ElevenLabs' default output_format: mp3_44100_128
    assert rate == 44100 and audio.shape[0] == 1 and abs(audio.shape[1] / rate - 1.0) < 0.1
    by_query = api.post("/v1/sound-generation?model=synth&output_format=wav_16000", json={"text": "x", "duration_seconds": 0.5})
    assert by_query.status_code == 200 and decode(by_query.content)[0].shape == (1, 8000)
    ulaw = api.post("/v1/sound-generation?output_format=ulaw_8000", json={"text": "x", "model_id": "synth", "duration_seconds": 0.5})
    assert ulaw.status_code == 200 and len(ulaw.content) == 4000 and ulaw.headers["content-type"] == "audio/basic"


def test_speech_to_speech_through_an_rvc_voice_by_the_sdk_and_both_paths(api):
    from elevenlabs.client import ElevenLabs

    client = ElevenLabs(api_key=KEY, base_url=api.url)
    wav = sine_wav(0.5)
    out = b"".join(client.speech_to_speech.convert(voice_id="voices/alice", audio=("in.wav", wav, "audio/wav"),
                                                   output_format="wav_16000"))
    audio, rate = decode(out)
    assert rate == 16000 and abs(audio.shape[1] - 8000) <= 320
    with Client(api.host.address) as c:  # the same conversion straight through the host
        direct = c.generate("voices/alice", audio=decode(wav)[0], sample_rate=16000, params={"f0_method": "pm", "f0_up_key": 12})
    for path in ("/v1/speech-to-speech/voices/alice", "/v1/voice-changer/voices/alice", "/v1/voice-changer/voices/alice/stream"):
        reply = api.post(f"{path}?output_format=pcm_{direct.sample_rate}", files={"audio": ("in.wav", wav)},
                         data={"f0_method": "pm", "f0_up_key": "12", "model_id": "eleven_multilingual_sts_v2"})
        assert reply.status_code == 200, reply.text
        got = np.frombuffer(reply.content, "<i2").astype(float)
        assert got.shape == direct.audio.shape, path  # RVC's excitation is random: the same length and shape of wave
        assert np.corrcoef(got, direct.audio.astype(float))[0, 1] > 0.9, path
    wrong = api.post("/v1/speech-to-speech/musicgen", files={"audio": ("in.wav", wav)})
    assert wrong.status_code == 404 and wrong.json()["error"]["param"] == "voice_id"


# ---- keys, errors, disconnects, concurrency -----------------------------------------------------------


def test_keys_none_wrong_right_and_both_headers(api):
    body = {"model": "synth", "input": "k", "response_format": "pcm", "duration_s": 0.1}

    def status(headers: dict) -> int:
        return httpx.post(f"{api.url}/v1/audio/speech", json=body, headers=headers, timeout=30).status_code

    none = httpx.post(f"{api.url}/v1/audio/speech", json=body, timeout=30)
    assert none.status_code == 401 and none.json()["error"]["code"] == "invalid_api_key"
    assert status({"Authorization": "Bearer wrong-key-0123456789"}) == 401
    assert status({"xi-api-key": "wrong-key-0123456789"}) == 401
    assert status({"Authorization": f"Bearer {KEY}"}) == 200
    assert status({"xi-api-key": KEY}) == 200
    assert status({"Authorization": f"Bearer {KEY}", "xi-api-key": KEY}) == 200
    assert status({"Authorization": "Bearer wrong-key-0123456789", "xi-api-key": KEY}) == 200
    assert httpx.get(f"{api.url}/v1/models", timeout=30).status_code == 401
    assert httpx.get(f"{api.url}/health", timeout=30).status_code == 200  # health checks need no key


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/audio/speech", {"model": "nobody", "input": "x"}, 404, "model"),
    ("/v1/audio/speech", {"input": "x"}, 400, "model"),
    ("/v1/audio/speech", {"model": "synth"}, 400, "input"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "response_format": "ogg"}, 400, "response_format"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "speed": 9}, 400, "speed"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "stream_format": "chunks"}, 400, "stream_format"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "duration_s": -1}, 400, "duration_s"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "params": {"duration_s": "long"}}, 400, "params.duration_s"),
    ("/v1/audio/speech", {"model": "synth", "input": "x", "wobble": 3}, 400, None),
    ("/v1/audio/speech", {"model": "voices/alice", "input": "x"}, 400, "model"),
    ("/v1/audio/speech", {"model": "musicgen", "input": "x" * 5000}, 400, "input"),
    ("/v1/sound-generation", {"text": "x", "duration_seconds": 0}, 400, "duration_seconds"),
    ("/v1/sound-generation", {"text": "x", "duration_seconds": 999}, 400, "duration_seconds"),
    ("/v1/sound-generation", {"text": "x", "prompt_influence": 2}, 400, "prompt_influence"),
    ("/v1/sound-generation?output_format=mp3_44100", {"text": "x"}, 400, "output_format"),
    ("/v1/sound-generation", {"text": "x", "model_id": "voices/bob"}, 400, "model_id"),
    ("/v1/sound-generation", {"text": "x", "model_id": "eleven_text_to_sound_v2"}, 404, "model_id"),
])
def test_bad_input_gets_its_status_and_names_the_field(api, path, body, status, param):
    reply = api.post(path, json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_bad_bodies_and_unknown_paths_are_json_errors(api):
    assert api.post("/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert api.post("/v1/audio/speech", json=["a", "list"]).status_code == 400
    no_audio = api.post("/v1/speech-to-speech/voices/alice", data={"f0_method": "pm"})
    assert no_audio.status_code == 400 and no_audio.json()["error"]["param"] == "audio"
    garbage = api.post("/v1/speech-to-speech/voices/alice", files={"audio": ("x.wav", b"not audio at all" * 10)})
    assert garbage.status_code == 400 and garbage.json()["error"]["param"] == "audio"
    assert api.get("/v1/nothing").json()["error"]["code"] == "not_found"
    wrong_method = api.get("/v1/audio/speech")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["message"]
    unknown_voice = api.post("/v1/voice-changer/voices/nobody", files={"audio": ("in.wav", sine_wav(0.2))})
    assert unknown_voice.status_code == 404 and unknown_voice.json()["error"]["param"] == "voice_id"


def _wait_idle(api: Api, within_s: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        jobs = api.jobs()
        if jobs["queued"] == 0 and jobs["running"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the host still runs {api.jobs()} {within_s} s after the HTTP client left")


def test_a_client_that_leaves_mid_stream_cancels_its_generation_on_the_host(api):
    with httpx.stream("POST", f"{api.url}/v1/audio/speech", headers=AUTH, timeout=120, json={
            "model": "musicgen", "input": "a long piece", "response_format": "pcm", "duration": 18}) as reply:
        next(reply.iter_raw())  # the first audio is here; the host works on the rest (18 s in 0.5 s chunks: minutes here)
        assert api.jobs()["running"] == 1
    _wait_idle(api, 10.0)  # the cancel lands at the next step: seconds, not the minutes the rest would take


def test_a_client_that_leaves_before_a_whole_answer_cancels_it_too(api):
    with pytest.raises(httpx.ReadTimeout):
        api.post("/v1/audio/speech", timeout=httpx.Timeout(30, read=1.0), json={
            "model": "musicgen", "input": "never heard", "response_format": "wav", "duration": 60, "stream": False})
    _wait_idle(api, 10.0)  # the cancel lands at the next step: seconds, not the minutes the rest would take


def test_concurrent_requests_each_get_their_own_audio(api):
    results: dict[int, bytes] = {}

    def one(seed: int) -> None:
        results[seed] = api.post("/v1/audio/speech", json={"model": "synth", "input": "c", "response_format": "wav",
                                                          "duration_s": 0.5, "seed": seed}).content

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Client(api.host.address) as c:
        for seed, data in results.items():
            expected = c.generate("synth", "c", params={"duration_s": 0.5, "seed": seed}).audio[0]
            got = decode(data)[0][0]
            assert np.abs(got - expected).max() < 2 / 32768, seed
    assert len(set(results.values())) == 6


def test_past_max_inflight_a_request_gets_503_at_once(api):
    body = json.dumps({"model": "slow", "input": "hold", "duration_s": 30, "response_format": "pcm"}).encode()
    request = (f"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: "
               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    port = int(api.url.rsplit(":", 1)[1])
    held = []
    try:
        for _ in range(6):  # six slow generations in flight: one runs, five queue behind it on the host
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            held.append(sock)
        deadline = time.monotonic() + 10
        while api.get("/health").json()["http_inflight"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = api.post("/v1/audio/speech", json={"model": "synth", "input": "x", "response_format": "pcm"})
        assert busy.status_code == 503 and busy.headers["retry-after"] and busy.json()["error"]["code"] == "host_busy"
    finally:
        for sock in held:
            sock.close()  # each disconnect cancels its generation on the host
    _wait_idle(api, 10.0)


def test_the_readmes_http_examples_run(api, tmp_path):
    """The README's curl and SDK examples, against this host (its port; its voice voices/alice for voices/voice-a)."""
    section = (ROOT / "README.md").read_text().split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, re.S)
    port = api.url.rsplit(":", 1)[1]
    (tmp_path / "in.wav").write_bytes(sine_wav(0.5))
    env = {**os.environ, "MODELHOST_API_KEY": KEY}
    ran = 0
    for kind, code in blocks:
        if kind == "bash" and "curl" not in code:
            continue  # the set-up and serve lines
        if kind == "bash" and shutil.which("curl") is None:
            continue
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("voices/voice-a", "voices/alice")
        command = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{kind} example failed:\n{code}\n{done.stderr[-2000:]}"
        ran += 1
    assert ran >= 2
    for name in ("build.wav", "rain.mp3", "sung.wav") + (("beat.mp3", "rain.wav") if shutil.which("curl") else ()):
        audio, _ = decode((tmp_path / name).read_bytes())
        assert audio.shape[1] > 0, name
