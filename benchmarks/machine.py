"""The machine a benchmark ran on (CPU model, cores, memory, GPU), and the plumbing every benchmark shares."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path


def describe() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "gpu": gpu,
            "python": platform.python_version(), "platform": platform.platform()}


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def line() -> str:
    m = describe()
    return f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}, Python {m['python']}"


def parse_args(doc: str, argv: list[str] | None, default_reps: int, sized: bool = False) -> argparse.Namespace:
    """--reps and --json (and --size tiny|real where ``sized``), described by the benchmark's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if sized:
        parser.add_argument("--size", choices=["tiny", "real"], default="real")
    parser.add_argument("--reps", type=int, default=default_reps)
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def finish(report: dict, json_path: str | None) -> dict:
    """Write the report as JSON if asked; return it."""
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report
