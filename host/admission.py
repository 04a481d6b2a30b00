"""Memory admission: whether a load, a swap-in or a run fits its device now, and which models must leave first.

Runs in the core's thread (``modelhost-core``), which passes the models and the device's budget; every
function here only reads ``Model``s (their states, measured sizes, pins, use) and decides. The core carries
the decision out (commands to workers, replies). No I/O, no zmq, no torch, no clock of its own: unit-tested
with models built from specs (``tests/unit/test_admission.py``). The eviction order itself is
``host.residency``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from modelhost.host import residency
from modelhost.host.backends import MemoryReport
from modelhost.host.model import MOVING, ON_DEVICE, READY, UNLOADING, OFFLOADING, WARM, Model


@dataclass(frozen=True)
class Admission:
    """What a load or swap-in of one model may do now: ``go``; evict ``victims`` first (then ask again); ``wait`` for
    busy models; or ``never`` (it cannot fit even with everything else gone: ``why`` says so)."""

    verdict: str  # "go", "evict", "wait", "never"
    victims: tuple[str, ...] = ()
    why: str = ""


def admit(model: Model, need: MemoryReport, device: str, budget_bytes: int, models: Iterable[Model],
          now_s: float) -> Admission:
    """May ``model`` (needing ``need`` on ``device``) load now beside the models on that device?"""
    residents = [m for m in models if m is not model and m.state in ON_DEVICE and m.device == device]
    busy = {m.name for m in residents if not m.idle or m.state in MOVING}
    try:
        victims = residency.plan(model.name, need.own_bytes, budget_bytes,
                                 [m.resident(m.name in busy) for m in residents], now_s, need.shared)
    except residency.NoRoom as exc:
        try:  # would it fit once the busy ones are done? then it waits for them
            residency.plan(model.name, need.own_bytes, budget_bytes, [m.resident(False) for m in residents], now_s,
                           need.shared)
            return Admission("wait")
        except residency.NoRoom:
            return Admission("never", why=str(exc))
    if victims:
        return Admission("evict", tuple(v.name for v in victims))
    return Admission("go")


def rows_that_fit(model: Model, rows: int, audio_s: float | None, budget_bytes: int, models: Iterable[Model]) -> int:
    """How many rows (at most ``rows``) of a run making ``audio_s`` seconds each may start now on ``model``'s device,
    given their activation memory (measured per second of audio per row) beside what the device holds; 0: wait
    for the other runs there. A run that could not fit even alone starts anyway, alone, when nothing else runs."""
    per_row = model.activation_bytes(audio_s)
    if per_row <= 0:
        return rows
    on_device = [m for m in models if m.state in ON_DEVICE and m.device == model.device]
    free = budget_bytes - residency.used_bytes([m.resident(False) for m in on_device])
    fit = min(rows, max(0, free) // per_row)
    if fit >= 1:
        return fit
    others_running = any(m is not model and m.activation_reserved_bytes for m in on_device)
    return 0 if others_running else 1


def warm_room(model: Model, warm_budget_bytes: int, models: Iterable[Model], now_s: float) -> list[str] | None:
    """Where an evicted ``model`` goes: the warm CPU tier (the warm models to unload first so it fits), or None: it
    is unloaded (it cannot offload, it is not on a GPU, or the tier cannot hold it)."""
    if not (model.backend.can_offload and (model.device or "").startswith("cuda")):
        return None
    warm = [m.resident(not m.idle) for m in models if m.state == WARM and m is not model]
    target = residency.demote(model.resident(False), True, warm_budget_bytes, warm, now_s)
    return None if target is None else [r.name for r in target]


def out_of_memory_victims(device: str, keep: Model, models: Iterable[Model]) -> list[Model]:
    """After an out-of-memory error on ``device``: every idle, unpinned ready model there but ``keep``."""
    return [m for m in models if m is not keep and m.device == device and m.state == READY and m.idle and not m.pinned]


def evicting_on(device: str | None, models: Iterable[Model]) -> bool:
    """Whether an eviction is still under way on ``device`` (a retry after out-of-memory waits for it)."""
    return any(m.device == device and m.state in (UNLOADING, OFFLOADING) for m in models)
