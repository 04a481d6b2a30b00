"""What the core and a model's worker say to each other: ``Command``s down, ``Report``s up.

A worker (a thread in the host, ``host.worker``, or the same class inside a runner process,
``host.runner``) gets frozen values only: a ``Command`` with the ``Task``s of a run, never the core's
mutable ``Job``s. Whether a task must stop reaches it separately (``Worker.stop``), and its answer is
one ``Report`` whose ``Row``s name their task by key. For a runner process the same values travel as
plain dicts (``*_to_wire`` / ``*_from_wire``, carried by ``client.protocol.wire``'s runner kinds); nothing here
does I/O. Pure data and conversions: any thread, any process (Python 3.10 too: runners may use an
older interpreter).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Hashable

from modelhost.client.protocol.errors import BackendError, RequestError, error_from_reply
from modelhost.host.backends.base import GenerateRequest, MemoryReport, ModelSpec

TaskKey = tuple[bytes, int]  # (peer, request id): the client's routing id and its request id


@dataclass(frozen=True)
class Task:
    """One generate request as a worker sees it."""

    peer: bytes
    request_id: int
    body: dict[str, Any]  # what the client sent: prompt, params, audio, sample_rate, stream, stream_interval_s
    received_ns: int  # time.monotonic_ns() at the host (one clock for every process on the machine)
    load_ns: int = 0  # time its model's load took for it

    @property
    def key(self) -> TaskKey:
        return (self.peer, self.request_id)

    @property
    def request(self) -> GenerateRequest:
        body = self.body
        return GenerateRequest(prompt=body.get("prompt"), params=body.get("params") or {},
                               audio=body.get("audio"), sample_rate=body.get("sample_rate"))


@dataclass(frozen=True)
class Command:
    """What the core asks a worker to do: ``load`` (device, warmup), ``run`` (tasks, device, measure),
    ``unload`` (reason), ``offload``, ``restore`` (device), ``stop``."""

    op: str
    model: str = ""
    tasks: tuple[Task, ...] = ()  # a run's rows: one task, or a batch that shares one pass
    measure: bool = False  # a run: measure how far memory rises (its backend counts activations)
    device: str = ""
    reason: str = ""
    warmup: bool = False


@dataclass
class Row:
    """How one task of a run ended: ``ok`` with its result body, or its error (``oom``: out of memory).
    ``reply`` is the body already encoded for its client (off the core's thread), where the worker's
    owner encodes; the core then sends it as is."""

    key: TaskKey
    ok: bool
    body: dict[str, Any] = field(default_factory=dict)
    error: RequestError | None = None
    oom: bool = False
    reply: Any = None


@dataclass
class Report:
    """A worker's answer to one command: ``ok``, or the error it ended in."""

    model: str
    command: Command
    ok: bool
    error: RequestError | None = None
    oom: bool = False  # the device ran out of memory: the core frees room and retries once
    report: MemoryReport | None = None  # the measured size after a load or restore (a run: if read again)
    seconds: float = 0.0  # how long the load / restore took
    delta_bytes: int = 0  # allocator (CUDA) or RSS (CPU) growth during a load
    details: dict[str, Any] | None = field(default_factory=dict)  # the backend's facts for ps; None: not read
    rows: list[Row] = field(default_factory=list)  # a run: one per task, in the command's order
    peak_rise_bytes: int = 0  # a run: how far memory rose above its start (PeakMeter) while it ran
    process_bytes: int = 0  # what the whole process running it holds on the device (a runner's, measured)


# ---- plain values for a runner process ----

def spec_to_wire(spec: ModelSpec) -> dict[str, Any]:
    out = {f.name: getattr(spec, f.name) for f in fields(ModelSpec)}
    out["keep_alive_s"] = None if out["keep_alive_s"] == float("inf") else out["keep_alive_s"]
    return out


def spec_from_wire(raw: dict[str, Any]) -> ModelSpec:
    known = {f.name for f in fields(ModelSpec)}
    values = {k: v for k, v in raw.items() if k in known}
    if values.get("keep_alive_s") is None:
        values["keep_alive_s"] = float("inf")
    return ModelSpec(**values)


def command_to_wire(command: Command, spec: ModelSpec | None = None) -> dict[str, Any]:
    return {"op": command.op, "model": command.model, "device": command.device, "reason": command.reason,
            "measure": command.measure, "warmup": command.warmup, "spec": spec_to_wire(spec) if spec else None,
            "tasks": [[t.peer, t.request_id, t.body, t.received_ns, t.load_ns] for t in command.tasks]}


def command_from_wire(body: dict[str, Any]) -> tuple[Command, ModelSpec | None]:
    tasks = tuple(Task(peer, rid, tbody, received_ns, load_ns) for peer, rid, tbody, received_ns, load_ns in body["tasks"])
    command = Command(op=body["op"], model=body["model"], tasks=tasks, measure=body["measure"],
                      device=body["device"], reason=body["reason"], warmup=body["warmup"])
    raw_spec = body.get("spec")
    return command, spec_from_wire(raw_spec) if raw_spec else None


def error_to_wire(error: RequestError | None) -> list[str] | None:
    return None if error is None else [error.code, error.message]


def error_from_wire(raw: list[str] | None) -> RequestError | None:
    return None if raw is None else error_from_reply(raw[0], raw[1])


def memory_to_wire(report: MemoryReport | None) -> list[Any] | None:
    if report is None:
        return None
    return [report.own_bytes, [[_key_to_wire(k), b] for k, b in report.shared.items()]]


def memory_from_wire(raw: list[Any] | None) -> MemoryReport | None:
    if raw is None:
        return None
    own, shared = raw
    return MemoryReport(int(own), {_key_from_wire(k): int(b) for k, b in shared})


def report_to_wire(report: Report) -> dict[str, Any]:
    """A report without its rows' bodies: those travel first, one message per row, each encoded for its client."""
    return {"model": report.model, "op": report.command.op, "ok": report.ok, "error": error_to_wire(report.error),
            "oom": report.oom, "memory": memory_to_wire(report.report), "seconds": report.seconds,
            "delta_bytes": report.delta_bytes, "details": report.details, "peak_rise_bytes": report.peak_rise_bytes,
            "process_bytes": report.process_bytes,
            "rows": [[r.key[0], r.key[1], r.ok, error_to_wire(r.error), r.oom] for r in report.rows]}


def report_from_wire(body: dict[str, Any], command: Command, bodies: dict[TaskKey, Any]) -> Report:
    """The report of ``command``; ``bodies``: the rows' results as they arrived (encoded for their clients)."""
    rows = [Row((peer, rid), ok, error=error_from_wire(err), oom=oom, reply=bodies.get((peer, rid)))
            for peer, rid, ok, err, oom in body["rows"]]
    for row in rows:
        if row.ok and row.reply is None:  # a runner bug: the row's client still gets its one reply
            row.ok, row.error = False, BackendError(f"model {command.model!r}: the runner reported a result it never sent")
    return Report(body["model"], command, body["ok"], error=error_from_wire(body["error"]), oom=body["oom"],
                  report=memory_from_wire(body["memory"]), seconds=body["seconds"], delta_bytes=body["delta_bytes"],
                  details=body["details"], rows=rows, peak_rise_bytes=body["peak_rise_bytes"],
                  process_bytes=body["process_bytes"])


def _key_to_wire(key: Hashable) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _key_from_wire(raw: Any) -> Hashable:
    return tuple(_key_from_wire(x) for x in raw) if isinstance(raw, list) else raw
