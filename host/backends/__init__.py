"""The table of model families, and how a catalog entry becomes a backend object.

A catalog names a backend from ``BACKENDS`` or, for one of your own, by import path
(``backend = "mypackage.voices:MyBackend"``, a subclass of ``Backend``). The contract a backend
implements is in ``modelhost.host.backends.base``; the shared parameter checks in ``.params``.
Backend modules are imported on first use, so adding a family is one line here.
"""

from __future__ import annotations

import importlib
import os

from modelhost.host.backends.base import (  # noqa: F401 (the public names of the backend contract)
    INLINE,
    Backend,
    BatchProgress,
    GenerateOutput,
    GenerateRequest,
    MemoryReport,
    ModelSpec,
    RunContext,
    stop_error,
)
from modelhost.host.backends.params import check_options, number_param  # noqa: F401

# name -> "module:Class"; imported on first use.
BACKENDS: dict[str, str] = {
    "synth": "modelhost.host.backends.synth:SynthBackend",
    "musicgen": "modelhost.host.backends.musicgen:MusicGenBackend",
    "audiogen": "modelhost.host.backends.musicgen:AudioGenBackend",
    "magnet": "modelhost.host.backends.magnet:MagnetBackend",
    "rvc": "modelhost.host.backends.rvc:RvcBackend",
    "webui_call": "modelhost.host.backends.webui_call:WebuiCallBackend",
}


# name -> the family whose models share one runner process by default (on one device): MusicGen, AudioGen and
# MAGNeT share audiocraft's imports, RVC voices share one HuBERT. A custom backend is its own family.
FAMILIES: dict[str, str] = {"musicgen": "audiocraft", "audiogen": "audiocraft", "magnet": "audiocraft", "rvc": "rvc",
                            "synth": "synth", "webui_call": "webui"}


def runner_of(spec: ModelSpec) -> str:
    """The runner a model runs in: its catalog ``runner`` (``INLINE``: the host's own process), else its family's,
    with ``@DEVICE`` for a fixed device and ``@VENV`` (the environment's folder name) for another Python."""
    if spec.runner:
        return spec.runner
    name = FAMILIES.get(spec.backend, spec.backend)
    if spec.device:
        name += f"@{spec.device}"
    if spec.python:
        name += "@" + os.path.basename(os.path.dirname(os.path.dirname(spec.python)))
    return name


class BackendImportError(ValueError):
    """A catalog's backend cannot be imported or is not a Backend; the message says which and why."""


def backend_class(name: str) -> type[Backend]:
    """The backend registered as ``name``, or a custom one given as ``"package.module:Class"``."""
    module_name, _, class_name = BACKENDS.get(name, name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import path that does not import is a catalog mistake, not a crash
        raise BackendImportError(f"backend {name!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendImportError(f"backend {name!r}: {module_name} has no Backend subclass named {class_name!r} "
                                 "(a custom backend subclasses modelhost.host.backends.Backend)")
    return cls


def is_backend_name(name: object) -> bool:
    """A registered name, or an import path ``module:Class`` (a custom backend; imported at start)."""
    return isinstance(name, str) and (name in BACKENDS or (":" in name and all(name.partition(":")[::2])))


def expand_entry(backend: str, name: str, options: dict) -> list[tuple[str, dict]]:
    """One catalog table as the models it serves (``Backend.expand``). A backend that does not import here (one
    for another Python's runner) serves its table as one model."""
    try:
        cls = backend_class(backend)
    except BackendImportError:
        return [(name, options)]
    return cls.expand(name, options)


def create_backend(spec: ModelSpec) -> Backend:
    """A backend for one catalog entry, options checked, nothing loaded yet."""
    return backend_class(spec.backend)(spec)
