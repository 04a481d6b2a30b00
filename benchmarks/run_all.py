"""Run every benchmark, write each one's JSON into a folder, and a Markdown report of what they printed.

Usage: python -m benchmarks.run_all [--out benchmarks/results] [--quick]
(--quick: tiny sizes and few repetitions, minutes instead of tens of minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import machine

ROOT = Path(__file__).resolve().parent.parent
# module -> (full arguments, quick arguments)
SUITE = {
    "warm_start": (["--size", "real", "--reps", "3"], ["--size", "tiny", "--reps", "1"]),
    "light_ui": (["--size", "real", "--reps", "3"], ["--size", "tiny", "--reps", "1"]),
    "ipc": (["--reps", "30"], ["--reps", "3"]),
    "clients": (["--reps", "40"], ["--reps", "3"]),
    "roundtrip": (["--reps", "200"], ["--reps", "5"]),
    "backends": (["--reps", "20"], ["--reps", "2"]),
    "wire_threshold": (["--reps", "400"], ["--reps", "5"]),
    "swap": (["--reps", "5"], ["--reps", "1"]),
    "stream": (["--size", "real", "--reps", "3"], ["--size", "tiny", "--reps", "1", "--durations", "3,6"]),
    "batching": (["--size", "tiny", "--reps", "5"], ["--size", "tiny", "--reps", "1", "--concurrency", "1,4"]),
    "runners": (["--reps", "400"], ["--reps", "20", "--results", "1,10", "--stream", "2"]),
    "clients_mixed": (["--requests", "300", "--rounds", "2"], ["--quick"]),
    "http_api": (["--reps", "150"], ["--reps", "4", "--payloads", "small,10s"]),
    "webui_restart": (["--reps", "5"], ["--reps", "1"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "quick" if args.quick else ("gpu" if machine.describe()["gpu"] else "cpu")
    sections = [f"# Benchmark report ({time.strftime('%Y-%m-%d')})", "", machine.line(), ""]
    failed = 0
    for module, (full, quick) in SUITE.items():
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *(quick if args.quick else full),
                               "--json", str(out / f"{module}-{suffix}.json")], cwd=ROOT, capture_output=True, text=True)
        failed += done.returncode != 0
        lines = [line for line in done.stdout.splitlines() if not line.startswith(("gin_channels", "machine:"))]
        body = "\n".join(lines) if done.returncode == 0 else done.stderr[-2000:]
        sections += [f"## {module} ({time.perf_counter() - start:.0f} s)", "", "```", body, "```", ""]
        print(f"{module}: {'ok' if done.returncode == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
    (out / f"report-{suffix}.md").write_text("\n".join(sections))
    print(f"report: {out / f'report-{suffix}.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
