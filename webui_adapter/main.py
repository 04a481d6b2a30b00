"""TTS-WebUI decorator extension: MusicGen, AudioGen, MAGNeT and RVC generation runs on the modelhost host.

TTS-WebUI imports ``{package}.main`` of each registered decorator extension and applies every
function named ``decorator_*`` to its generation functions (an ``"inner"`` extension sits right
around the model call, inside the seed, save-wav, metadata and history decorators; ``*_generator``
ones around generator functions). This module defines two. ``decorator_modelhost``: calls with
``_type == "musicgen"`` (MusicGen and AudioGen), ``"magnet"`` or ``"rvc"`` go to the host's own
backends and come back in the shapes the WebUI's own function returns, so saving, metadata, history
and both UIs work unchanged; every other call goes to this environment's WebUI runner on the host
(``runner_calls``, ``Forwarder.call_webui``), and ``decorator_modelhost_generator`` does the same for
generator calls, item by item. Calls that cannot run in a runner run here, as before (said once,
with why).

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
from typing import Any, Callable, NoReturn

from modelhost.client import webui_call
from webui_adapter import convert, progress, runner_calls
from webui_adapter.forward import ForwardError, Forwarder, HostDownError, NotServedError, as_ui_error
from webui_adapter.webui_facts import CALL_MODEL_PREFIX

SNIPPET = Path(__file__).with_name("extensions.external.json")  # the entry a WebUI's extensions.external.json needs
_FORWARDER: Forwarder | None = None
_FORWARDER_LOCK = threading.Lock()


def extension__tts_generation_webui() -> dict[str, str]:
    """The extension's entry, as TTS-WebUI lists extensions: the one in the shipped registration snippet."""
    snippet = json.loads(SNIPPET.read_text())
    return snippet["decorators"][0]


def decorator_modelhost(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Forward MusicGen/AudioGen (``_type="musicgen"``), MAGNeT (``"magnet"``) and RVC (``"rvc"``) calls to the host's
    own backends, and every other decorated call to this environment's WebUI runner (``runner_calls``)."""
    _hook_unloads()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kind = kwargs.get("_type")
        if kind not in convert.ARG_ORDER:
            return _in_runner(fn, args, kwargs)
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


def decorator_modelhost_generator(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Generator calls (Bark, Tortoise, Chatterbox's streaming, ...) in this environment's WebUI runner: its items
    as the runner yields them; closing this generator (a cancelled event) stops the call there."""
    _hook_unloads()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        route = _route(fn, args, kwargs)
        if route is None:
            yield from fn(*args, **kwargs)
            return
        model, key, kw = route
        stream = forwarder().stream_webui(model, key, kwargs.get("_type"), kw)
        sent = False
        try:
            for item in stream:
                sent = True
                yield item
            return
        except NotServedError as exc:  # a host without --webui (said before any item): the call runs here, as before
            if sent:
                _raise_for_ui(exc)
            runner_calls.tell_once(key, kwargs.get("_type"), str(exc))
        except HostDownError as exc:
            # the fallback only while nothing was shown: run again here, the WebUI would get its first items twice
            if sent or not forwarder().settings.fallback_local:
                _raise_for_ui(exc)
        except ForwardError as exc:
            _raise_for_ui(exc)
        finally:
            stream.close()  # this generator closed (a cancelled event): the call is cancelled on the host
        yield from fn(*args, **kwargs)

    return wrapper


def _route(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(host model, key, keyword arguments) of a call for a WebUI runner, or None: it runs here (said once, why)."""
    kind = kwargs.get("_type")
    plan = runner_calls.plan(fn, kind)
    if plan.model is None:
        runner_calls.tell_once(plan.key, kind, plan.reason or "")
        return None
    try:
        kw = runner_calls.call_kwargs(fn, args, kwargs)
        webui_call.encode_kwargs(kw)  # refused here, before the host is asked, when a value cannot travel
    except ValueError as exc:
        runner_calls.tell_once(plan.key, kind, str(exc))
        return None
    _hook_unloads()  # modules imported since the decorators ran (an Unload button's module)
    return plan.model, plan.key, kw


def _in_runner(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    route = _route(fn, args, kwargs)
    if route is None:
        return fn(*args, **kwargs)
    model, key, kw = route
    try:
        return forwarder().call_webui(model, key, kwargs.get("_type"), kw)
    except NotServedError as exc:  # a host without --webui: the call runs here, as before
        runner_calls.tell_once(key, kwargs.get("_type"), str(exc))
    except HostDownError as exc:
        if not forwarder().settings.fallback_local:
            _raise_for_ui(exc)
    except ForwardError as exc:
        _raise_for_ui(exc)
    return fn(*args, **kwargs)


def _raise_for_ui(exc: Exception) -> NoReturn:
    """Raise ``exc`` as the WebUI shows it (``gr.Error`` where Gradio is loaded; else ``exc`` itself)."""
    shown = as_ui_error(exc)
    if shown is exc:
        raise exc
    raise shown from exc


def _hook_unloads() -> None:
    """The WebUI's Unload buttons reach this environment's WebUI runner too."""
    def unload(namespace: str | None) -> None:
        label = runner_calls.environment()
        if label is not None:
            forwarder().unload_webui(CALL_MODEL_PREFIX + label, namespace)

    runner_calls.hook_unloads(unload)


def forwarder() -> Forwarder:
    """This process's forwarder (settings read from the environment on first use)."""
    global _FORWARDER
    with _FORWARDER_LOCK:  # the WebUI's first calls may arrive on several threads at once
        if _FORWARDER is None:
            _FORWARDER = Forwarder()
        return _FORWARDER
