"""A call's host CPU: the host process's CPU seconds per small generate, with 1 and with 8 idle models.

Two hosts run side by side in one run: one serving a single tiny synth model, one serving the same
model plus 7 more, all loaded and idle. The same client sends the same small requests to each, in
alternating rounds; the figure is the host's CPU time (user + system, from /proc) divided by the
requests. Idle models must cost nothing per call: each model's thread wakes only for its own work.

    .venv/bin/python -m benchmarks.host_cpu [--reps 400] [--json FILE]
"""

from __future__ import annotations

import os
import sys

from benchmarks import machine
from modelhost.client import Client
from tests.support.launch import start_host

MODEL = 'backend = "synth"\nwidth = 16\ndepth = 1\n'


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _catalog(models: int) -> str:
    names = [f"m{i}" for i in range(models)]
    tables = "".join(f"\n[models.{n}]\n{MODEL}" for n in names)
    return f"preload = {names!r}\n{tables}".replace("'", '"')


def run(reps: int) -> dict:
    hosts = {n: start_host(_catalog(n)) for n in (1, 8)}
    per_call: dict[int, list[float]] = {1: [], 8: []}
    try:
        clients = {n: Client(h.address) for n, h in hosts.items()}
        for c in clients.values():  # warm both paths
            for _ in range(20):
                c.generate("m0", params={"duration_s": 0.01})
        for _ in range(4):  # alternating rounds
            for n, h in hosts.items():
                before = _cpu_s(h.proc.pid)
                for _ in range(reps // 4):
                    clients[n].generate("m0", params={"duration_s": 0.01})
                per_call[n].append((_cpu_s(h.proc.pid) - before) / (reps // 4))
        for c in clients.values():
            c.close()
    finally:
        for h in hosts.values():
            h.stop()
    med = {n: sorted(v)[len(v) // 2] for n, v in per_call.items()}
    return {"machine": machine.describe(), "requests_per_host": reps,
            "cpu_us_per_call": {f"{n}_models": round(med[n] * 1e6) for n in med},
            "rounds_us": {f"{n}_models": [round(x * 1e6) for x in v] for n, v in per_call.items()},
            "ratio_8_to_1": round(med[8] / med[1], 2) if med[1] else None}


def main(argv: list[str] | None = None) -> int:
    args = machine.parse_args(__doc__, argv, default_reps=400)
    report = machine.finish(run(args.reps), args.json)
    print(machine.line())
    cpu = report["cpu_us_per_call"]
    print(f"host CPU per call: 1 model {cpu['1_models']} us, 8 idle models {cpu['8_models']} us "
          f"(ratio {report['ratio_8_to_1']}; CPU-tick resolution 10 ms over {args.reps // 4} calls a round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
