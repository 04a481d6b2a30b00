"""Which torch device a model runs on, and how to tell an out-of-memory error.

Runs wherever a model loads (its worker thread). Memory measurement per device grows here.
"""

from __future__ import annotations

import torch


def resolve_device(requested: str | None) -> str:
    """``requested`` checked against this machine; None or "auto" means CUDA if present, else CPU."""
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"device {requested!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} asked for, but this machine has no CUDA device; use device = \"cpu\"")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device {requested!r} is not supported; use cpu, cuda or cuda:N")
    return str(device)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


def release_cached_memory(device: str) -> None:
    """Return the allocator's cached blocks to the device after an unload or an OOM."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
