"""Devices: which one a model runs on, their memory, budgets, and how to tell an out-of-memory error.

Runs wherever a model loads (its worker thread). Memory measurement per device grows here.
"""

from __future__ import annotations

import os
import threading

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


DEFAULT_BUDGET_FRACTION = {"cuda": 0.9, "cpu": 0.75, "warm": 0.25}


def memory_info(device: str) -> dict[str, int]:
    """``total_bytes`` and ``free_bytes`` of a device: NVML/torch for CUDA, /proc/meminfo for the CPU."""
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        return {"total_bytes": int(total), "free_bytes": int(free)}
    fields: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0]) * 1024
    return {"total_bytes": fields["MemTotal"], "free_bytes": fields.get("MemAvailable", fields["MemFree"])}


def budget_bytes(device: str, budgets: dict[str, float | int]) -> int:
    """The bytes models may use on ``device`` ("warm": the CPU tier of models offloaded from GPUs):
    its own entry, else its type's ("cuda"), else the default fraction of the device's total."""
    kind = device.split(":")[0]
    value = budgets.get(device, budgets.get(kind, DEFAULT_BUDGET_FRACTION[kind]))
    if isinstance(value, float):
        return int(value * memory_info("cpu" if kind == "warm" else device)["total_bytes"])
    return int(value)


def offload_module(module: torch.nn.Module) -> torch.nn.Module:
    """Move a module to CPU RAM, page-locked where CUDA exists so the swap back runs near PCIe speed."""
    module = module.to("cpu")
    if torch.cuda.is_available():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data = tensor.data.pin_memory()
    return module


def restore_module(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """Move an offloaded module back to ``device`` (asynchronous copies from pinned memory, then a sync)."""
    module = module.to(device, non_blocking=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))
    return module


def process_rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def allocated_bytes(device: str) -> int:
    """Bytes the process holds on ``device``: the CUDA allocator's count, or RSS on the CPU."""
    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated(torch.device(device)))
    return process_rss_bytes()


class PeakMeter:
    """How far a call's memory rises above where it started on ``device``: the CUDA allocator's peak
    (reset for this device as the call starts), or on the CPU the process RSS sampled every
    ``interval_s`` by a helper thread (an approximation: other threads' allocations count too, and
    memory the allocator keeps from an earlier call is not seen again). Used by a model's worker."""

    def __init__(self, device: str, interval_s: float = 0.01) -> None:
        self.device = device
        self.interval_s = interval_s
        self.rise_bytes = 0
        self._before = 0
        self._peak = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMeter":
        if self.device.startswith("cuda"):
            dev = torch.device(self.device)
            torch.cuda.reset_peak_memory_stats(dev)
            self._before = int(torch.cuda.memory_allocated(dev))
            return self
        self._before = self._peak = process_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="modelhost-peak-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            peak = int(torch.cuda.max_memory_allocated(torch.device(self.device)))
        else:
            assert self._stop is not None and self._thread is not None
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, process_rss_bytes())
        self.rise_bytes = max(0, peak - self._before)

    def _sample(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, process_rss_bytes())
