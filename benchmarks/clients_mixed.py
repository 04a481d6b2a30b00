"""Many clients, mixed requests: this checkout's host against other checkouts' (v1), interleaved in one run.

The workload of issue 24: ``--clients`` client processes (64) x ``--requests`` (1,000) mixed requests each, on raw
DEALER sockets (``benchmarks.soak._load_client``, the one load client: 70 % generate on two ``synth`` models,
10 % cancel of an earlier id, 20 % ``ps``/``health``, at most 8 in flight per client). Every host variant runs
once per round, in turn (round r starts at variant r, so drift on a shared machine spreads evenly), and the
figures are medians over rounds: requests/s (all requests of all clients over the wall time from the moment
every client is connected and told to go to the last one's end), generate p50/p99 (send to result, in the
client), and CPU seconds per 1,000 requests of the host process, its runner processes and the clients.

Variants: each checkout (``--against NAME=PATH``, and this one as ``this``) in each ``--layouts`` it supports:
``separate`` (each model its own runner process, as soak's catalog has it), ``shared`` (both in one runner),
``inline`` (``runner = "inline"``: threads of the host, as before runners); a checkout without runner processes
(v1) runs as it is (``v1``). A checkout's own venv runs its host (``PATH/.venv/bin/python``); one whose package
is ``modelhost`` must have that venv, with that checkout installed (the benchmark checks).

    .venv/bin/python -m benchmarks.clients_mixed --against v1=../wt-v1 --rounds 3 --json benchmarks/results/clients_mixed-cpu.json
    .venv/bin/python -m benchmarks.clients_mixed --quick --against self=.     # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from benchmarks import machine
from benchmarks.timing import pct_ms
from modelhost.client.protocol import wire
from tests.support.launch import ROOT, HostProcess, short_tmp

LAYOUTS = ("separate", "shared", "inline")
MODELS = {"fast": 'width = 32', "other": 'width = 48'}  # soak's LOAD_MODELS
HOST = '[host]\ndrain_timeout_s = 5\n'


@dataclass(frozen=True)
class Tree:
    """A checkout whose host is measured: its Python, how its host starts, the protocol it speaks."""

    name: str
    path: Path
    python: str
    module: str  # "modelhost.host", or "host" (v1)
    version: int  # the protocol version its wire writes
    runners: bool  # has runner processes (the catalog's ``runner`` key)


def tree(name: str, path: Path) -> Tree:
    path = path.resolve()
    wire_py = next(p for p in (path / "client" / "protocol" / "wire.py", path / "client" / "wire.py") if p.exists())
    wire_src = wire_py.read_text()
    version = int(re.search(r"^PROTOCOL_VERSION = (\d+)", wire_src, re.M).group(1))
    namespaced = "modelhost" in (path / "pyproject.toml").read_text().split("[tool.setuptools", 1)[-1]
    venv = path / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    module = "modelhost.host" if namespaced else "host"
    if namespaced:  # the code measured must be this checkout's, not whatever modelhost that Python imports
        where = subprocess.run([python, "-c", "import modelhost.host, os; print(os.path.realpath(modelhost.host.__file__))"],
                               cwd=path, capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(path) + "/"):
            raise SystemExit(f"{name}: {python} imports modelhost.host from {where or '(nowhere)'}, not from {path}; "
                             f"make {path}/.venv and install that checkout into it (pip install --no-deps -e .)")
    return Tree(name, path, python, module, version, (path / "host" / "runners.py").exists())


def catalog(t: Tree, layout: str) -> str:
    out = [HOST]
    for model, options in MODELS.items():
        out.append(f'[models.{model}]\nbackend = "synth"\n{options}\n')
        if t.runners:
            out.append({"separate": f'runner = "{model}"\n', "shared": 'runner = "synth"\n', "inline": 'runner = "inline"\n'}[layout])
    return "\n".join(out)


def _ask(address: str, version: int, kind: str, body: dict[str, Any], timeout_s: float) -> wire.Message | None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send_multipart(wire.encode(kind, 1, body, version=version))
        deadline = time.monotonic() + timeout_s
        while sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            msg = wire.decode(sock.recv_multipart())
            if msg.kind in wire.FINAL_REPLY_KINDS:
                return msg
            if time.monotonic() > deadline:
                break
        return None
    finally:
        sock.close()
        ctx.term()


def start(t: Tree, layout: str) -> HostProcess:
    """The checkout's host on a fresh socket, ready, both models loaded (their runners started)."""
    folder = short_tmp("mhcm-")
    (folder / "catalog.toml").write_text(textwrap.dedent(catalog(t, layout)))
    address = f"ipc://{folder}/run/host.sock"
    log_path = folder / "host.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([t.python, "-m", t.module, "serve", "--config", str(folder / "catalog.toml"),
                                 "--address", address], cwd=t.path, stdout=log, stderr=subprocess.STDOUT)
    host = HostProcess(proc, address, folder / "run" / "host.sock", log_path)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            host.stop(10)
            raise RuntimeError(f"{t.name} host did not start:\n{host.log()[-3000:]}")
        msg = _ask(address, t.version, "health", {}, 2.0) if host.socket_path.exists() else None
        if msg is not None and msg.kind == "result" and msg.body.get("ready"):
            break
        time.sleep(0.1)
    for model in MODELS:
        msg = _ask(address, t.version, "generate", {"model": model, "prompt": "x", "params": {"duration_s": 0.05}}, 120)
        if msg is None or msg.kind != "result":
            host.stop(10)
            raise RuntimeError(f"{t.name}: warm-up of {model} failed: {msg and msg.body}")
    return host


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks (USER_HZ = 100)
    except (OSError, IndexError):
        return 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def one_round(t: Tree, layout: str, clients: int, requests: int) -> dict[str, Any]:
    host = start(t, layout)
    procs: list[subprocess.Popen] = []
    try:
        runners = _children(host.proc.pid)
        flags = ["gated", f"v{t.version}"]
        procs += [subprocess.Popen([sys.executable, "-m", "benchmarks.soak", "_client", host.address, str(requests), str(i),
                                    *flags], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                  for i in range(clients)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        cpu_before = (_cpu_s(host.proc.pid), sum(_cpu_s(r) for r in runners))
        go = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [json.loads(p.communicate(timeout=1800)[0]) for p in procs]
        wall_s = time.perf_counter() - go - 0.5  # each client listens 0.5 s more for duplicates before it exits
        host_cpu = _cpu_s(host.proc.pid) - cpu_before[0]
        runner_cpu = sum(_cpu_s(r) for r in runners) - cpu_before[1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        host.stop(30)
    total = sum(o["requests"] for o in outs)
    latencies = [ns for o in outs for ns in o["generate_ns"]]
    bad = {k: sum(o[k] for o in outs) for k in ("lost", "duplicated", "wrong")}
    if any(bad.values()):
        raise RuntimeError(f"{t.name}/{layout}: {bad}: {[w for o in outs for w in o['why']][:3]}")
    client_cpu = sum(o["cpu_s"] for o in outs)  # each client's own, from go to its last final reply
    per_k = 1000 / total
    return {"requests": total, "wall_s": round(wall_s, 2), "requests_per_s": round(total / wall_s, 1),
            "generate_results": len(latencies), "generate_p50_ms": round(pct_ms(latencies, 0.5), 1),
            "generate_p99_ms": round(pct_ms(latencies, 0.99), 1),
            "cpu_s_per_1k": {"host": round(host_cpu * per_k, 3), "runners": round(runner_cpu * per_k, 3),
                             "clients": round(client_cpu * per_k, 3)},
            "client_send_s_max": round(max(o["seconds"] for o in outs), 2)}


def run(trees: list[Tree], layouts: list[str], clients: int, requests: int, rounds: int) -> dict[str, Any]:
    variants = [(t, layout) for t in trees for layout in (layouts if t.runners else ["v1"])]
    results: dict[str, list[dict[str, Any]]] = {f"{t.name}/{layout}": [] for t, layout in variants}
    for r in range(rounds):
        for i in range(len(variants)):
            t, layout = variants[(r + i) % len(variants)]
            figures = one_round(t, layout, clients, requests)
            results[f"{t.name}/{layout}"].append(figures)
            print(f"round {r + 1} {t.name}/{layout}: {json.dumps(figures)}", flush=True)
    base = next(iter(results))
    summary = {}
    for name, runs in results.items():
        med = lambda key: statistics.median(x[key] for x in runs)  # noqa: E731
        ratios = [x["requests_per_s"] / b["requests_per_s"] for x, b in zip(runs, results[base])]
        summary[name] = {"requests_per_s": med("requests_per_s"), "generate_p50_ms": med("generate_p50_ms"),
                         "generate_p99_ms": med("generate_p99_ms"),
                         "cpu_s_per_1k": {k: round(statistics.median(x["cpu_s_per_1k"][k] for x in runs), 3)
                                          for k in ("host", "runners", "clients")},
                         f"rps_over_{base}": round(statistics.median(ratios), 3)}
    return {"machine": machine.describe(), "clients": clients, "requests_per_client": requests, "rounds": rounds,
            "trees": {t.name: {"path": str(t.path), "commit": _commit(t.path)} for t in trees},
            "baseline": base, "summary": summary, "runs": results}


def _commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", action="append", default=[], metavar="NAME=PATH",
                        help="another checkout to measure beside this one (first: the baseline of the ratios)")
    parser.add_argument("--layouts", default="separate,inline", help=f"of {','.join(LAYOUTS)} (checkouts with runners)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=1000, help="per client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 clients x 20 requests, one round")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.requests, args.rounds = 4, 20, 1
    layouts = [x for x in args.layouts.split(",") if x]
    if not set(layouts) <= set(LAYOUTS):
        parser.error(f"--layouts: choose from {', '.join(LAYOUTS)}")
    trees = [tree(*a.split("=", 1)[:1], Path(a.split("=", 1)[1])) for a in args.against if "=" in a]
    if len(trees) != len(args.against):
        parser.error("--against takes NAME=PATH")
    trees.append(tree("this", ROOT))
    report = run(trees, layouts, args.clients, args.requests, args.rounds)
    print(machine.line())
    print(f"{args.clients} clients x {args.requests} mixed requests, {args.rounds} interleaved rounds, medians")
    print(f"{'variant':<22} {'req/s':>8} {'ratio':>6} {'gen p50 ms':>11} {'gen p99 ms':>11} "
          f"{'host cpu':>9} {'runners':>8} {'clients':>8}  (CPU s per 1k requests)")
    ratio_key = f"rps_over_{report['baseline']}"
    for name, s in report["summary"].items():
        cpu = s["cpu_s_per_1k"]
        print(f"{name:<22} {s['requests_per_s']:>8.1f} {s[ratio_key]:>6.3f} "
              f"{s['generate_p50_ms']:>11.1f} {s['generate_p99_ms']:>11.1f} {cpu['host']:>9.3f} {cpu['runners']:>8.3f} "
              f"{cpu['clients']:>8.3f}")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
