"""Stand-in for ``tts_webui/extensions_loader/decorator_extensions.py`` (TTS-WebUI 8c9046b): the four decorators the
WebUI's generation functions carry, built once when this module is first imported.

For each registered decorator extension of class ``outer`` and then ``inner`` (``extensions_data_loader``) it
imports ``<package_name>.main`` and takes every attribute whose name starts with ``decorator_`` (in ``dir()``
order, skipping names listed in ``config.json``'s ``extensions.disabled_decorators``), into the generator list
when the name ends with ``_generator``, else into the plain list; a package that fails to import only prints
``Failed to load: <error>``. Each list is reversed and applied in turn, innermost first, and the result is
wrapped once more with ``functools.wraps`` (so the outermost wrapper's ``__wrapped__`` is the chain).
Left out: the Decorator Extensions tab (``extension_decorator_list_tab``: Gradio components and pip installs)."""

import functools
import importlib
import time
from typing import Literal

from tts_webui.config.config import config
from tts_webui.extensions_loader.extensions_data_loader import (
    get_decorator_extensions,
    get_decorator_extensions_by_class,
)

disabled_extensions: list[str] = config.get("extensions", {}).get("disabled_decorators", [])
extension_list_json = get_decorator_extensions()


def _load_decorators(class_name: Literal["outer", "inner"]):
    plain, generators = [], []
    for entry in get_decorator_extensions_by_class(class_name):
        package = entry["package_name"]
        print(f"Loading decorator {entry['name'].ljust(30, '.')}...", end="")
        if package in disabled_extensions:
            print(f"Skipping disabled decorator extension {entry['name']}")
            continue
        started = time.time()
        try:
            module = importlib.import_module(f"{package}.main")
        except Exception as exc:
            print(f"Failed to load: {exc}")
            continue
        names = [n for n in dir(module) if n.startswith("decorator_")]
        loaded = [n for n in names if n not in disabled_extensions]
        for name in loaded:
            (generators if name.endswith("_generator") else plain).append(getattr(module, name))
        print(f"{time.time() - started:6.2f} seconds.")
        if loaded:
            print(f"  Loaded: {', '.join(loaded)}")
        if len(loaded) < len(names):
            print(f"  Skipped: {', '.join(n for n in names if n not in loaded)}")
    plain.reverse()
    generators.reverse()
    return plain, generators


OUTER_WRAPPERS, OUTER_WRAPPERS_GEN = _load_decorators("outer")
INNER_WRAPPERS, INNER_WRAPPERS_GEN = _load_decorators("inner")


def _chain(wrappers: list):
    def decorator(fn):
        for wrap in wrappers:
            fn = wrap(fn)

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            return fn(*args, **kwargs)

        return wrapped

    return decorator


def _chain_generator(wrappers: list):
    def decorator(fn):
        for wrap in wrappers:
            fn = wrap(fn)

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            yield from fn(*args, **kwargs)

        return wrapped

    return decorator


decorator_extension_outer = _chain(OUTER_WRAPPERS)
decorator_extension_inner = _chain(INNER_WRAPPERS)
decorator_extension_outer_generator = _chain_generator(OUTER_WRAPPERS_GEN)
decorator_extension_inner_generator = _chain_generator(INNER_WRAPPERS_GEN)
