"""`serve --http ... --register-with URL` against the real TTS-WebUI OpenAI API extension (its release pinned in
setup.sh, run as its own uvicorn process by tests/support/tts_webui_api.py): registration in its proxy
registry, its forwarding reaching the resident models (whole and streamed), voices, and registration again
after the WebUI restarts (its registry lives in memory only).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from modelhost.client import Client
from tests.conftest import ROOT, start_host
from tests.integration.test_http import decode, free_port, wait_http

pytest.importorskip("tts_webui_extension.openai_tts_api", reason="TTS-WebUI's OpenAI API extension is not installed "
                    "(./setup.sh --test installs it)")

OUR_KEY = "modelhost-key-0123456789abcdef"
WEBUI_KEY = "webui-key-0123456789abcdef"
WEBUI_AUTH = {"Authorization": f"Bearer {WEBUI_KEY}"}


class WebuiApi:
    """The extension's server process; ``restart`` starts a fresh one (an empty registry) on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.tts_webui_api", str(self.port)], cwd=ROOT,
                                     env={**_env(), "OPENAI_API_KEY": WEBUI_KEY})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("TTS-WebUI's API extension did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def registrations(self) -> dict[str, dict]:
        reply = httpx.get(f"{self.url}/tts_webui/proxy/register", headers=WEBUI_AUTH, timeout=10)
        reply.raise_for_status()
        return {r["model"]: r for r in reply.json()["registrations"]}

    def wait_registered(self, names: set[str], timeout_s: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.registrations()
            if names <= set(found):
                return found
            time.sleep(0.2)
        raise AssertionError(f"not registered within {timeout_s} s: {names - set(self.registrations())}")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}


@pytest.fixture(scope="module")
def webui():
    api = WebuiApi()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def served(webui, model_files):
    port = free_port()
    host = start_host(f"""
        preload = ["synth", "musicgen"]

        [models.synth]
        backend = "synth"
        width = 64

        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{model_files['musicgen']}"
        stream_interval_s = 0.5

        [models.voices]
        backend = "rvc"
        folder = "{model_files['voices']}"
        hubert = "{model_files['hubert']}"
    """, env={"MODELHOST_API_KEY": OUR_KEY, "MODELHOST_REGISTER_KEY": WEBUI_KEY},
        args=("--http", f"127.0.0.1:{port}", "--register-with", webui.url), timeout_s=300)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        yield host, url
    finally:
        host.stop()


def test_each_text_model_is_registered_with_our_url_and_key(webui, served):
    host, url = served
    found = webui.wait_registered({"synth", "musicgen"}, timeout_s=15)
    assert found["synth"]["url"] == url and found["synth"]["has_api_key"] is True
    assert not any(name.startswith("voices/") for name in found)  # voices convert audio: the WebUI sends text


def test_the_webuis_speech_endpoint_reaches_the_resident_model(webui, served):
    host, _ = served
    webui.wait_registered({"synth"}, timeout_s=15)
    reply = httpx.post(f"{webui.url}/v1/audio/speech", headers=WEBUI_AUTH, timeout=120, json={
        "model": "synth", "input": "through the webui", "params": {"duration_s": 1.0, "seed": 4}})
    assert reply.status_code == 200, reply.text
    audio, rate = decode(reply.content)
    with Client(host.address) as c:
        direct = c.generate("synth", "through the webui", params={"duration_s": 1.0, "seed": 4})
    assert rate == direct.sample_rate and audio.shape[1] == direct.audio.shape[-1]
    assert np.abs(audio[0] - direct.audio[0]).max() <= 2 / 32768  # 16-bit WAV both ways
    voices = httpx.get(f"{webui.url}/v1/audio/voices/musicgen", headers=WEBUI_AUTH, timeout=30).json()
    assert voices == {"voices": [{"value": "default", "label": "default"}]}


def test_the_webuis_streaming_forwarder_relays_audio_as_it_is_made(webui, served):
    """The extension's own streaming adapter (what its speech endpoint runs for a streamed request), called as
    the WebUI calls it: it posts stream true and relays 4 KiB pieces."""
    from tests.support.tts_webui_api import stand_in_for_the_webui_config

    stand_in_for_the_webui_config()
    from tts_webui_extension.openai_tts_api.services.proxy_registry import ProxyRegistration, _make_proxy_streaming_adapter

    _, url = served
    adapter = _make_proxy_streaming_adapter(ProxyRegistration(model="musicgen", url=url, api_key=OUR_KEY))
    started = time.monotonic()
    first_s, pieces = None, []
    for piece in adapter("musicgen", "drums", None, 1.0, {"duration": 6, "seed": 2}):
        first_s = first_s if first_s is not None else time.monotonic() - started
        pieces.append(piece)
    total_s = time.monotonic() - started
    body = b"".join(pieces)
    assert first_s < 0.5 * total_s, (first_s, total_s)
    assert body[:4] == b"RIFF" and body[36:44] == b"data\xff\xff\xff\xff"  # a streamed WAV: length unknown
    from scipy.io import wavfile

    rate, samples = wavfile.read(io.BytesIO(body))  # what the WebUI's own WAV reader makes of it
    assert rate == 32000 and abs(len(samples) - 6 * 32000) <= 32000 * 0.05


def test_after_the_webui_restarts_the_models_are_registered_again(webui, served):
    webui.wait_registered({"synth", "musicgen"}, timeout_s=15)
    webui.stop()
    webui.start()  # a fresh process: its registry starts empty, and only the host's loop can fill it
    webui.wait_registered({"synth", "musicgen"}, timeout_s=15)
    reply = httpx.post(f"{webui.url}/v1/audio/speech", headers=WEBUI_AUTH, timeout=120, json={
        "model": "musicgen", "input": "again", "params": {"duration": 1}})
    assert reply.status_code == 200 and decode(reply.content)[1] == 32000


def test_a_host_that_stops_takes_its_entries_out_of_the_registry(webui, served):
    host, _ = served
    webui.wait_registered({"synth", "musicgen"}, timeout_s=15)
    assert host.stop() == 0
    assert not ({"synth", "musicgen"} & set(webui.registrations()))
