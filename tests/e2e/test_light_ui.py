"""The light UI end to end: real Gradio servers (Python 3.10, no torch) in subprocesses on a real host.

Called the two ways a user's tools call it: ``gradio_client`` on the API names TTS-WebUI's React UI
uses (``/musicgen``, ``/rvc``), and headless Chromium (Debian's, driven by Selenium) clicking
Generate on the page. Two instances on two ports share one host: the host loads each model once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.wavfile import read_wav, write_wav
from tests.conftest import ROOT

PY310 = ROOT / ".venv-py310" / "bin" / "python"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
MUSICGEN_API = ["text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef", "seed",
                "use_multi_band_diffusion"]
RVC_API = ["pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method", "model_path", "index_rate",
           "filter_radius", "resample_sr", "rms_mix_rate", "protect"]

pytestmark = pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (Python 3.10 + Gradio, the WebUI side): "
                                                           "the README's test command creates it")


class LightUI:
    def __init__(self, host_address: str, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_dir / f"ui-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.started_s = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([str(PY310), "-m", "webui_adapter", "--port", str(self.port), "--address", host_address],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"light UI exited:\n{self.log_path.read_text()}"
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started_s
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"light UI not up within {timeout_s} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def uis(model_host, tmp_path_factory):
    """Two light UI instances (think ports 4200 and 4201) on the one session host."""
    log_dir = tmp_path_factory.mktemp("ui-logs")
    started = [LightUI(model_host.address, log_dir) for _ in range(2)]
    try:
        for ui in started:
            ui.wait_ready()
        yield started
    finally:
        for ui in started:
            ui.stop()


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory) -> Path:
    t = np.arange(22050) / 22050
    tone = (sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6)) * 0.2).astype(np.float32)
    return write_wav(tmp_path_factory.mktemp("in") / "voice.wav", tone, 22050)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gradio(ui: LightUI):
    from gradio_client import Client as GradioClient

    return GradioClient(ui.url, verbose=False)


def _musicgen(ui: LightUI, **overrides):
    params = dict(text="calm piano", melody=None, model_name="musicgen", duration=2, topk=250, topp=0, temperature=1,
                  cfg_coef=3, seed=11, use_multi_band_diffusion=False)
    return _gradio(ui).predict(**{**params, **overrides}, api_name="/musicgen")


def test_the_api_takes_tts_webuis_names(uis) -> None:
    endpoints = _gradio(uis[0]).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/musicgen"]["parameters"]] == MUSICGEN_API
    assert [p["parameter_name"] for p in endpoints["/rvc"]["parameters"]] == RVC_API
    assert len(endpoints["/musicgen"]["returns"]) == len(endpoints["/rvc"]["returns"]) == 3  # audio, metadata, folder_root


def test_musicgen_through_gradio_client(uis, model_host) -> None:
    audio_path, metadata, folder_root = _musicgen(uis[0])
    audio, rate = read_wav(audio_path)
    assert (rate, audio.shape) == (32000, (1, 64000)) and np.abs(audio).max() > 0
    assert metadata["host_model"] == "musicgen" and metadata["seed"] == 11 and folder_root == ""
    with Client(model_host.address) as c:  # the same seed straight from the host gives the same audio
        direct = c.generate("musicgen", "calm piano", params={"duration": 2, "seed": 11})
    peak = np.abs(direct.audio).max()  # Gradio writes 16-bit WAV scaled to the peak
    np.testing.assert_allclose(audio[0], direct.audio[0] / peak, atol=2 / 32767)


def test_rvc_through_gradio_client(uis, voice_wav) -> None:
    from gradio_client import handle_file

    audio_path, metadata, _ = _gradio(uis[0]).predict(
        pitch_up_key="12", original_audio_path=handle_file(str(voice_wav)), index_path="added_IVF8_Flat_nprobe_1_alice_v2",
        pitch_collection_method="pm", model_path="alice", index_rate=0.5, filter_radius=3, resample_sr=0, rms_mix_rate=1,
        protect=0.33, api_name="/rvc")
    audio, rate = read_wav(audio_path)
    assert rate == 32000 and abs(audio.shape[1] / rate - 1.0) < 0.05
    assert metadata["host_model"] == "voices/alice" and metadata["host_params"]["f0_up_key"] == 12
    assert 350 < metadata["f0_median_hz"] < 450  # 200 Hz up an octave: the voice really converted it


def test_errors_reach_the_caller_with_what_to_fix(uis) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="serves no musicgen/audiogen model for 'facebook/musicgen-large'"):
        _musicgen(uis[0], model_name="facebook/musicgen-large")
    with pytest.raises(AppError, match=r"temperature must be a number in \(0, 100\]"):
        _musicgen(uis[0], temperature=0)


def test_two_instances_share_the_hosts_models(uis, model_host) -> None:
    with Client(model_host.address) as c:
        before = {m["name"]: m for m in c.ps()}
        for ui in uis:
            audio_path, metadata, _ = _musicgen(ui, seed=21)
            assert read_wav(audio_path)[0].shape == (1, 64000)
        after = {m["name"]: m for m in c.ps()}
    assert after["musicgen"]["loads"] == before["musicgen"]["loads"] == 1  # loaded once, at host start
    assert after["musicgen"]["hits"] == before["musicgen"]["hits"] + 2


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="no Debian chromium + chromium-driver: setup.sh --test installs them with apt-get (as root)")
def test_generate_in_headless_chromium(uis, tmp_path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="mh-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(uis[1].url)
        wait = WebDriverWait(driver, 90)
        # the model list arrives from the host's ps when the page loads
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-model input").get_attribute("value") == "musicgen")
        driver.find_element(By.CSS_SELECTOR, "#musicgen-generate").click()
        link = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#musicgen-result a[download][href*='.wav']"))[0]
        assert driver.find_elements(By.CSS_SELECTOR, "#musicgen-result audio")  # the page shows an audio player
        duration = driver.find_element(By.CSS_SELECTOR, "#musicgen-result #duration").text
        with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as r:
            wav = r.read()
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    (tmp_path / "result.wav").write_bytes(wav)
    audio, rate = read_wav(tmp_path / "result.wav")
    assert (rate, audio.shape) == (32000, (1, 320000)) and np.abs(audio).max() > 0  # the UI's default: 10 s
    assert duration == "0:10"
