"""Which of a WebUI's decorated calls go to a WebUI runner, under which host model, and its Unload buttons.

Every call the WebUI's inner decorators see with a ``_type`` the host has no native backend for (not
``musicgen``, ``magnet``, ``rvc``) goes to the host model ``webui:<environment>``: ``main`` when this process
runs in the WebUI's ``installer_files/env``, the package name in ``.venvs/<package>`` (a proxied extension).
The host runs it in a runner started with this environment's Python in the WebUI's folder
(``host.backends.webui_call``). Some calls cannot work there and stay in this process, by name
(``REFUSED``), as do calls from a Python that is none of the WebUI's environments and calls whose values
cannot travel (``client.webui_call.encode``); each such decision is printed once.

The WebUI's Unload buttons call ``manage_model_state.unload_model(namespace)`` in the calling process
(``list_dir_models.unload_model_button``); ``hook_unloads`` makes every other module's reference to it (and
to ``unload_all_models``) also unload in this environment's runner. Not ``manage_model_state``'s own: its
loader unloads a namespace before each load it does in this process (a call that stays here), and that must
not unload, or end, the runner's copy. Pure apart from reading the WebUI's folder
and this process's modules; runs in the WebUI's threads.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from modelhost.client import webui_call
from webui_adapter.webui_facts import CALL_MODEL_PREFIX, environments

# _type -> why its calls stay in the WebUI's process (read in the extensions' code; README, "What stays in the WebUI")
REFUSED: dict[str, str] = {
    "bark": "Bark's save-metadata decorator reads Bark's loaded models (bark.generation.models) in this process, "
            "where a WebUI runner's model would not be",
    "ace_step": "ACE-Step's tab keeps its pipeline in module globals its UI sets in this process",
}
MODEL_STATE_MODULE = "tts_webui.utils.manage_model_state"
_WEBUI_MODULES = ("tts_webui", "extensions.", "extension_")  # where a WebUI's modules import unload_model
_told: set[str] = set()
_env: list[str | None] = []  # this process's environment label, found once
_lock = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """Where one call runs: ``model`` (a host model) and the call's ``key``; or ``reason`` it stays here."""

    key: str
    model: str | None
    reason: str | None = None


def environment_label(root: str | os.PathLike | None = None, prefix: str | None = None) -> str | None:
    """This Python's environment among the WebUI's (``root``: its folder, the working directory the WebUI runs in)."""
    here = os.path.realpath(prefix or sys.prefix)
    for label, env in environments(root or os.getcwd()).items():
        if os.path.realpath(env) == here:
            return label
    return None


def plan(fn: Callable[..., Any], kind: Any) -> Plan:
    """Where a call of the decorated ``fn`` with ``_type`` ``kind`` runs."""
    key = webui_call.call_key(fn)
    if kind in REFUSED:
        return Plan(key, None, REFUSED[kind])
    label = environment()
    if label is None:
        return Plan(key, None, f"this Python ({sys.prefix}) is none of the environments of a WebUI in {os.getcwd()} "
                               "(installer_files/env, .venvs/<package>)")
    return Plan(key, CALL_MODEL_PREFIX + label)


def call_kwargs(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (the WebUI calls with keywords only; positional ones take the function's order)."""
    if not args:
        return dict(kwargs)
    params = [p for p in inspect.signature(webui_call.original(fn)).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(params):
        raise ValueError(f"{len(args)} positional arguments for {len(params)} parameters")
    return {**{p.name: a for p, a in zip(params, args)}, **kwargs}


def tell_once(key: str, kind: Any, reason: str) -> None:
    """Say (once per function and reason) why a call runs in this process."""
    note = f"{key}|{reason}"
    if note not in _told:
        _told.add(note)
        print(f"modelhost: {kind or key} calls run in this WebUI process: {reason}", file=sys.stderr, flush=True)


def hook_unloads(unload: Callable[[str | None], None]) -> None:
    """Make the WebUI's ``unload_model(namespace)`` and ``unload_all_models()`` also call ``unload(namespace)``
    (None: all), wherever a module other than ``manage_model_state`` itself holds them; a no-op until the WebUI's
    module is imported, and for references already hooked."""
    module = sys.modules.get(MODEL_STATE_MODULE)
    if module is None:
        return
    with _lock:
        hooked = getattr(module, "_modelhost_hooks", None)
        if hooked is None:
            original_one, original_all = module.unload_model, module.unload_all_models

            def unload_model(model_namespace: str, silent: bool = False) -> None:
                original_one(model_namespace, silent)
                unload(model_namespace)

            def unload_all_models() -> None:
                original_all()
                unload(None)

            hooked = module._modelhost_hooks = {original_one: unload_model, original_all: unload_all_models}
        for mod_name, other in list(sys.modules.items()):
            # not manage_model_state's own names: its loader unloads the namespace before every load in this process
            # (a call that stays here), which must leave the runner's models alone
            if other is None or mod_name == MODEL_STATE_MODULE or not mod_name.startswith(_WEBUI_MODULES):
                continue
            for name in ("unload_model", "unload_all_models"):
                current = getattr(other, name, None)
                if current is not None and current in hooked:
                    try:
                        setattr(other, name, hooked[current])
                    except (AttributeError, TypeError):
                        pass


def environment() -> str | None:
    """This process's environment label, found once (see ``environment_label``)."""
    with _lock:
        if not _env:
            _env.append(environment_label(Path.cwd()))
        return _env[0]
