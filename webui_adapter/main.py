"""TTS-WebUI decorator extension: MusicGen, AudioGen, MAGNeT and RVC generation runs on the modelhost host.

TTS-WebUI imports ``{package}.main`` of each registered decorator extension and applies every
function named ``decorator_*`` to its generation functions (an ``"inner"`` extension sits right
around the model call, inside the seed, save-wav, metadata and history decorators). This module
defines exactly one, ``decorator_modelhost``: calls with ``_type == "musicgen"`` (MusicGen and
AudioGen), ``"magnet"`` or ``"rvc"`` go to the host and come back in the shapes the WebUI's own
function returns, so saving, metadata, history and both UIs work unchanged; every other call runs
untouched.

The WebUI calls with keywords only: the UI's inputs, ``outputs`` (its output components) and
``_type``; MusicGen's and MAGNeT's ``seed`` is a string. The model names it sends (hub ids, folder
paths, voices like ``singers/alice``) go to the host as they are: a host started with ``--webui``
serves them.

Register it with ``modelhost webui install WEBUI_DIR`` (it installs this package into each of the
WebUI's Python environments and merges the entry of ``webui_adapter/extensions.external.json`` into
the WebUI's). Importing this module imports no torch and opens no socket; the first forwarded call
connects. Progress goes to the running Gradio event's progress bar, else to the console
(``progress.py``). Runs in the WebUI's request threads.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path
from typing import Any, Callable

from webui_adapter import convert, progress
from webui_adapter.forward import ForwardError, Forwarder, HostDownError, as_ui_error

SNIPPET = Path(__file__).with_name("extensions.external.json")  # the entry a WebUI's extensions.external.json needs
_FORWARDER: Forwarder | None = None
_FORWARDER_LOCK = threading.Lock()


def extension__tts_generation_webui() -> dict[str, str]:
    """The extension's entry, as TTS-WebUI lists extensions: the one in the shipped registration snippet."""
    snippet = json.loads(SNIPPET.read_text())
    return snippet["decorators"][0]


def decorator_modelhost(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Forward MusicGen/AudioGen (``_type="musicgen"``), MAGNeT (``"magnet"``) and RVC (``"rvc"``) calls to the host."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kind = kwargs.get("_type")
        if kind not in convert.ARG_ORDER:
            return fn(*args, **kwargs)
        kw = convert.call_kwargs(kind, args, kwargs)
        try:
            return forwarder().call_or_fallback(kind, kw, local=lambda: fn(*args, **kwargs),
                                                progress=progress.for_call(kwargs.get("progress")))
        except (HostDownError, ForwardError) as exc:
            shown = as_ui_error(exc)
            if shown is exc:
                raise
            raise shown from exc

    return wrapper


def forwarder() -> Forwarder:
    """This process's forwarder (settings read from the environment on first use)."""
    global _FORWARDER
    with _FORWARDER_LOCK:  # the WebUI's first calls may arrive on several threads at once
        if _FORWARDER is None:
            _FORWARDER = Forwarder()
        return _FORWARDER
