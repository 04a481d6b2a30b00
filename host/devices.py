"""Devices: which one a model runs on, their memory, budgets, and how to tell an out-of-memory error.

Called from the host's core thread (devices, budgets: through NVML, so the host process never makes a
CUDA context of its own) and from a model's worker thread, in the host or in a runner process
(measurements, out-of-memory, the allocator cache). torch is imported where a call needs it, never at
import: a runner whose backend does not use torch never loads it, and a function that only asks about
torch's state (``is_out_of_memory``, ``release_cached_memory``) finds nothing to do where it is not loaded.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


def _torch() -> Any:
    import torch

    return torch


def _loaded_torch() -> Any:
    """torch if this process imported it (a backend uses it), else None."""
    return sys.modules.get("torch")


def resolve_device(requested: str | None) -> str:
    """``requested`` checked against this machine; None or "auto" means CUDA if present, else CPU."""
    torch = _torch()
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
    torch = _loaded_torch()
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def release_cached_memory(device: str) -> None:
    """Return the allocator's cached blocks to the device after an unload or an OOM."""
    torch = _loaded_torch()
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


DEFAULT_BUDGET_FRACTION = {"cuda": 0.9, "cpu": 0.75, "warm": 0.25}


def memory_info(device: str) -> dict[str, int]:
    """``total_bytes`` and ``free_bytes`` of a device: NVML (else torch) for CUDA, /proc/meminfo for the CPU."""
    if device.startswith("cuda"):
        handle = _nvml_handle(device)
        if handle is not None:
            import pynvml

            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return {"total_bytes": int(info.total), "free_bytes": int(info.free)}
        free, total = _torch().cuda.mem_get_info(_cuda_index(device))
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


def offload_module(module: Any) -> Any:
    """Move a module to CPU RAM, page-locked where CUDA exists so the swap back runs near PCIe speed."""
    torch = _torch()
    module = module.to("cpu")
    if torch.cuda.is_available():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data = tensor.data.pin_memory()
    return module


def restore_module(module: Any, device: str) -> Any:
    """Move an offloaded module back to ``device`` (asynchronous copies from pinned memory, then a sync)."""
    module = module.to(device, non_blocking=True)
    if device.startswith("cuda"):
        torch = _torch()
        torch.cuda.synchronize(torch.device(device))
    return module


def process_rss_bytes(pid: int | None = None) -> int:
    """A process's resident set size (Linux; this process by default)."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def allocated_bytes(device: str) -> int:
    """Bytes the process holds on ``device``: the CUDA allocator's count, or RSS on the CPU."""
    if device.startswith("cuda"):
        torch = _torch()
        return int(torch.cuda.memory_allocated(torch.device(device)))
    return process_rss_bytes()


def process_bytes(device: str, pid: int | None = None) -> int:
    """What a whole process holds on ``device``, which its exit gives back: on CUDA, what NVML counts for it (its
    context, the allocator's cache and tensors); on the CPU, its private memory (the unique set: library code
    pages it shares with other processes, and shared-memory segments, are not its own). 0 where unreadable."""
    if not device.startswith("cuda"):
        try:
            with open(f"/proc/{pid or 'self'}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line and not line[0].isdigit() and " " not in line.split(":")[0])
            return sum(int(fields[k].split()[0]) * 1024 for k in ("Private_Clean", "Private_Dirty"))
        except (OSError, KeyError, ValueError):
            try:
                return process_rss_bytes(pid)
            except OSError:
                return 0
    pid = pid or os.getpid()
    handle = _nvml_handle(device)
    if handle is None:
        return 0
    import pynvml

    try:
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except pynvml.NVMLError:
        return 0
    return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid == pid)


def _cuda_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index else 0


_nvml_lock = threading.Lock()
_nvml_ready: bool | None = None


def _nvml_handle(device: str) -> Any:
    """The NVML handle of a CUDA device (``CUDA_VISIBLE_DEVICES`` order), or None without NVML."""
    global _nvml_ready
    with _nvml_lock:
        if _nvml_ready is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_ready = True
            except Exception:
                _nvml_ready = False
        if not _nvml_ready:
            return None
    import pynvml

    index = _cuda_index(device)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    try:
        if visible and index < len(visible):
            entry = visible[index]
            return (pynvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit()
                    else pynvml.nvmlDeviceGetHandleByUUID(entry))
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


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
            torch = _torch()
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
            torch = _torch()
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
