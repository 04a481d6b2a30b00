"""A TTS-WebUI install with the WebUI's code, real extensions in its real environment layout, and tiny models.

For the WebUI-runner tests (``tests/integration/test_webui_runners.py``). TTS-WebUI's own code is not on the
package index (the ``tts-webui`` release there holds metadata only) and CI cannot reach GitHub, so the WebUI's
``tts_webui`` package comes from one of two places (``webui_source``):

* a checkout named by ``MODELHOST_TTS_WEBUI`` (a TTS-WebUI folder, or a git directory holding ``WEBUI_COMMIT``,
  exported once into ``.venv-webui/``): the real code;
* otherwise modelhost's stand-in, ``tests/support/tts_webui_standin`` (written from reading the real code at
  ``WEBUI_COMMIT``: the modules, functions and behaviour the tests, the MMS extension and the WebUI runner use;
  each module says what it leaves out). The same tests pass on both, which is how the stand-in is checked.

``setup.sh --test`` builds the environments into ``.venv-webui/`` (without them the tests skip, saying so):

* ``main``: the WebUI's main environment (``installer_files/env``), with TTS-WebUI's Gradio pin and
  python-dotenv, two extensions of the WebUI's recommended list from the package index
  (``tts-webui-extension-mms`` and ``tts-webui-extension-seamless-m4t``; the latter made to load on a
  machine without CUDA by ``tests/support/webui_site``) and modelhost;
* ``proxy``: a proxied extension's ``.venvs/<package>``, here ``tts_webui_extension.modelhost_tone``
  (``tests/support/webui_extension``: a generator written as the WebUI's are);
* ``kokoro``, only where ``$MODELHOST_WEBUI_KOKORO`` named a checkout of Kokoro's extension at setup (its code is on
  GitHub only): ``.venvs/tts_webui_extension.kokoro``, with kokoro's packages from the index.

Both share the host environment's torch and transformers through a ``.pth`` (the only CPU torch on this
machine kind is for Python 3.11); everything else is their own. ``build_runner_webui(base)`` lays out::

    BASE/webui/                          the WebUI root (working directory of every WebUI process)
      tts_webui -> <source>/tts_webui    the WebUI's code; extensions.json copied from the same source
      extensions.external.json           the modelhost decorator registered, as `modelhost webui install` does
      installer_files/env -> .venv-webui/main
      .venvs/tts_webui_extension.modelhost_tone -> .venv-webui/proxy
      .env                               as the WebUI writes it, plus HF_HOME and the offline switches
      config.json                        the WebUI's defaults (a test checks no runner rewrites it)
    BASE/hf/hub/models--facebook--mms-tts-eng/            a random VITS (MMS), saved by transformers, in the hub's layout
    BASE/hf/hub/models--facebook--seamless-m4t-v2-large/  a random SeamlessM4Tv2 with its processor, likewise
    BASE/hf/hub/models--hexgrad--Kokoro-82M/              a random Kokoro and a voice (with the kokoro environment)

Runs in the calling thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.launch import ROOT
from tests.support.webui_tree import write_dotenv, write_hub_snapshot

WEBUI_COMMIT = "8c9046ba573765e1986aa3421d4f4bac50cc6972"  # rsxdalv/TTS-WebUI, 2026-05-15
SOURCE_ENV = "MODELHOST_TTS_WEBUI"
STANDIN = ROOT / "tests" / "support" / "tts_webui_standin"  # modelhost's stand-in for the WebUI's tts_webui package
ENVS = ROOT / ".venv-webui"
MAIN_PYTHON = ENVS / "main" / "bin" / "python"
PROXY_PYTHON = ENVS / "proxy" / "bin" / "python"
TONE_PACKAGE = "tts_webui_extension.modelhost_tone"
MMS_HUB = "facebook/mms-tts-eng"
MMS_VERSION = "0.1.0"  # tts-webui-extension-mms, as setup.sh installs it
SEAMLESS_HUB = "facebook/seamless-m4t-v2-large"
SEAMLESS_VERSION = "0.0.7"  # tts-webui-extension-seamless-m4t, as setup.sh installs it
MMS_CALL = {"call": "mms", "kwargs": {"text": "hello world", "seed": "7"}}  # a tab call of webui_process.py
SEAMLESS_CALL = {"call": "seamless", "kwargs": {"text": "good morning", "tgt_lang_name": "French", "seed": "3"}}
KOKORO_PACKAGE = "tts_webui_extension.kokoro"
KOKORO_PYTHON = ENVS / "kokoro" / "bin" / "python"
KOKORO_COMMIT = "b130a79153754df4fd5e2e73272d448001602da8"  # rsxdalv/tts_webui_extension.kokoro 0.3.1, as setup.sh pins it
KOKORO_HUB = "hexgrad/Kokoro-82M"


@dataclass(frozen=True)
class RunnerWebui:
    root: Path
    hf_home: Path
    main_python: Path  # as the WebUI runs it: <root>/installer_files/env/bin/python
    proxy_python: Path  # <root>/.venvs/<package>/bin/python
    code: str  # whose tts_webui the WebUI runs (``code_description``)
    kokoro_python: Path | None = None  # <root>/.venvs/tts_webui_extension.kokoro/bin/python, where set up


def why_not_available() -> str | None:
    """None when the tests can run; else what is missing and how to get it."""
    if not (MAIN_PYTHON.exists() and PROXY_PYTHON.exists()):
        return "no .venv-webui/{main,proxy} (the WebUI's environments): `./setup.sh --test` builds them"
    return None


def webui_source() -> Path:
    """A folder holding ``tts_webui/`` and ``extensions.json``: the real TTS-WebUI at ``WEBUI_COMMIT`` when
    ``$MODELHOST_TTS_WEBUI`` names one (the folder itself, or exported from it when it is a git directory), else
    modelhost's stand-in. A ``$MODELHOST_TTS_WEBUI`` that holds neither fails loudly, never falls back."""
    given = os.environ.get(SOURCE_ENV)
    if not given:
        return STANDIN
    path = Path(given).expanduser()
    if (path / "tts_webui").is_dir():
        return path
    out = ENVS / f"tts-webui-{WEBUI_COMMIT[:7]}"
    if not (out / "tts_webui").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", f"--git-dir={path}", "archive", WEBUI_COMMIT, "tts_webui", "extensions.json"],
                                 capture_output=True, timeout=120)
        if archive.returncode != 0:
            raise RuntimeError(f"{SOURCE_ENV}={given} is neither a TTS-WebUI folder nor a git directory holding "
                               f"{WEBUI_COMMIT[:7]}: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True, timeout=120)
    return out


def code_description(source: Path) -> str:
    """Whose ``tts_webui`` a WebUI laid out from ``source`` runs, for the test log."""
    if source == STANDIN:
        return f"modelhost's stand-in for TTS-WebUI {WEBUI_COMMIT[:7]} ({source})"
    return f"TTS-WebUI {WEBUI_COMMIT[:7]}, the real code ({source})"


def build_runner_webui(base: Path) -> RunnerWebui:
    """Lay out the WebUI described in the module docstring under ``base`` (a fresh, short folder)."""
    source = webui_source()
    root, hf_home = base / "webui", base / "hf"
    root.mkdir(parents=True)
    (root / "tts_webui").symlink_to(source / "tts_webui")
    (root / "extensions.json").write_text((source / "extensions.json").read_text())
    entry = json.loads((ROOT / "webui_adapter" / "extensions.external.json").read_text())["decorators"][0]
    (root / "extensions.external.json").write_text(json.dumps({"tabs": [], "tabsInGroups": {}, "decorators": [entry]}))
    (root / "installer_files").mkdir()
    (root / "installer_files" / "env").symlink_to(ENVS / "main")
    (root / ".venvs").mkdir()
    (root / ".venvs" / TONE_PACKAGE).symlink_to(ENVS / "proxy")
    write_dotenv(root, {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    (root / "config.json").write_text(json.dumps({"gradio_interface_options": {"server_port": 7770},
                                                  "extensions": {"disabled": [], "disabled_decorators": []}}, indent=2))
    for folder in ("outputs", "favorites"):
        (root / folder).mkdir()
    write_tiny_models(hf_home / "hub", base / "stage")
    kokoro = None
    if KOKORO_PYTHON.exists():
        (root / ".venvs" / KOKORO_PACKAGE).symlink_to(ENVS / "kokoro")
        _build(KOKORO_PYTHON, base / "stage", "kokoro")
        write_hub_snapshot(hf_home / "hub", KOKORO_HUB, {str(p.relative_to(base / "stage" / "kokoro")): p
                                                         for p in (base / "stage" / "kokoro").rglob("*") if p.is_file()})
        kokoro = root / ".venvs" / KOKORO_PACKAGE / "bin" / "python"
    return RunnerWebui(root, hf_home, root / "installer_files" / "env" / "bin" / "python",
                       root / ".venvs" / TONE_PACKAGE / "bin" / "python", code_description(source), kokoro)


def write_tiny_models(cache: Path, stage: Path) -> None:
    """The random MMS and Seamless M4T of ``tests/support/webui_tiny_models.py``, built by the main environment's
    Python (transformers is not imported in the test process), put in the hub cache as the hub leaves a download."""
    _build(MAIN_PYTHON, stage)
    for repo_id, folder in ((MMS_HUB, stage / "mms"), (SEAMLESS_HUB, stage / "seamless")):
        write_hub_snapshot(cache, repo_id, {p.name: p for p in folder.iterdir() if p.is_file()})


def _build(python: Path, stage: Path, *names: str) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(python), str(ROOT / "tests" / "support" / "webui_tiny_models.py"), str(stage), *names],
                          timeout=300, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if done.returncode != 0:
        raise RuntimeError(f"building the tiny models {names or 'mms seamless'} failed:\n{done.stderr[-4000:]}")


def run_webui(python: Path, root: Path, calls: list[dict], env: dict[str, str] | None = None,
              timeout_s: float = 300.0) -> dict:
    """One WebUI process (``tests/support/webui_process.py`` under ``python``, in ``root``): runs ``calls``, returns
    its report."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ.update(env or {})
    done = subprocess.run([str(python), str(ROOT / "tests" / "support" / "webui_process.py"), json.dumps(calls)],
                          cwd=root, env=environ, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WEBUI-REPORT ")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the WebUI process failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    report = json.loads(lines[-1][len("WEBUI-REPORT "):])
    report["stderr"] = done.stderr
    return report


def probe(source: Path, base: Path, timeout_s: float = 300.0) -> dict:
    """The report of ``tests/support/tts_webui_probe.py`` for the ``tts_webui`` of ``source`` (a folder as
    ``webui_source`` gives), run with the main environment's Python in a fresh WebUI folder under ``base``."""
    root = base / "probe"
    root.mkdir(parents=True)
    (root / "tts_webui").symlink_to(source / "tts_webui")
    (root / "extensions.json").write_text((source / "extensions.json").read_text())
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(MAIN_PYTHON), str(ROOT / "tests" / "support" / "tts_webui_probe.py")], cwd=root,
                          env=environ, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE-REPORT ")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the probe failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return json.loads(lines[-1][len("PROBE-REPORT "):])


if __name__ == "__main__":
    print(why_not_available() or f"ready: {code_description(webui_source())}", file=sys.stderr)
