"""``modelhost webui install|doctor|uninstall`` on real virtual environments laid out as TTS-WebUI lays
them out: the main environment at ``installer_files/env`` (Python 3.10, with pip, as the WebUI's
micromamba env) and the Audiocraft proxy environment ``.venvs/tts_webui_extension.audiocraft`` (made
without pip, as ``uv venv`` makes it). Packages come from the index through pip's cache."""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.launch import ROOT, short_tmp, start_host

PROXY = ".venvs/tts_webui_extension.audiocraft"
OTHER_DECORATOR = {"package_name": "extensions.builtin.extension_decorator_save_ffmpeg", "name": "Save Ogg",
                   "extension_type": "decorator", "extension_class": "outer"}


def _python310() -> str | None:
    for candidate in ("python3.10", *sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python"))):
        try:
            done = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 10))"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.stdout.strip() == "True":
            return candidate
    return None


def _clean_env() -> dict[str, str]:
    """The environment a WebUI's interpreter runs with: nothing pointing at this checkout's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def webui() -> Path:
    """A WebUI folder with its two environments, a voice, and an extensions.external.json holding another
    decorator, a tab and an older modelhost entry."""
    python = _python310()
    if python is None:
        pytest.skip("needs a Python 3.10 interpreter (TTS-WebUI's) to build the WebUI's environments; none found")
    root = short_tmp("mh-webui-env-") / "tts-webui"
    voice = root / "data" / "models" / "rvc" / "checkpoints" / "bob" / "bob.pth"
    voice.parent.mkdir(parents=True)
    voice.write_bytes(b"")
    (root / "server.py").write_text("# the WebUI's entry point\n")
    subprocess.run([python, "-m", "venv", str(root / "installer_files" / "env")], check=True, timeout=300)
    subprocess.run([python, "-m", "venv", "--without-pip", str(root / PROXY)], check=True, timeout=300)
    old = {"package_name": "webui_adapter", "name": "modelhost", "requirements": "modelhost",
           "extension_type": "decorator", "extension_class": "inner"}
    (root / "extensions.external.json").write_text(json.dumps(
        {"tabs": [{"package_name": "some_tab"}], "tabsInGroups": {}, "decorators": [old, OTHER_DECORATOR], "mine": 1}))
    return root


def _webui_cli(*args: str) -> subprocess.CompletedProcess:
    """``modelhost webui ARGS``, the command the README gives (the console script's entry point)."""
    return subprocess.run([str(Path(sys.executable).parent / "modelhost"), "webui", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def _adapter_imports(python: Path, root: Path) -> bool:
    done = subprocess.run([str(python), "-c", "import webui_adapter.main"], cwd=root, capture_output=True, timeout=120,
                          env=_clean_env())
    return done.returncode == 0


def test_install_doctor_and_uninstall_on_the_webuis_environments(webui: Path) -> None:
    pythons = {"main": webui / "installer_files" / "env" / "bin" / "python", "proxy": webui / PROXY / "bin" / "python"}
    assert not any(_adapter_imports(p, webui) for p in pythons.values())
    before = _webui_cli("doctor", str(webui))
    assert before.returncode == 1 and f"run `modelhost webui install {webui}`" in before.stdout

    done = _webui_cli("install", str(webui))
    assert done.returncode == 0, done.stderr
    assert f"main environment ({pythons['main']}, Python 3.10" in done.stdout
    assert f"{PROXY} ({pythons['proxy']}, Python 3.10" in done.stdout and "webui_adapter.main imports" in done.stdout
    assert all(_adapter_imports(p, webui) for p in pythons.values())

    data = json.loads((webui / "extensions.external.json").read_text())
    assert data["tabs"] == [{"package_name": "some_tab"}] and data["mine"] == 1  # everything else kept
    assert data["decorators"][0] == OTHER_DECORATOR and len(data["decorators"]) == 2  # the old entry replaced
    entry = data["decorators"][1]
    assert list(entry) == ["package_name", "name", "requirements", "description", "extension_type", "extension_class",
                           "author", "extension_author", "license", "website", "extension_website",
                           "extension_platform_version"]
    assert (entry["package_name"], entry["extension_type"], entry["extension_class"]) == ("webui_adapter", "decorator", "inner")
    wheel = Path(shlex.split(entry["requirements"])[0])  # what `pip install {requirements} gradio==5.49.1` gets
    assert wheel.is_file() and wheel.parent == webui / "data" / "modelhost" and wheel.name.startswith("modelhost-")
    assert entry["website"] == entry["extension_website"] == (ROOT / "README.md").as_uri()

    host = start_host("", args=("--webui", str(webui)))
    try:
        (webui / ".env.user").write_text(f"MODELHOST_ADDRESS={host.address}\n")  # the WebUI's own override file
        ok = _webui_cli("doctor", str(webui))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.count(f"the adapter loads (modelhost 0.1.0); it will reach {host.address}") == 2
        assert f"host {host.address}: answers; serves 20 of the WebUI's 20 models" in ok.stdout  # 11 + 6 MAGNeT hub ids + bob/bob
    finally:
        host.stop()
    down = _webui_cli("doctor", str(webui))
    assert down.returncode == 1 and "PROBLEM: no host answers" in down.stdout
    assert f"modelhost serve --webui {webui} --address {host.address}" in down.stdout

    gone = _webui_cli("uninstall", str(webui))
    assert gone.returncode == 0, gone.stderr
    assert "main environment" in gone.stdout and "removed modelhost 0.1.0" in gone.stdout
    assert not any(_adapter_imports(p, webui) for p in pythons.values())
    assert json.loads((webui / "extensions.external.json").read_text())["decorators"] == [OTHER_DECORATOR]
    assert not (webui / "data" / "modelhost").exists()



@pytest.mark.parametrize("args, needle", [
    (["install", "/nonexistent/webui"], "is not a folder"),
    (["doctor", "/"], "no Python environment of a TTS-WebUI in /"),
    (["install", "/", "--python", "/nonexistent/python3"], "--python /nonexistent/python3: no such interpreter"),
    (["frobnicate", "/"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: command"),
])
def test_bad_usage_is_one_line_and_exit_2(args, needle) -> None:
    done = _webui_cli(*args)
    assert done.returncode == 2 and needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_help_explains_each_command() -> None:
    for command in ("install", "uninstall", "doctor"):
        done = _webui_cli(command, "--help")
        assert done.returncode == 0 and "TTS-WebUI folder" in done.stdout and "--python" in done.stdout
