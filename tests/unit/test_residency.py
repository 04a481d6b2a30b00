"""The eviction policy: budget never exceeded, pins and busy models never evicted, the documented
order holds, and a plan that cannot work says what holds the memory."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelhost.host.residency import GIB, NoRoom, Resident, Usage, eviction_order, keep_until, plan


def res(name: str, gib: float, *, reload_s: float = 10.0, uses: float = 0.0, last: float = 0.0, pinned: bool = False,
        busy: bool = False, keep: float = 0.0) -> Resident:
    return Resident(name, "cuda", int(gib * GIB), reload_s, last, Usage(rate=uses, at_s=100.0), pinned, busy, keep)


NOW = 100.0


def test_cheap_to_reload_rarely_used_and_large_goes_first() -> None:
    big_cheap_rare = res("big", 8, reload_s=2, uses=0)
    small_costly_hot = res("hot", 1, reload_s=30, uses=20)
    medium = res("medium", 4, reload_s=10, uses=2)
    order = [r.name for r in eviction_order([small_costly_hot, medium, big_cheap_rare], NOW)]
    assert order == ["big", "medium", "hot"]


def test_expired_keep_alive_goes_before_everything_else() -> None:
    hot_but_expired = res("expired", 1, reload_s=60, uses=50, keep=NOW - 1)
    cold_but_kept = res("kept", 8, reload_s=1, uses=0, keep=NOW + 60)
    assert [r.name for r in eviction_order([cold_but_kept, hot_but_expired], NOW)] == ["expired", "kept"]


def test_ties_break_least_recently_used_first() -> None:
    a, b = res("a", 2, last=50), res("b", 2, last=10)
    assert [r.name for r in eviction_order([a, b], NOW)] == ["b", "a"]


def test_usage_decays_with_its_half_life() -> None:
    u = Usage(half_life_s=10)
    u.hit(0)
    u.hit(0)
    assert u.value(0) == 2 and math.isclose(u.value(10), 1) and math.isclose(u.value(20), 0.5)


def test_plan_evicts_the_fewest_in_order_and_never_pins_or_busy() -> None:
    residents = [res("pinned", 6, pinned=True), res("busy", 6, busy=True), res("a", 4, uses=5), res("b", 4, uses=0)]
    victims = plan("new", 6 * GIB, 24 * GIB, residents, NOW)
    assert [v.name for v in victims] == ["b"]  # 20 used, 4 free; evicting b frees 8


def test_no_room_names_what_holds_memory_and_how_much_is_missing() -> None:
    residents = [res("voice", 10, pinned=True), res("musicgen", 10, busy=True)]
    with pytest.raises(NoRoom) as info:
        plan("audiogen", 6 * GIB, 24 * GIB, residents, NOW)
    assert info.value.missing_bytes == 2 * GIB
    assert "voice (10.00 GiB, pinned)" in str(info.value) and "musicgen (10.00 GiB, busy)" in str(info.value)
    with pytest.raises(NoRoom, match="budget is 24.00 GiB"):
        plan("huge", 30 * GIB, 24 * GIB, [], NOW)


def test_keep_until() -> None:
    assert keep_until(100, 300) == 400
    assert keep_until(100, 300, requested_s=60) == 400  # a request never shortens the operator's keep-alive
    assert keep_until(100, 300, requested_s=900) == 1000
    assert keep_until(100, math.inf) == math.inf


RESIDENT = st.builds(
    lambda i, gib, reload_s, uses, last, pinned, busy, keep: res(f"m{i}", gib, reload_s=reload_s, uses=uses, last=last,
                                                                    pinned=pinned, busy=busy, keep=keep),
    st.integers(0, 10**6), st.floats(0.01, 12), st.floats(0, 120), st.floats(0, 50), st.floats(0, 100),
    st.booleans(), st.booleans(), st.sampled_from([0.0, NOW - 1, NOW + 1, math.inf]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(RESIDENT, max_size=8, unique_by=lambda r: r.name), st.floats(0.01, 30), st.floats(1, 48))
def test_plan_properties(residents, need_gib, budget_gib) -> None:
    need, budget = int(need_gib * GIB), int(budget_gib * GIB)
    used = sum(r.bytes for r in residents)
    try:
        victims = plan("new", need, budget, residents, NOW)
    except NoRoom as exc:
        evictable = sum(r.bytes for r in residents if not (r.pinned or r.busy))
        assert need > budget or used - evictable + need > budget  # it truly could not fit
        assert exc.missing_bytes > 0
        return
    assert used - sum(v.bytes for v in victims) + need <= budget  # the budget holds
    assert not any(v.pinned or v.busy for v in victims)  # pins and busy models stay
    order = eviction_order(residents, NOW)
    assert victims == order[: len(victims)]  # the documented order, a prefix of it
    if victims:  # and no more than needed: without the last victim it would not fit
        assert used - sum(v.bytes for v in victims[:-1]) + need > budget


def test_an_evicted_gpu_model_goes_to_the_warm_tier_when_it_fits_there() -> None:
    from modelhost.host.residency import demote

    victim = res("musicgen", 6)
    assert demote(victim, True, 16 * GIB, [res("old", 8)], NOW) == []  # fits beside what is warm
    warm = [res("old-rare", 8, uses=0), res("old-hot", 6, uses=9)]
    assert [v.name for v in demote(victim, True, 16 * GIB, warm, NOW)] == ["old-rare"]  # room by the same rule
    assert demote(victim, False, 16 * GIB, [], NOW) is None  # cannot offload: unloaded
    assert demote(victim, True, 0, [], NOW) is None  # no warm tier (CPU-only machine, or budget 0)
    assert demote(res("huge", 20), True, 16 * GIB, [], NOW) is None  # too big for the tier
