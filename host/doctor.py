"""`modelhost doctor`: can this machine run each backend, and can each runner's Python run its models?

Reports torch, CUDA, NVML and device memory as the host sees them, then, for each runner process of
the catalog (``--config``, else the default catalog), starts its Python once with the runner module's
probe (``host.runner.probe``): its version, and whether each of its backends and the modules their
loads import (``Backend.requires``) import there. Says for every problem what to run. Runs in the CLI's
process (it imports torch); the probes are subprocesses.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from typing import Callable

from modelhost.host.backends import INLINE, ModelSpec, runner_of
from modelhost.host.runners import package_dir, runner_argv

FIX = "run ./setup.sh in the modelhost checkout (it installs the tested model stack into .venv)"
_PROBE_TIMEOUT_S = 300.0  # a first import of torch and the model libraries from a cold disk is slow


def run(models: dict[str, ModelSpec], say: Callable[[str], None] = print) -> int:
    """Print the report for the catalog's ``models``; returns the number of problems found."""
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
    groups: dict[str, list[ModelSpec]] = {}
    for spec in models.values():
        groups.setdefault(runner_of(spec), []).append(spec)
    with tempfile.TemporaryDirectory(prefix="mh-doctor-") as folder:
        for runner, specs in groups.items():
            problems += _check_runner(runner, specs, folder, say)
    return problems


def _check_runner(runner: str, specs: list[ModelSpec], folder: str, say: Callable[[str], None]) -> int:
    python = specs[0].python or sys.executable
    backends = sorted({s.backend for s in specs})
    where = "in the host's process" if runner == INLINE else f"python {python}"
    argv = runner_argv(python, package_dir(folder) if specs[0].python else "", "--probe", *backends)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"runner {runner} ({where}): CANNOT START: {exc}; fix: set python = \"/path/to/venv/bin/python\" "
            "to an interpreter that exists")
        return 1
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("MODELHOST-PROBE ")), None)
    if line is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        say(f"runner {runner} ({where}): CANNOT RUN the runner module: {last}; fix: that environment needs "
            "Python >= 3.10 with pyzmq, msgpack and numpy (pip install pyzmq msgpack numpy)")
        return 1
    found = json.loads(line.split(" ", 1)[1])
    missing = {name: why for name, why in found["backends"].items() if why}
    models = ", ".join(s.name for s in specs[:6]) + (f" and {len(specs) - 6} more" if len(specs) > 6 else "")
    status = "ok" if not missing else "MISSING: " + "; ".join(f"{name}: {why}" for name, why in missing.items())
    say(f"runner {runner} (python {found['version']} at {found['python']}; {models}): {status}"
        + (f"; fix: install what is missing into that environment ({FIX} for the host's own)" if missing else ""))
    return 1 if missing else 0


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
