"""TTS-WebUI decorator extension: MusicGen, AudioGen and RVC generation runs on the modelhost host.

TTS-WebUI imports ``{package}.main`` of each registered decorator extension and applies every
function named ``decorator_*`` to its generation functions (an ``"inner"`` extension sits right
around the model call, inside the seed, save-wav, metadata and history decorators). This module
defines exactly one, ``decorator_modelhost``: calls with ``_type == "musicgen"`` (MusicGen and
AudioGen) or ``"rvc"`` go to the host and come back in the shapes the WebUI's own function returns,
so saving, metadata, history and both UIs work unchanged; every other call runs untouched.

Register it in the WebUI's ``extensions.external.json`` (see ``webui_adapter/extensions.external.json``).
Importing this module imports no torch and opens no socket; the first forwarded call connects.
Progress: the host's steps go to the call's ``progress`` callable where it passes one (a Gradio
``gr.Progress``), else to the console in audiocraft's own format.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from webui_adapter import convert
from webui_adapter.forward import ForwardError, Forwarder, HostDownError, console_progress

SNIPPET = Path(__file__).with_name("extensions.external.json")  # what a WebUI's extensions.external.json needs
_FORWARDER: Forwarder | None = None
_FORWARDER_LOCK = threading.Lock()


def extension__tts_generation_webui() -> dict[str, str]:
    """The extension's entry, as TTS-WebUI lists extensions: the one in the shipped registration snippet."""
    snippet = json.loads(SNIPPET.read_text())
    return snippet["decorators"][0]


def decorator_modelhost(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Forward MusicGen/AudioGen (``_type="musicgen"``) and RVC (``_type="rvc"``) calls to the host."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kind = kwargs.get("_type")
        if kind not in convert.ARG_ORDER:
            return fn(*args, **kwargs)
        kw = convert.call_kwargs(kind, args, kwargs)
        try:
            return forwarder().call_or_fallback(kind, kw, local=lambda: fn(*args, **kwargs),
                                                progress=_progress_for(kwargs.get("progress")))
        except (HostDownError, ForwardError) as exc:
            shown = _shown_in_ui(exc)
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


def _progress_for(progress: Any) -> Callable[[int, int], None]:
    if callable(progress):  # gr.Progress takes ((step, total), desc=...)
        return lambda step, total: progress((step, total), desc="modelhost")

    return console_progress


def _shown_in_ui(exc: Exception) -> Exception:
    """Gradio shows a ``gr.Error``'s message in the UI (other exceptions only as "Error")."""
    gradio = sys.modules.get("gradio")
    if gradio is not None and hasattr(gradio, "Error"):
        return gradio.Error(str(exc))
    return exc
