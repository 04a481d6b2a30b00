"""`modelhost doctor`: can this machine run each backend, and what is missing?

Imports each model family's libraries, reports torch, CUDA, NVML and device memory, and says for
every problem what to run. Runs in the CLI's process (it imports torch and the model libraries).
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Callable

# backend -> the modules its load imports
FAMILY_MODULES = {
    "synth": ["torch"],
    "musicgen": ["torchaudio", "audiocraft.models"],
    "audiogen": ["torchaudio", "audiocraft.models"],
    "magnet": ["torchaudio", "audiocraft.models"],
    "rvc": ["fairseq", "faiss", "rvc_python.modules.vc.modules", "rvc_python.modules.vc.pipeline"],
}
FIX = "run ./setup.sh in the modelhost checkout (it installs the tested model stack into .venv)"


def run(say: Callable[[str], None] = print) -> int:
    """Print the report; returns the number of problems found."""
    problems = 0
    logging.getLogger().setLevel(logging.WARNING)
    try:
        import torch
    except ImportError as exc:
        say(f"torch        MISSING ({exc}); fix: {FIX}")
        return 1
    say(f"torch        {torch.__version__} (CUDA build: {torch.version.cuda or 'no, CPU only'})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            say(f"cuda:{i}       {torch.cuda.get_device_name(i)}: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    else:
        say("cuda         not available: models run on the CPU" + (" (torch has CUDA but no device/driver)" if torch.version.cuda else ""))
    say(_nvml_line())
    loaded: dict[str, str | None] = {}
    for family, modules in FAMILY_MODULES.items():
        missing = []
        start = time.perf_counter()
        for name in modules:
            if name not in loaded:
                loaded[name] = _import_error(name)
            if loaded[name]:
                missing.append(f"{name}: {loaded[name]}")
        if missing:
            problems += 1
            say(f"{family:<12} MISSING: {'; '.join(missing)}; fix: {FIX}")
        else:
            say(f"{family:<12} ok (imports in {time.perf_counter() - start:.1f} s)")
    return problems


def _import_error(name: str) -> str | None:
    root = logging.getLogger()
    level = root.level
    try:
        importlib.import_module(name)
        return None
    except Exception as exc:  # any import failure is a finding, not a crash
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        root.setLevel(level)  # fairseq sets the root logger to DEBUG on import


def _nvml_line() -> str:
    try:
        import pynvml
    except ImportError:
        return f"nvml         MISSING (the nvidia-ml-py package); fix: {FIX}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"nvml         no NVIDIA driver ({exc}): GPU memory is not measured (fine on a CPU-only machine)"
    try:
        count = pynvml.nvmlDeviceGetCount()
        parts = []
        for i in range(count):
            mem = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
            parts.append(f"gpu{i} {mem.used / 2**30:.1f}/{mem.total / 2**30:.1f} GiB used")
        return f"nvml         driver {pynvml.nvmlSystemGetDriverVersion()}: " + (", ".join(parts) or "no GPUs")
    finally:
        pynvml.nvmlShutdown()
