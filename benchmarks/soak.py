"""The host under load, faults and bad input: each scenario against a real host, returning its figures.

The test suite runs every scenario at a bounded size (tests/integration/test_reliability.py); this
script runs them at full size and prints the figures::

    .venv/bin/python -m benchmarks.soak            # full size (tens of minutes on 2 cores)
    .venv/bin/python -m benchmarks.soak --quick    # the suite's sizes
    .venv/bin/python -m benchmarks.soak --json results/soak-cpu.json

Scenarios: ``runner_kills`` (the ``load`` clients, while kill -9 hits a random runner process every few seconds:
every request still gets exactly one final reply: its result, or ``runner_lost`` where its retry died too), ``budget`` (two models that cannot both fit, requested at the same moment, round after
round, ``ps`` sampled throughout: the bytes held on the device never exceed its budget),
``load`` (client processes on raw sockets sending mixed requests: every request gets exactly one
final reply, and the right one), ``client_kills`` (kill -9 of clients mid-generation: the host's
queued/running return to 0, its RSS stays flat), ``host_kill`` (kill -9 of the host: every client
raises HostDeadError within its liveness window, and the same client objects work after a restart),
``fuzz`` (structure-aware mutations of valid messages on a raw socket: every reply in the documented
shape, the request id echoed whenever it was readable: the suite's own fuzz test, scaled), ``drain`` (SIGTERM with work queued and
running: exactly one final reply each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import msgpack
import zmq

from modelhost.client import Client
from modelhost.client.protocol import wire
from modelhost.client.protocol import errors as E
from benchmarks.machine import rss_bytes
from tests.support.launch import ROOT, start_host

QUICK = {"budget_rounds": 20, "load_clients": 8, "load_requests": 25, "kills": 4, "host_kill_clients": 4,
         "fuzz_messages": 20_000, "drain_jobs": 12, "runner_kills": 3, "runner_kill_clients": 4, "runner_kill_requests": 80}
FULL = {"budget_rounds": 100, "load_clients": 64, "load_requests": 1000, "kills": 40, "host_kill_clients": 16,
        "fuzz_messages": 100_000, "drain_jobs": 64, "runner_kills": 30, "runner_kill_clients": 16,
        "runner_kill_requests": 600}

HOST = """
    [host]
    heartbeat_s = 0.25
    client_liveness_s = 1.5
    drain_timeout_s = {drain}
"""
SYNTH_SR = 32000
# ~0.1 s of compute per second of audio here: duration_s sets how long a generation runs
SLOW = """
    [models.slow]
    backend = "synth"
    width = 512
    depth = 4
    hop = 32
"""  # the synth backend's default sample rate


def _synth_bytes(width: int, depth: int, hop: int) -> int:
    from modelhost.host.backends.synth import parameter_count

    return 4 * parameter_count(width, depth, hop, 1)


def _dealer(address: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return ctx, sock


def _header(frames: list[bytes]) -> dict[str, Any]:
    return msgpack.unpackb(frames[0], raw=False, strict_map_key=False, ext_hook=lambda code, data: None)


# ---- budget ----

def budget(rounds: int) -> dict[str, Any]:
    """Two models that cannot both fit, requested at once, ``rounds`` times; ``ps`` sampled all along."""
    size = _synth_bytes(384, 4, 32)
    budget_bytes = int(size * 1.5)
    h = start_host(HOST.format(drain=10) + f"""
        [budget]
        cpu = {budget_bytes}
        [models.a]
        backend = "synth"
        width = 384
        depth = 4
        hop = 32
        [models.b]
        backend = "synth"
        width = 384
        depth = 4
        hop = 32
        init_seed = 2
    """)
    samples, violations, both, errors = 0, 0, 0, []
    stop = threading.Event()

    def sample() -> None:
        nonlocal samples, violations, both
        with Client(h.address) as c:
            while not stop.is_set():
                rows = c.ps()
                held = sum(r["held_bytes"] for r in rows)
                on_device = [r for r in rows if r["state"] not in ("unloaded", "failed", "warm")]
                samples += 1
                violations += held > budget_bytes
                both += len(on_device) > 1
    try:
        sampler = threading.Thread(target=sample)
        sampler.start()
        with Client(h.address) as c:
            for i in range(rounds):
                jobs = [c.submit(name, params={"duration_s": 0.05, "seed": i}) for name in ("a", "b")]
                for job in jobs:
                    try:
                        job.result()
                    except E.ModelhostError as exc:
                        errors.append(str(exc))
        stop.set()
        sampler.join(30)
    finally:
        stop.set()
        h.stop()
    return {"rounds": rounds, "budget_bytes": budget_bytes, "model_bytes": size, "samples": samples,
            "violations": violations, "both_on_device_samples": both, "errors": errors}


# ---- load: client processes on raw sockets ----

def _load_client(address: str, requests: int, seed: int, lost_ok: bool = False, version: int = wire.PROTOCOL_VERSION,
                 gated: bool = False) -> dict[str, Any]:
    """One client process: ``requests`` mixed requests, at most 8 in flight; counts every final reply per id.
    ``lost_ok``: runners are being killed, so ``runner_lost`` is a right reply too (counted apart). ``version``: the
    protocol version it writes (1 for a host that speaks only that). ``gated``: connected, it prints ``ready`` and
    waits for a line on stdin, so that every client starts sending at once (``benchmarks.clients_mixed``).
    Also returns each generate's time from its send to its result (``generate_ns``) and its own sending time."""
    rng = random.Random(seed)
    ctx, sock = _dealer(address)
    if gated:
        print("ready", flush=True)
        sys.stdin.readline()
    started, cpu_started = time.perf_counter(), time.process_time()
    sent: dict[int, tuple[str, float, int]] = {}
    sent_ns: dict[int, int] = {}
    generate_ns: list[int] = []
    finals: dict[int, int] = {}
    wrong = runner_lost = 0
    why: list[str] = []
    next_id, in_flight = 1, 0
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    deadline = time.monotonic() + 60 + requests * 0.5
    while (next_id <= requests or in_flight) and time.monotonic() < deadline:
        while next_id <= requests and in_flight < 8:
            roll = rng.random()
            if roll < 0.7:
                model = rng.choice(["fast", "other"])
                duration, s = rng.choice([0.02, 0.05, 0.1]), rng.randrange(1, 1000)  # 0: a random seed
                body = {"model": model, "prompt": "x", "params": {"duration_s": duration, "seed": s}}
                sent[next_id] = ("generate", duration, s)
                sent_ns[next_id] = time.perf_counter_ns()
                sock.send_multipart(wire.encode("generate", next_id, body, version=version))
            elif roll < 0.8 and next_id > 1:
                target = rng.randrange(1, next_id)
                sent[next_id] = ("cancel", 0.0, target)
                sock.send_multipart(wire.encode("cancel", next_id, {"target": target}, version=version))
            else:
                kind = rng.choice(["ps", "health"])
                sent[next_id] = (kind, 0.0, 0)
                sock.send_multipart(wire.encode(kind, next_id, {}, version=version))
            next_id += 1
            in_flight += 1
        if not poller.poll(1000):
            continue
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = wire.decode(sock.recv_multipart(copy=False))
            if msg.kind not in wire.FINAL_REPLY_KINDS:
                continue
            finals[msg.id] = finals.get(msg.id, 0) + 1
            if finals[msg.id] == 1:
                in_flight -= 1
            kind, duration, s = sent.get(msg.id, ("?", 0.0, 0))
            if kind == "generate" and msg.kind == "result":
                if finals[msg.id] == 1:
                    generate_ns.append(time.perf_counter_ns() - sent_ns[msg.id])
                audio = msg.body["audio"]
                bad = audio.shape[-1] != round(duration * SYNTH_SR) or msg.body["info"].get("seed") != s
            elif lost_ok and kind == "generate" and msg.body.get("code") == "runner_lost":
                runner_lost += 1
                bad = False
            else:
                bad = kind == "?" or (kind == "generate" and msg.body.get("code") != "cancelled")
            if bad:
                wrong += 1
                why.append(f"{kind} {msg.id}: {msg.kind} {str(msg.body)[:200]}")
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    end = time.monotonic() + 0.5  # a duplicate final reply would arrive now
    while time.monotonic() < end:
        if poller.poll(100):
            msg = wire.decode(sock.recv_multipart(copy=False))
            if msg.kind in wire.FINAL_REPLY_KINDS:
                finals[msg.id] = finals.get(msg.id, 0) + 1
    sock.close()
    ctx.term()
    return {"requests": requests, "lost": sum(1 for i in sent if i not in finals),
            "duplicated": sum(1 for n in finals.values() if n > 1), "wrong": wrong, "why": why[:5],
            "runner_lost": runner_lost, "generate_ns": generate_ns, "seconds": seconds,
            "cpu_s": cpu_s}


LOAD_MODELS = """
    [models.fast]
    backend = "synth"
    width = 32
    runner = "fast"
    [models.other]
    backend = "synth"
    width = 48
    runner = "other"
"""


def _clients(address: str, clients: int, requests: int, lost_ok: bool = False) -> list[dict[str, Any]]:
    """``clients`` client processes on raw sockets (``_load_client``), started together; their figures."""
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.soak", "_client", address, str(requests), str(i),
                               "lost_ok" if lost_ok else ""], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for i in range(clients)]
    return [json.loads(p.communicate(timeout=1200)[0]) for p in procs]


def _totals(outs: list[dict[str, Any]]) -> dict[str, Any]:
    total = {k: sum(o[k] for o in outs) for k in ("requests", "lost", "duplicated", "wrong", "runner_lost")}
    return {**total, "wrong_examples": [w for o in outs for w in o["why"]][:5]}


def load(clients: int, requests: int) -> dict[str, Any]:
    h = start_host(HOST.format(drain=10) + LOAD_MODELS)
    try:
        rss_before = rss_bytes(h.proc.pid)
        start = time.monotonic()
        outs = _clients(h.address, clients, requests)
        seconds = time.monotonic() - start
        with Client(h.address) as c:
            jobs = c.health()["jobs"]
        rss_after = rss_bytes(h.proc.pid)
    finally:
        h.stop()
    return {"clients": clients, **_totals(outs), "seconds": round(seconds, 1), "jobs_after": jobs,
            "rss_before_mb": rss_before // 2**20, "rss_after_mb": rss_after // 2**20}


# ---- runner kills ----

def runner_kills(kills: int, clients: int, requests: int) -> dict[str, Any]:
    """The load clients while a killer sends SIGKILL to a random runner process every 1-3 s, ``kills`` times: the
    clients run their requests in waves until the killer is done (a wave can end before the first kill)."""
    h = start_host(HOST.format(drain=10) + "    runner_crash_limit = 1000\n" + LOAD_MODELS)  # crashes here are the test
    done = threading.Event()
    killed: list[str] = []

    def killer() -> None:
        rng = random.Random(7)
        with Client(h.address) as c:
            while len(killed) < kills and not done.wait(rng.uniform(1.0, 3.0)):
                rows = [r for r in c.ps() if r["pid"] and r["runner_state"] == "ready"]
                if rows:
                    row = rng.choice(rows)
                    try:
                        os.kill(row["pid"], signal.SIGKILL)
                        killed.append(row["runner"])
                    except ProcessLookupError:
                        pass

    try:
        with Client(h.address) as c:
            c.load("fast")
            c.load("other")
        thread = threading.Thread(target=killer, daemon=True)
        start = time.monotonic()
        thread.start()
        outs: list[dict[str, Any]] = []
        while not outs or (len(killed) < kills and thread.is_alive() and time.monotonic() - start < 600):
            outs += _clients(h.address, clients, requests, lost_ok=True)
        seconds = time.monotonic() - start
        done.set()
        thread.join(10)
        with Client(h.address) as c:
            jobs = c.health()["jobs"]
            restarts = {r["name"]: r["runner_restarts"] for r in c.ps()}
            serves = all(c.generate(m, params={"duration_s": 0.05}).audio.size > 0 for m in ("fast", "other"))
    finally:
        h.stop()
    return {"clients": clients, "kills": len(killed), **_totals(outs), "seconds": round(seconds, 1),
            "jobs_after": jobs, "runner_restarts": restarts, "serves_after": serves}


# ---- client kills ----

_KILLED_CLIENT = """
import sys, threading
from modelhost.client import Client
c = Client(sys.argv[1])
started = threading.Event()
for i in range(3):  # progress runs in the thread waiting for the result
    job = c.submit("slow", params={"duration_s": 300.0, "seed": i}, progress=lambda s, t: started.set())
    threading.Thread(target=job.result, daemon=True).start()
started.wait()
print("started", flush=True)
threading.Event().wait()
"""


def client_kills(kills: int) -> dict[str, Any]:
    h = start_host(HOST.format(drain=5) + SLOW)
    rss: list[int] = []
    try:
        for _ in range(kills):
            p = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, h.address], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            assert p.stdout is not None and p.stdout.readline().startswith("started")
            p.kill()
            p.wait()
            rss.append(rss_bytes(h.proc.pid))
        deadline = time.monotonic() + 30
        with Client(h.address) as c:
            while c.health()["jobs"] != {"queued": 0, "running": 0} and time.monotonic() < deadline:
                time.sleep(0.1)
            jobs = c.health()["jobs"]
            served = c.generate("slow", params={"duration_s": 0.05}).audio.shape[-1] > 0
    finally:
        h.stop()
    warm = rss[min(len(rss) - 1, 3)]  # after a few kills: the allocator's working set is in place
    return {"kills": kills, "jobs_after": jobs, "serves_after": served, "rss_mb": [r // 2**20 for r in rss],
            "rss_growth_after_warmup_mb": (rss[-1] - warm) // 2**20}


# ---- host kill ----

def host_kill(clients: int) -> dict[str, Any]:
    catalog = HOST.format(drain=5) + SLOW
    h = start_host(catalog)
    folder = h.socket_path.parent.parent
    outcomes: list[tuple[str, float]] = []
    objs = [Client(h.address, heartbeat_s=0.25, liveness_s=2.0) for _ in range(clients)]
    try:
        started = [threading.Event() for _ in objs]
        jobs = [c.submit("slow", params={"duration_s": 300.0}, progress=lambda s, t, e=e: e.set()) for c, e in zip(objs, started)]
        killed = math.inf

        def wait(job: Any) -> None:  # progress runs in this thread, as the job waits
            try:
                job.result()
                outcomes.append(("result", time.monotonic() - killed))
            except E.ModelhostError as exc:
                outcomes.append((type(exc).__name__, time.monotonic() - killed))
        waiters = [threading.Thread(target=wait, args=(j,)) for j in jobs]
        for t in waiters:
            t.start()
        with Client(h.address) as probe:  # every client's job is on the host (one runs, the rest queue)
            end = time.monotonic() + 60
            while sum(probe.health()["jobs"].values()) < clients and time.monotonic() < end:
                time.sleep(0.05)
        end = time.monotonic() + 60
        while not any(e.is_set() for e in started) and time.monotonic() < end:  # and one is generating
            time.sleep(0.05)
        killed = time.monotonic()
        os.kill(h.proc.pid, signal.SIGKILL)
        h.proc.wait()
        for t in waiters:
            t.join(30)
        h = start_host(catalog, folder=folder, address=h.address)
        worked = 0
        for c in objs:
            worked += c.generate("slow", params={"duration_s": 0.05}).audio.shape[-1] > 0
    finally:
        for c in objs:
            c.close()
        h.stop()
    return {"clients": clients, "host_dead_raised": sum(1 for k, _ in outcomes if k == "HostDeadError"),
            "other_outcomes": sorted({k for k, _ in outcomes if k != "HostDeadError"}),
            "detect_s_max": round(max((s for _, s in outcomes), default=0.0), 2), "worked_after_restart": worked}


# ---- fuzz ----

def fuzz(messages: int) -> dict[str, Any]:
    """The suite's structure-aware fuzz (tests/integration/test_wire_fuzz.py, its mutator and oracle) at
    ``messages`` messages; its summary line is the figure."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "tests/integration/test_wire_fuzz.py", "-k", "mutated_messages"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MODELHOST_FUZZ_COUNT": str(messages)})
    summary = next((line for line in done.stdout.splitlines() if line.startswith("fuzz seed")), "")
    return {"messages": messages, "passed": done.returncode == 0, "summary": summary,
            "failure": "" if done.returncode == 0 else done.stdout[-2000:]}


# ---- drain ----

def drain(jobs: int) -> dict[str, Any]:
    h = start_host(HOST.format(drain=2) + SLOW + """
        [models.fast]
        backend = "synth"
        width = 16
    """)
    ctx, sock = _dealer(h.address)
    finals: dict[int, list[str]] = {}
    try:
        for i in range(1, jobs + 1):
            model, duration = ("slow", 300.0) if i % 3 == 0 else ("fast", 0.5)
            sock.send_multipart(wire.encode("generate", i, {"model": model, "params": {"duration_s": duration}}))
        for ping in range(4):
            sock.send_multipart(wire.encode("ping", 10**6 - ping, {}))
            time.sleep(0.25)
        h.proc.send_signal(signal.SIGTERM)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        end = time.monotonic() + 40
        ping = 0
        while time.monotonic() < end and h.proc.poll() is None or poller.poll(200):
            ping += 1
            sock.send_multipart(wire.encode("ping", 10**6 + ping, {}))  # heartbeats: this client is alive
            if poller.poll(100):
                msg = wire.decode(sock.recv_multipart(copy=False))
                if msg.kind in wire.FINAL_REPLY_KINDS:
                    finals.setdefault(msg.id, []).append(msg.kind if msg.kind == "result" else msg.body["code"])
        code = h.proc.wait(30)
    finally:
        sock.close()
        ctx.term()
    outcomes: dict[str, int] = {}
    for kinds in finals.values():
        for k in kinds:
            outcomes[k] = outcomes.get(k, 0) + 1
    return {"jobs": jobs, "replied_once": sum(1 for k in finals.values() if len(k) == 1),
            "lost": jobs - len(finals), "duplicated": sum(1 for k in finals.values() if len(k) > 1),
            "outcomes": outcomes, "exit_code": code}


SCENARIOS = {
    "budget": lambda s: budget(s["budget_rounds"]),
    "load": lambda s: load(s["load_clients"], s["load_requests"]),
    "client_kills": lambda s: client_kills(s["kills"]),
    "runner_kills": lambda s: runner_kills(s["runner_kills"], s["runner_kill_clients"], s["runner_kill_requests"]),
    "host_kill": lambda s: host_kill(s["host_kill_clients"]),
    "fuzz": lambda s: fuzz(s["fuzz_messages"]),
    "drain": lambda s: drain(s["drain_jobs"]),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        flags = argv[4:]
        version = next((int(f[1:]) for f in flags if f[:1] == "v" and f[1:].isdigit()), wire.PROTOCOL_VERSION)
        print(json.dumps(_load_client(argv[1], int(argv[2]), int(argv[3]), lost_ok="lost_ok" in flags, version=version,
                                      gated="gated" in flags)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's sizes")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="run only these scenarios")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    from benchmarks.machine import describe

    figures: dict[str, Any] = {"machine": describe(), "sizes": sizes}
    for name in args.only or SCENARIOS:
        start = time.monotonic()
        figures[name] = SCENARIOS[name](sizes)
        figures[name]["wall_s"] = round(time.monotonic() - start, 1)
        print(f"{name}: {json.dumps(figures[name])}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
