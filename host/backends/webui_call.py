"""``webui_call``: a TTS-WebUI environment's own generation functions, run in a WebUI runner.

One model per WebUI Python environment (``webui:main``, ``webui:<package>`` for ``.venvs/<package>``; named
by ``host.webui_catalog``), in a runner process of its own started with that environment's Python. Its
``load`` makes the process what the WebUI's is (``rsxdalv/TTS-WebUI`` 8c9046b, ``server.py``): the WebUI
root as working directory and first on ``sys.path``, ``.env`` then ``.env.user`` applied (``.env`` never
overrides the environment, ``.env.user`` does), the WebUI's own ``torch.load`` patch, and ``config.json``
never written (where it is missing, its defaults are used in memory). Before any extension is imported,
the WebUI's decorator-extension module is replaced by one whose inner decorators register the function
they receive under ``client.webui_call.call_key`` and return it unchanged: the function below the WebUI's
whole chain (no saving, no extension decorators, not our own forwarding). Outer decorators pass through.

``generate`` calls such a function by key with the WebUI call's keyword arguments (``params``: ``call``,
``kwargs``, ``type``), importing its module on first use, under the WebUI's own ``Seed`` context when the
call carries a ``seed`` (the WebUI applies it in the caller, outside the inner chain). The return value
goes back whole in ``info["value"]``; a generator's items go out one by one as stream chunks and a cancel
closes the generator (the call ends with the stop's own error: cancelled, deadline exceeded, shutting down).
An exception of the function comes back as a ``BackendError`` with its type and message. Models stay loaded
by the WebUI's own caching (``manage_model_state``, module globals), across calls and across WebUI processes. Two management calls are also taken by key: the WebUI's ``unload_model(namespace)`` and
``unload_all_models()`` (its Unload buttons, relayed by the adapter). The host runs one call at a time per
model, and this model is alone in its runner: one call at a time per WebUI runner.

``memory_report`` is the whole process (``devices.process_bytes``: private RSS on the CPU, NVML's count
for this pid on CUDA); ``details`` says what it holds (``manage_model_state``'s namespaces and model names,
and how often each was loaded). Unload ends the runner (the host retires a runner with no model), which
frees for sure. Runs in the model's worker thread, in the runner process.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
import types
from typing import Any, Callable

import numpy as np

from modelhost.client import webui_call
from modelhost.client.protocol.errors import BackendError, BadParamsError, RequestError
from modelhost.host import devices
from modelhost.host.backends.base import Backend, GenerateOutput, GenerateRequest, MemoryReport, ModelSpec, RunContext
from modelhost.host.backends.params import check_options

DECORATORS_MODULE = "tts_webui.extensions_loader.decorator_extensions"
MODEL_STATE_MODULE = "tts_webui.utils.manage_model_state"
MANAGEMENT = {f"{MODEL_STATE_MODULE}:unload_model", f"{MODEL_STATE_MODULE}:unload_all_models"}
# Where a WebUI's decorated functions live: its extensions (``tts_webui_extension.*``, older ``extension_*``, the
# built-in ``extensions.*``) and its own package. A request naming another module is refused before any import.
MODULE_PREFIXES = ("tts_webui_extension.", "tts_webui.", "extensions.", "extension_")

_registry: dict[str, tuple[Callable[..., Any], bool]] = {}  # key -> (function below the chain, is a generator)
_loads: dict[str, int] = {}  # manage_model_state namespace -> how many times a model was set there
_prepared_root: str | None = None
_lock = threading.Lock()


class WebuiCallBackend(Backend):
    """The generation functions of one WebUI environment (see the module docstring)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        check_options(spec, {"root", "environment"})
        root = spec.options.get("root")
        if not isinstance(root, str) or not os.path.isdir(root):
            raise ValueError(f"model {spec.name!r}: option 'root' must be the WebUI's folder, got {root!r}")
        self.root = os.path.abspath(root)
        self.environment = str(spec.options.get("environment") or spec.name)
        self.device = "cpu"
        self.loaded = False
        self._calls: dict[str, int] = {}

    def load(self, device: str) -> None:
        prepare(self.root)
        self.device = device
        self.loaded = True

    def unload(self) -> None:
        if self.loaded and MODEL_STATE_MODULE in sys.modules:
            _quiet_unload_all()
        self.loaded = False

    def memory_bytes(self) -> int:
        return devices.process_bytes(self.device) if self.loaded else 0

    def memory_report(self) -> MemoryReport:
        return MemoryReport(self.memory_bytes())

    def details(self) -> dict[str, Any]:
        held = holds()
        out: dict[str, Any] = {"environment": self.environment, "python": sys.executable, "holds": held,
                               "loads": dict(_loads), "calls": dict(self._calls)}
        out["rss_bytes"] = devices.process_bytes("cpu")
        if self.device.startswith("cuda"):
            out["device_bytes"] = devices.process_bytes(self.device)
        return out

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        params = request.params
        key = params.get(webui_call.CALL)
        if not isinstance(key, str) or ":" not in key:
            raise BadParamsError(f"a WebUI call needs params[{webui_call.CALL!r}] = 'module:function', got {key!r}")
        kwargs = webui_call.decode(params.get(webui_call.KWARGS) or {})
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise BadParamsError(f"params[{webui_call.KWARGS!r}] must be a map of argument names to values")
        fn, is_generator = self._function(key)
        self._calls[key] = self._calls.get(key, 0) + 1
        try:
            if is_generator:
                return self._stream(fn, kwargs, ctx)
            with _seeded(kwargs):
                value = fn(**kwargs)
        except RequestError:  # ours: bad params, and the stop a cancel, deadline or shutdown raises through ctx
            raise
        except Exception as exc:
            raise _call_error(key, exc) from None
        return _output({"value": webui_call.encode(value, "the result"), "holds": holds()})

    def _function(self, key: str) -> tuple[Callable[..., Any], bool]:
        if key in MANAGEMENT:
            module = importlib.import_module(MODEL_STATE_MODULE)
            return getattr(module, key.partition(":")[2]), False
        with _lock:
            found = _registry.get(key)
            if found is None:
                module = key.partition(":")[0]
                if not module.startswith(MODULE_PREFIXES):
                    raise BadParamsError(f"{key!r} is not a WebUI function (modules under {', '.join(MODULE_PREFIXES)})")
                try:
                    importlib.import_module(module)
                except Exception as exc:
                    raise BackendError(f"the WebUI runner for {self.environment} cannot import {module} "
                                       f"(python {sys.executable}): {type(exc).__name__}: {exc}") from None
                found = _registry.get(key)
        if found is None:
            raise BadParamsError(f"{module} defines no function {key.partition(':')[2]!r} under the WebUI's inner "
                                 "decorator; nothing to run")
        return found

    def _stream(self, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: RunContext) -> GenerateOutput:
        items: list[Any] = []
        with _seeded(kwargs):
            generator = fn(**kwargs)
            try:
                for item in generator:
                    encoded = webui_call.encode(item, "an item")
                    if ctx.streaming:
                        ctx.item(encoded)
                    else:
                        items.append(encoded)
                    ctx.check()
            finally:
                generator.close()  # a cancel (or a failure) ends the WebUI's generator where it stands
        return _output({"value": None if ctx.streaming else items, "generator": True, "holds": holds()})


def prepare(root: str) -> None:
    """Make this process the WebUI's (see the module docstring); once per process, for one root."""
    global _prepared_root
    with _lock:
        if _prepared_root is not None:
            if _prepared_root != root:
                raise BackendError(f"this WebUI runner serves {_prepared_root}, not {root}")
            return
        os.chdir(root)
        if root not in sys.path:
            sys.path.insert(0, root)
        _apply_dotenv(root)
        _keep_config_read_only(root)
        try:
            from tts_webui.utils.torch_load_patch import apply_torch_load_patch
        except ImportError as exc:
            raise BackendError(f"{root} is not a TTS-WebUI folder its Python can import (tts_webui: {exc})") from None
        apply_torch_load_patch()
        _install_capture()
        _count_loads()
        _prepared_root = root


def holds() -> dict[str, str]:
    """manage_model_state's loaded models: namespace -> model name (nothing before the WebUI's module is imported)."""
    module = sys.modules.get(MODEL_STATE_MODULE)
    if module is None:
        return {}
    return {ns: str(state.get_model_name()) for ns, state in list(module.model_states.items())
            if state.get_model() is not None}


def _apply_dotenv(root: str) -> None:
    """``.env`` (not overriding what is set) then ``.env.user`` (overriding), as the WebUI's dotenv_manager does."""
    from modelhost.host.webui_catalog import read_dotenv

    for key, value in read_dotenv(os.path.join(root, ".env")).items():
        os.environ.setdefault(key, value)
    os.environ.update(read_dotenv(os.path.join(root, ".env.user")))


def _keep_config_read_only(root: str) -> None:
    """``config.json`` is the WebUI's: read it, never write it. Where it is missing, its defaults in memory (the
    WebUI's loader would write the file); any save from this process is dropped, saying so."""
    if not os.path.isfile(os.path.join(root, "config.json")):
        from tts_webui.config.load_config import default_config

        module = types.ModuleType("tts_webui.config.config")
        module.config = json_copy(default_config)
        sys.modules[module.__name__] = module
        importlib.import_module("tts_webui.config").config = module
    saver = importlib.import_module("tts_webui.config._save_config")

    def _save_config(data: dict) -> None:
        print("modelhost WebUI runner: config.json is the WebUI's; a change made here is not saved", file=sys.stderr)

    saver._save_config = _save_config
    for module in list(sys.modules.values()):  # modules that imported the name already
        if getattr(module, "_save_config", None) is not None and getattr(module, "__name__", "").startswith("tts_webui"):
            module._save_config = _save_config


def json_copy(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _install_capture() -> None:
    """Replace the WebUI's decorator-extension module before any extension imports it: inner decorators register."""
    package = importlib.import_module("tts_webui.extensions_loader")
    module = types.ModuleType(DECORATORS_MODULE, "modelhost's stand-in: inner decorators register the function")

    def register(is_generator: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            _registry.setdefault(webui_call.call_key(fn), (fn, is_generator))
            return fn
        return decorator

    def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    module.decorator_extension_inner = register(False)
    module.decorator_extension_inner_generator = register(True)
    module.decorator_extension_outer = passthrough
    module.decorator_extension_outer_generator = passthrough
    module.OUTER_WRAPPERS = module.INNER_WRAPPERS = module.OUTER_WRAPPERS_GEN = module.INNER_WRAPPERS_GEN = []
    module.extension_list_json = []
    module.extension_decorator_list_tab = lambda: None
    sys.modules[DECORATORS_MODULE] = module
    package.decorator_extensions = module


def _count_loads() -> None:
    """Count the models manage_model_state sets, per namespace (ps shows it: one load serves every WebUI)."""
    module = importlib.import_module(MODEL_STATE_MODULE)
    original = module.ModelState.set_model
    if getattr(original, "_modelhost", False):
        return

    def set_model(self: Any, model: Any, model_name: Any) -> None:
        original(self, model, model_name)
        if model is not None:
            for ns, state in list(module.model_states.items()):
                if state is self:
                    _loads[ns] = _loads.get(ns, 0) + 1

    set_model._modelhost = True  # type: ignore[attr-defined]
    module.ModelState.set_model = set_model


def _quiet_unload_all() -> None:
    module = sys.modules[MODEL_STATE_MODULE]
    for ns in list(module.model_states):
        try:
            module.unload_model(ns, silent=True)
        except Exception:
            traceback.print_exc()


class _seeded:
    """The WebUI's ``Seed(int(kwargs["seed"]))`` around the call, as its ``decorator_apply_torch_seed`` does in the
    caller; nothing when the call carries no seed."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._seed = kwargs.get("seed")
        self._context: Any = None

    def __enter__(self) -> None:
        if self._seed is None:
            return
        try:
            seed = int(self._seed)
        except (TypeError, ValueError):
            raise BadParamsError(f"seed must be a whole number, got {self._seed!r}") from None
        from tts_webui.utils.timer_seed_contexts import Seed

        self._context = Seed(seed)
        self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)


def _call_error(key: str, exc: BaseException) -> BackendError:
    """The error a WebUI function raised, for the WebUI to show: its type and message (the traceback goes to the
    runner's output, which the host prints)."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    text = str(exc) or type(exc).__name__
    shown = text if type(exc).__name__ in ("Error", "gradio.exceptions.Error") else f"{type(exc).__name__}: {text}"
    return BackendError(shown)


def _output(info: dict[str, Any]) -> GenerateOutput:
    return GenerateOutput(audio=np.zeros(0, np.float32), sample_rate=0, info=info)

