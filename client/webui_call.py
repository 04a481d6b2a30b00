"""A TTS-WebUI function call as it crosses to a WebUI runner: which function (its key) and its values.

Shared by the WebUI side (``webui_adapter.forward``, in the WebUI's process and its request threads)
and the runner side (``host.backends.webui_call``, in a runner process under the WebUI environment's
Python), so both compute the same key and read the same values. Torch-free: a tensor is recognised by
its type and sent as an array; torch is imported only to rebuild one, where a tensor arrives (both
sides of a WebUI call have torch).

**The key.** What the WebUI's inner decorator receives is not the generation function itself but
``log_function_time``'s wrapper, which does not use ``functools.wraps``: its ``__qualname__`` is
``log_function_time.<locals>.wrapper`` and the function sits in its closure (rsxdalv/TTS-WebUI
8c9046b, ``tts_webui/decorators/log_function_time.py``). ``call_key`` unwraps ``__wrapped__`` and such
closures down to the function defined in the extension and names it ``module:qualname``
(``tts_webui_extension.mms.main:generate_audio_with_mms``), the same in every process.

**The values** travel in a generate's ``params`` tree (maps with string keys, lists, plain values and
numeric arrays; ``client.protocol.wire``). Python values that tree cannot hold are tagged with a
one-key map: a tuple ``{"__tuple__": [...]}``, a tensor ``{"__tensor__": array, "dtype": "bfloat16"}``
(dtype and shape kept, 0-d included: bfloat16 and other dtypes numpy lacks travel as float32 and are cast
back; a tensor comes back on the CPU), a path ``{"__path__": "..."}`` (same machine; a ``pathlib.Path``
again), a map with other keys or one that looks like a tag ``{"__map__": [[key, value], ...]}``. Anything else (a Gradio component, an open file, a model) is
refused with ``ValueError`` naming where it sits, so the caller can keep that call in its process.
"""

from __future__ import annotations

import os
import types
from pathlib import Path, PurePath
from typing import Any, Callable

import numpy as np

CALL = "call"  # params: the function's key
KWARGS = "kwargs"  # params: the call's keyword arguments, encoded
TYPE = "type"  # params: the WebUI's ``_type`` (for logs and ps)
DROPPED = ("outputs",)  # the WebUI's output components: no generation function reads them, and they do not travel
_TAGS = ("__tuple__", "__tensor__", "__path__", "__map__")
_PLAIN = (str, int, float, bool, bytes, type(None))
_MAX_DEPTH = 12  # the wire allows 16 levels in params; the call's own maps take the rest


def original(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function ``fn`` wraps: through ``__wrapped__``, and through a ``<locals>`` wrapper whose closure holds
    exactly one function (``log_function_time``'s); ``fn`` itself where nothing is wrapped."""
    seen: set[int] = set()
    while id(fn) not in seen:
        seen.add(id(fn))
        inner = getattr(fn, "__wrapped__", None)
        if inner is None and "<locals>" in getattr(fn, "__qualname__", "") and getattr(fn, "__closure__", None):
            held = []
            for cell in fn.__closure__:
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                if isinstance(value, types.FunctionType):
                    held.append(value)
            inner = held[0] if len(held) == 1 else None
        if inner is None or not callable(inner):
            return fn
        fn = inner
    return fn


def call_key(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of the function ``fn`` wraps (see the module docstring)."""
    found = original(fn)
    return f"{getattr(found, '__module__', '?')}:{getattr(found, '__qualname__', repr(found))}"


def encode(value: Any, where: str = "value", depth: int = 0) -> Any:
    """``value`` as a tree the wire carries (see the module docstring); ValueError names what cannot travel."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where} nests deeper than {_MAX_DEPTH} levels")
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc" or value.dtype.fields is not None:
            raise ValueError(f"{where} is an array of dtype {value.dtype}, which does not travel")
        return value
    if isinstance(value, np.generic):
        return encode(value.item(), where, depth)
    if type(value).__module__ == "torch" and type(value).__name__ in ("Tensor", "Parameter"):
        return _encode_tensor(value)
    if isinstance(value, PurePath):
        return {"__path__": os.fspath(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and not (len(value) in (1, 2) and any(k in _TAGS for k in value)):
            return {k: encode(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
        return {"__map__": [[encode(k, f"{where} key", depth + 1), encode(v, f"{where}[{k!r}]", depth + 1)]
                            for k, v in value.items()]}
    raise ValueError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which does not travel to a "
                     "WebUI runner (numbers, strings, paths, arrays, tensors, lists, tuples and maps do)")


def decode(tree: Any) -> Any:
    """The Python value ``encode`` made ``tree`` of (tensors rebuilt with torch, which is imported here)."""
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((tag, inner),) = tree.items()
        if tag == "__tuple__":
            return tuple(decode(v) for v in inner)
        if tag == "__path__":
            return Path(inner)
        if tag == "__map__":
            return {_hashable(decode(k)): decode(v) for k, v in inner}
    if "__tensor__" in tree and set(tree) <= {"__tensor__", "dtype"}:
        return _decode_tensor(tree["__tensor__"], tree.get("dtype"))
    return {k: decode(v) for k, v in tree.items()}


def encode_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's keyword arguments for ``params[KWARGS]``, without the ones that never travel (``DROPPED``)."""
    return {k: encode(v, f"argument {k!r}") for k, v in kwargs.items() if k not in DROPPED}


def _encode_tensor(tensor: Any) -> dict[str, Any]:
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    dtype = str(t.dtype).replace("torch.", "")
    try:
        arr = t.numpy()
    except TypeError:  # a dtype numpy lacks (bfloat16, float8): as float32, its dtype named for the way back
        arr = t.float().numpy()
    if arr.dtype.kind not in "biufc":
        raise ValueError(f"a tensor of dtype {dtype} does not travel")
    return {"__tensor__": np.ascontiguousarray(arr).reshape(arr.shape), "dtype": dtype}  # ascontiguousarray makes 0-d 1-d


def _decode_tensor(arr: np.ndarray, dtype: str | None) -> Any:
    import torch

    tensor = torch.from_numpy(np.array(arr, copy=True))  # writable and owned: the wire's buffer is not kept alive
    if dtype and str(tensor.dtype).replace("torch.", "") != dtype and hasattr(torch, dtype):
        tensor = tensor.to(getattr(torch, dtype))
    return tensor


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
