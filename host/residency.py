"""Memory budget and eviction policy: which models to evict so another fits. Pure: no torch, no zmq.

The rule (also in the README):

1. Never evicted: pinned models, and models with work queued or running.
2. Among the rest, models whose keep-alive has passed go first.
3. Then the lowest keep-value first, where
       keep_value = (reload_s + 1) * (use_rate + 0.1) / size_gib
   ``reload_s`` is the model's measured load time (its cost to bring back), ``use_rate`` its recent
   use (requests, decayed with a half-life, so frequency and recency both count), ``size_gib`` the
   memory it frees. A model that is cheap to reload, rarely used and large goes first.
4. Ties: least recently used first.

Tiers: a model evicted from a GPU goes to the warm CPU tier (pinned RAM, its own budget) when its
backend can offload and the tier can hold it, making room there by the same rule (``demote``);
otherwise it is unloaded. A request for a warm model swaps it back in. On a CPU-only machine there
is no warm tier: models are resident or unloaded.

Weights shared by several models (RVC voices on one device share one HuBERT) are counted once:
a ``Resident`` has its own ``bytes`` plus ``shared`` ``key -> bytes``; a load needs only the shared
weights not already resident, and evicting a model frees a shared weight only with its last holder.

``plan`` picks the fewest victims in that order until the new model fits the device's budget; if
it cannot fit even after every evictable model, it raises ``NoRoom`` naming what is pinned or busy
and how many bytes are missing.
Only the host's core loop calls these, passing ``now`` (monotonic seconds).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable

GIB = 2**30
DEFAULT_HALF_LIFE_S = 600.0


@dataclass
class Usage:
    """A model's use, decayed: each request adds 1; the sum halves every ``half_life_s``."""

    rate: float = 0.0
    at_s: float = 0.0
    half_life_s: float = DEFAULT_HALF_LIFE_S

    def value(self, now_s: float) -> float:
        return self.rate * 0.5 ** (max(0.0, now_s - self.at_s) / self.half_life_s)

    def hit(self, now_s: float) -> None:
        self.rate = self.value(now_s) + 1.0
        self.at_s = now_s


@dataclass
class Resident:
    """What the policy knows of one loaded (or loading) model."""

    name: str
    device: str
    bytes: int  # its own; shared weights are in ``shared``
    reload_s: float
    last_used_s: float
    usage: Usage = field(default_factory=Usage)
    pinned: bool = False
    busy: bool = False
    keep_until_s: float = 0.0  # math.inf: keep forever (still evictable under pressure unless pinned)
    shared: dict[Hashable, int] = field(default_factory=dict)

    def keep_value(self, now_s: float) -> float:
        size_gib = max(self.bytes + sum(self.shared.values()), 1) / GIB
        return (self.reload_s + 1.0) * (self.usage.value(now_s) + 0.1) / size_gib


def used_bytes(residents: list[Resident]) -> int:
    """What ``residents`` hold on their device: own bytes, plus each shared weight once."""
    shared: dict[Hashable, int] = {}
    for r in residents:
        shared.update(r.shared)
    return sum(r.bytes for r in residents) + sum(shared.values())


def needed_bytes(need_bytes: int, need_shared: dict[Hashable, int] | None, residents: list[Resident]) -> int:
    """What a load adds to a device: its own bytes and the shared weights not resident there yet."""
    present = {k for r in residents for k in r.shared}
    return need_bytes + sum(b for k, b in (need_shared or {}).items() if k not in present)


class NoRoom(Exception):
    """The model cannot fit: the message names the pinned and busy models and the missing bytes."""

    def __init__(self, message: str, missing_bytes: int) -> None:
        super().__init__(message)
        self.missing_bytes = missing_bytes


def eviction_order(residents: list[Resident], now_s: float) -> list[Resident]:
    """Evictable models, first to go first (rules 1-4)."""
    candidates = [r for r in residents if not r.pinned and not r.busy]
    return sorted(candidates, key=lambda r: (r.keep_until_s > now_s, r.keep_value(now_s), r.last_used_s))


def plan(name: str, need_bytes: int, budget_bytes: int, residents: list[Resident], now_s: float,
         need_shared: dict[Hashable, int] | None = None) -> list[Resident]:
    """The models to evict (in order) so a model of ``need_bytes`` (plus ``need_shared`` weights) fits in
    ``budget_bytes`` on this device.

    ``residents`` are the models on the device (loading ones too, as busy), ``name`` excluded. Raises NoRoom.
    """
    need_shared = need_shared or {}
    total_need = need_bytes + sum(need_shared.values())
    if total_need > budget_bytes:
        raise NoRoom(f"model {name!r} needs {_fmt(total_need)} but the device's budget is {_fmt(budget_bytes)}; "
                     "raise the budget or put the model on another device", total_need - budget_bytes)
    need_bytes = needed_bytes(need_bytes, need_shared, residents)
    free = budget_bytes - used_bytes(residents)
    holders = Counter(k for r in residents for k in r.shared)
    victims: list[Resident] = []
    for victim in eviction_order(residents, now_s):
        if free >= need_bytes:
            break
        victims.append(victim)
        free += victim.bytes
        for key, nbytes in victim.shared.items():  # a shared weight goes with its last holder, unless the new model needs it
            holders[key] -= 1
            if holders[key] == 0 and key not in need_shared:
                free += nbytes
    if free < need_bytes:
        held = [f"{r.name} ({_fmt(r.bytes)}, {'pinned' if r.pinned else 'busy'})" for r in residents if r.pinned or r.busy]
        missing = need_bytes - free
        raise NoRoom(f"model {name!r} needs {_fmt(need_bytes)}; {_fmt(missing)} is missing after evicting every "
                     f"evictable model; held: {', '.join(held) or 'nothing'}. Unpin a model, raise the budget, "
                     "or retry when the busy ones finish", missing)
    return victims


def demote(victim: Resident, can_offload: bool, warm_budget_bytes: int, warm: list[Resident],
           now_s: float) -> list[Resident] | None:
    """Where an evicted GPU model goes: the warm CPU tier (returns the warm models to unload first so it
    fits, by the same rule), or None: straight to unloaded (it cannot offload, or the tier cannot hold it)."""
    if not can_offload or warm_budget_bytes <= 0:
        return None
    try:
        return plan(victim.name, victim.bytes, warm_budget_bytes, warm, now_s)
    except NoRoom:
        return None


def keep_until(last_used_s: float, keep_alive_s: float, requested_s: float | None = None) -> float:
    """When a model may be unloaded for idleness: the operator's keep-alive, or longer if a request asked.

    A request can extend the keep-alive, never shorten it below the operator's value.
    """
    alive = keep_alive_s if requested_s is None else max(keep_alive_s, requested_s)
    return math.inf if math.isinf(alive) else last_used_s + alive


def _fmt(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"
