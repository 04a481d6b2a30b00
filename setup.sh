#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install modelhost with the host's dependencies. Idempotent.
#   ./setup.sh          the host, the client and the CLI
#   ./setup.sh --ray    also Ray Serve, for `modelhost serve --ray` (README: Scaling out)
#   ./setup.sh --http   also the HTTP API's packages, for `modelhost serve --http` (README: HTTP API)
#   ./setup.sh --test   also Ray Serve, the HTTP API's packages, the test tools (with TTS-WebUI's OpenAI API extension), .venv-py310 (the client, WebUI adapter and light UI on Python 3.10),
#                       .venv-webui/{main,proxy} (a TTS-WebUI's environments with its MMS and Seamless M4T extensions, for the WebUI-runner tests),
#                       .venv-webui/kokoro when $MODELHOST_WEBUI_KOKORO names a checkout of its Kokoro extension (GitHub only)
#                       when a 3.10 exists, and Debian's chromium + chromium-driver (apt-get, as root) for the browser test
set -euo pipefail
caller_dir=$PWD  # where a relative path given in the environment is read from
cd "$(dirname "$0")"

find_python() {
  for p in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 &&
      "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v "$p"; return; }
  done
  echo "setup.sh: the host needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
}

# pip, quiet, minus this kind of machine's notes about absent local indexes; pip's exit status is kept.
pip_quiet() { "$@" --quiet --disable-pip-version-check 2> >(grep -v "^WARNING: Location" >&2); }

[ -x .venv/bin/python ] || "$(find_python)" -m venv .venv
pip_quiet .venv/bin/python -m pip install --upgrade pip "setuptools<81" wheel
extras="host"
[ "${1:-}" = "--ray" ] && extras="host,ray"
[ "${1:-}" = "--http" ] && extras="host,http"
[ "${1:-}" = "--test" ] && extras="host,test,ray,http"  # the tests run a local Ray cluster and the HTTP API too
pip_quiet .venv/bin/python -m pip install -c constraints.txt -e ".[$extras]"

# The model stack (audiocraft, rvc-python and what they import). Their published pins cannot be met
# together, so the tested set is installed as is, without resolving (requirements/models.txt), and
# fairseq-fixed (the fairseq module for Python 3.11+) is built against the installed torch.
pip_quiet .venv/bin/python -m pip install --no-deps -r requirements/models.txt
.venv/bin/python -c "import fairseq" 2>/dev/null ||
  pip_quiet .venv/bin/python -m pip install --no-deps --no-build-isolation fairseq-fixed==0.12.3.1

# torchaudio 2.11 on PyPI is built for CUDA: beside a CPU-only torch its C++ extension cannot load and
# `import torchaudio` fails. What audiocraft and rvc-python use of it is pure Python, so on a CPU
# torch (and only then) the extension is set aside and torchaudio runs without it.
.venv/bin/python - <<'PY'
import glob, importlib.util, os, sys
import torch
try:
    import torchaudio  # noqa: F401
except OSError as exc:
    if torch.version.cuda is not None or "Could not load this library" not in str(exc):
        raise
    lib = os.path.join(importlib.util.find_spec("torchaudio").submodule_search_locations[0], "lib")
    for so in glob.glob(os.path.join(lib, "*.so")):
        os.replace(so, so + ".cuda-only")
    print("setup.sh: CPU torch: torchaudio's CUDA extension set aside (pure-Python torchaudio)", file=sys.stderr)
PY
.venv/bin/python -c "import modelhost.client, modelhost.host.daemon, torchaudio, audiocraft.models, fairseq, rvc_python.modules.vc.pipeline" \
  2> >(grep -vE "Warning|warn|^ *$" >&2)  # fails loudly if the install is broken

if [ "${1:-}" = "--test" ]; then
  # TTS-WebUI's OpenAI API extension at a pinned release, for the registration test: only its code (--no-deps; its
  # gradio and openai requirements are for the WebUI), plus ffmpeg-python, which its speech service imports.
  pip_quiet .venv/bin/python -m pip install --no-deps tts-webui-extension-openai-tts-api==1.5.0 ffmpeg-python==0.2.0 future==1.0.0
  py310=""
  for p in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python; do  # a pyenv shim may exist yet not run
    "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null && { py310=$p; break; }
  done
  if [ -n "$py310" ]; then
    [ -x .venv-py310/bin/python ] || "$py310" -m venv .venv-py310
    # numpy 2.3+ needs Python 3.11: the last release line for 3.10 is 2.2
    # The WebUI side: the client and webui_adapter with its `webui` extra (Gradio, soundfile), as in a
    # TTS-WebUI environment: Gradio at TTS-WebUI's own pin (gradio==5.49.1, its requirements.txt) and the
    # gradio_client that release requires. Gradio is also the HTTP reference in benchmarks/ipc.py (never in .venv).
    pip_quiet .venv-py310/bin/python -m pip install pyzmq==27.3.0 msgpack==1.2.4 "numpy>=1.23,<2.3" \
      gradio==5.49.1 gradio_client==1.13.3 soundfile==0.14.0
    # modelhost itself (the client and the adapter), editable, as a WebUI environment would have it
    pip_quiet .venv-py310/bin/python -m pip install --no-deps -e .
  else
    echo "setup.sh: no Python 3.10 found; the client-on-3.10 and light UI tests will be skipped" >&2
  fi
  # TTS-WebUI's Python environments for the WebUI-runner tests (tests/support/webui_runner_tree.py), laid out as the
  # WebUI lays them out once the tests link them in: .venv-webui/main (its installer_files/env: TTS-WebUI's Gradio and
  # python-dotenv pins, the MMS and Seamless M4T extensions) and .venv-webui/proxy (a proxied extension's .venvs/<package>). They share
  # this .venv's torch and transformers through a .pth (the machine's CPU torch is for this Python only); the
  # WebUI's own code is not on the package index: the tests take it from $MODELHOST_TTS_WEBUI (a checkout).
  base_python=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
  host_site=$(.venv/bin/python -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
  for env in main proxy; do [ -x .venv-webui/$env/bin/python ] || "$base_python" -m venv .venv-webui/$env; done
  site_of() { .venv-webui/$1/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
  echo "$host_site" > "$(site_of main)/modelhost-host-packages.pth"
  printf '%s\n%s\n%s\n' "$(site_of main)" "$host_site" "$PWD/tests/support/webui_extension" > "$(site_of proxy)/modelhost-webui-shared.pth"
  pip_quiet .venv-webui/main/bin/python -m pip install gradio==5.49.1 gradio_client==1.13.3 python-dotenv==1.0.0 \
    iso639-lang==2.2.3 gradio-iconbutton==0.0.1
  pip_quiet .venv-webui/main/bin/python -m pip install --no-deps tts-webui-extension-mms==0.1.0 \
    tts-webui-extension-seamless-m4t==0.0.7
  # Seamless M4T loads its model with device_map="cuda:0": without CUDA, tests/support/webui_site drops that at import
  printf '%s\nimport modelhost_cuda_shim\n' "$PWD/tests/support/webui_site" > "$(site_of main)/modelhost-cuda-shim.pth"
  for env in main proxy; do pip_quiet .venv-webui/$env/bin/python -m pip install --no-deps -e .; done
  # Kokoro's extension is on GitHub only: given a checkout in $MODELHOST_WEBUI_KOKORO (a work tree at the pinned
  # commit, or a git directory holding it), .venv-webui/kokoro is its proxied environment, with kokoro's packages
  # from the index (misaki's English G2P also imports spacy and num2words: they come from .venv, audiocraft's)
  if [ -n "${MODELHOST_WEBUI_KOKORO:-}" ]; then
    kokoro_pin=b130a79153754df4fd5e2e73272d448001602da8
    kokoro_src=$(cd "$caller_dir" && cd "$MODELHOST_WEBUI_KOKORO" 2>/dev/null && pwd) ||
      { echo "setup.sh: MODELHOST_WEBUI_KOKORO=$MODELHOST_WEBUI_KOKORO is not a folder" >&2; exit 2; }
    if [ -d "$kokoro_src/objects" ]; then kokoro_src="git+file://$kokoro_src@$kokoro_pin"
    elif [ "$(git -C "$kokoro_src" rev-parse HEAD 2>/dev/null)" != "$kokoro_pin" ]; then
      echo "setup.sh: $MODELHOST_WEBUI_KOKORO is not a checkout of Kokoro's extension at ${kokoro_pin:0:7}" >&2; exit 2
    fi
    [ -x .venv-webui/kokoro/bin/python ] || "$base_python" -m venv .venv-webui/kokoro
    printf '%s\n%s\n' "$(site_of main)" "$host_site" > "$(site_of kokoro)/modelhost-webui-shared.pth"
    pip_quiet .venv-webui/kokoro/bin/python -m pip install --no-deps kokoro==0.9.4 misaki==0.9.4 loguru==0.7.3 \
      addict==2.4.0 phonemizer-fork==3.3.2 espeakng-loader==0.2.4 segments==2.4.0 csvw==4.1.1 dlinfo==2.0.0 \
      babel==2.19.0 isodate==0.7.2 language-tags==1.3.2 pyparsing==3.3.3 rdflib==7.6.0 rfc3986==1.5.0 \
      termcolor==3.3.0 uritemplate==4.2.0
    pip_quiet .venv-webui/kokoro/bin/python -m pip install --no-deps "$kokoro_src"
    pip_quiet .venv-webui/kokoro/bin/python -m pip install --no-deps -e .
  fi
  # Headless Chromium for the light UI's browser test: Debian's chromium and chromium-driver; ffmpeg
  # (with ffprobe) for the light UI's streaming player (Gradio re-encodes each streamed chunk with it).
  if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] || ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver ffmpeg >/dev/null; } ||
        echo "setup.sh: apt-get could not install chromium + chromium-driver + ffmpeg: the browser and streaming-player tests will be skipped" >&2
    else
      echo "setup.sh: no /usr/bin/chromium + chromedriver + ffmpeg and not root: the browser and streaming-player tests will be skipped" \
           "(install them with: sudo apt-get install chromium chromium-driver ffmpeg)" >&2
    fi
  fi
fi
