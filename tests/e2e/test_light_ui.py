"""The light UI end to end: real Gradio servers (Python 3.10, TTS-WebUI's Gradio, no torch) on a real host.

Two instances on two ports share one host (the host loads each model once), and headless Chromium
(Debian's, driven by Selenium) opens one, sees the WebUI's model picker, clicks Generate and gets
the audio and the folder it was saved in; its streaming player is heard while the host still generates,
and leaving the page stops the generation. The host serves the WebUI-shaped tree of
``tests/support/webui_tree.py`` under the WebUI's own names; React's calls are in
``tests/integration/test_light_ui_api.py``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from modelhost.client import Client
from modelhost.client.wavfile import read_wav
from tests.conftest import start_host
from tests.support.light_ui import PY310, LightUI

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310 (Python 3.10 + Gradio, the WebUI side): "
                                                           "the README's test command creates it")


@pytest.fixture(scope="module")
def tree_host(webui_tree):
    h = start_host("preload = [\"facebook/musicgen-small\"]\n[host]\nheartbeat_s = 0.25\n",
                   args=("--webui", str(webui_tree.root)), timeout_s=300)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def uis(tree_host, webui_tree, tmp_path_factory):
    """Two light UI instances (think ports 4200 and 4201) on the one host, saving into the WebUI's outputs/."""
    log_dir = tmp_path_factory.mktemp("ui-logs")
    started = [LightUI(tree_host.address, log_dir, webui_root=webui_tree.root) for _ in range(2)]
    try:
        for ui in started:
            ui.wait_ready()
        yield started
    finally:
        for ui in started:
            ui.stop()


def test_two_instances_share_the_hosts_models(uis, tree_host, webui_tree) -> None:
    with Client(tree_host.address) as c:
        before = {m["name"]: m for m in c.ps()}
        for seed, ui in enumerate(uis):
            audio_path, metadata, folder_root = ui.client().predict(
                text="calm piano", melody=None, model_name="facebook/musicgen-small", duration=2, topk=250, topp=0,
                temperature=1, cfg_coef=3, seed=str(21 + seed), use_multi_band_diffusion=False, api_name="/musicgen")
            assert read_wav(audio_path)[0].shape == (1, 64000) and (webui_tree.root / folder_root).is_dir()
        after = {m["name"]: m for m in c.ps()}
    small = "facebook/musicgen-small"
    assert after[small]["loads"] == before[small]["loads"] == 1  # loaded once, at host start
    assert after[small]["hits"] == before[small]["hits"] + 2


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="no Debian chromium + chromium-driver: setup.sh --test installs them with apt-get (as root)")
def test_generate_in_headless_chromium(uis, webui_tree, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, profile = _chromium()
    try:
        driver.get(uis[1].url)
        wait = WebDriverWait(driver, 90)
        # the WebUI's picker, by its labels; the page's default is the model React starts with
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-model input").get_attribute("value") == "Small")
        driver.find_element(By.CSS_SELECTOR, "#musicgen-generate").click()
        link = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#musicgen-result a[download][href*='.wav']"))[0]
        assert driver.find_elements(By.CSS_SELECTOR, "#musicgen-result audio")  # the page shows an audio player
        # the player shows the length once the browser has read the audio's metadata
        duration = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-result #duration").text.strip()
                              not in ("", "0:00") and d.find_element(By.CSS_SELECTOR, "#musicgen-result #duration").text)
        folder_root = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-folder textarea").get_attribute("value"))
        with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as r:
            wav = r.read()
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    (tmp_path / "result.wav").write_bytes(wav)
    audio, rate = read_wav(tmp_path / "result.wav")
    assert (rate, audio.shape) == (32000, (1, 320000)) and np.abs(audio).max() > 0  # the UI's default: 10 s
    assert duration == "0:10"
    name = Path(folder_root).name  # "Saved in": the folder React's History and the WebUI's History tab read
    assert folder_root.startswith("outputs/") and (webui_tree.root / folder_root / f"{name}.ogg").is_file()


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="no Debian chromium + chromium-driver: setup.sh --test installs them with apt-get (as root)")
@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="no ffmpeg: Gradio re-encodes streamed audio with it (setup.sh --test installs it)")
def test_the_page_plays_the_audio_while_the_host_still_generates(uis, tree_host, webui_tree, tmp_path) -> None:
    """Generate on the page: its streaming player is playing (its clock has moved) while the host's one job still
    runs, and the whole result and its saved folder arrive after."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    player = "document.querySelector('#musicgen-live audio')"
    driver, profile = _chromium()
    try:
        with Client(tree_host.address) as c:
            wait = _generate_on_page(driver, uis[0].url, 20)  # long enough on the tiny model to be heard well before its end
            wait.until(lambda d: c.health()["jobs"]["running"] == 1)  # the host has started generating
            wait.until(lambda d: d.execute_script(f"return ({player}?.currentTime || 0) > 0"))
            jobs_while_playing = c.health()["jobs"]
            played = driver.execute_script(f"const a = {player}; return [a.currentTime, a.paused]")
            wait = WebDriverWait(driver, 180)
            folder_root = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-folder textarea").get_attribute("value"))
            duration = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-result #duration").text.strip()
                                  not in ("", "0:00") and d.find_element(By.CSS_SELECTOR, "#musicgen-result #duration").text)
            played_at_end = driver.execute_script(f"return {player}.currentTime")
            driver.save_screenshot(str(tmp_path / "streaming.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert jobs_while_playing["running"] == 1, jobs_while_playing  # playing before the generation ended
    assert played[0] > 0 and played[1] is False
    assert played_at_end >= played[0]
    assert duration == "0:20"  # the whole result, once it is made
    name = Path(folder_root).name
    assert folder_root.startswith("outputs/") and (webui_tree.root / folder_root / f"{name}.wav").is_file()


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="no Debian chromium + chromium-driver: setup.sh --test installs them with apt-get (as root)")
@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="no ffmpeg: Gradio re-encodes streamed audio with it (setup.sh --test installs it)")
def test_leaving_the_page_mid_stream_stops_the_generation_on_the_host(uis, tree_host, webui_tree) -> None:
    outputs = webui_tree.root / "outputs"
    saved = lambda: set(outputs.iterdir()) if outputs.is_dir() else set()  # noqa: E731
    saved_before = saved()
    driver, profile = _chromium()
    try:
        with Client(tree_host.address) as c:
            wait = _generate_on_page(driver, uis[1].url, 30)
            wait.until(lambda d: d.execute_script("return (document.querySelector('#musicgen-live audio')?.currentTime || 0) > 0"))
            assert c.health()["jobs"]["running"] == 1
            driver.quit()  # the page goes away mid-generation
            left = time.monotonic()
            while c.health()["jobs"] != {"queued": 0, "running": 0} and time.monotonic() - left < 60:
                time.sleep(0.1)
            stopped_after_s = time.monotonic() - left
            jobs = c.health()["jobs"]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert jobs == {"queued": 0, "running": 0}
    # Gradio notices the page is gone and closes the handler after its next chunk (every 2 s of audio), which
    # cancels the request (~6 s here); the whole 30 s piece takes over 30 s on this tiny model on a 2-core CPU
    assert stopped_after_s < 15, stopped_after_s
    assert saved() == saved_before  # nothing half-made was saved


def _generate_on_page(driver, url: str, seconds: int):
    """Open the light UI, wait for its model list, ask for ``seconds`` of MusicGen and press Generate; a 90 s waiter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#musicgen-model input").get_attribute("value") == "Small")
    field = driver.find_element(By.CSS_SELECTOR, "#musicgen-duration input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(seconds), Keys.TAB)
    driver.find_element(By.CSS_SELECTOR, "#musicgen-generate").click()
    return wait


def _chromium():
    """Headless Debian Chromium through its chromedriver, in a fresh profile (removed by the caller)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="mh-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options), profile


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="no Debian chromium + chromium-driver: setup.sh --test installs them with apt-get (as root)")
def test_the_host_tab_draws_each_devices_budget_and_manages_models(uis, tree_host, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    small = "facebook/musicgen-small"
    driver, profile = _chromium()
    try:
        driver.get(uis[0].url)
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_element(By.ID, "host-tab-button")).click()

        def segments():  # read in one script call: the tab redraws the bars every 2 s
            return set(driver.execute_script(
                "return [...document.querySelectorAll(\"#host-memory .device[data-device='cpu'] .seg\")]"
                ".map(e => e.dataset.model)"))
        wait.until(lambda d: small in segments())  # preloaded: resident on the CPU
        driver.save_screenshot(str(tmp_path / "host-tab.png"))  # the test's artefact
        picker = driver.find_element(By.CSS_SELECTOR, "#host-model input")
        picker.send_keys(small, Keys.ENTER)
        driver.find_element(By.ID, "host-unload").click()
        wait.until(lambda d: small not in segments())  # the bar lost it: unloaded on the host
        status = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#host-status textarea").get_attribute("value"))
        driver.find_element(By.ID, "host-load").click()
        wait.until(lambda d: small in segments())
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert status == f"{small}: unloaded"
    with Client(tree_host.address) as c:
        assert {m["name"]: m for m in c.ps()}[small]["state"] == "ready"
