"""The scheduler's rules: FIFO per model, cancel, deadlines, dead clients, and the invariant that
every submitted job ends in exactly one place (taken to run, or removed with a reason)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelhost.host.scheduler import FINISHED, QUEUED, REMOVED, RUNNING, Job, Scheduler


def job(peer: bytes = b"a", rid: int = 1, model: str = "m", deadline: float = 100.0) -> Job:
    return Job(peer, rid, "generate", model, {}, 0, deadline)


def test_fifo_per_model_and_models_are_independent() -> None:
    s = Scheduler()
    jobs = [job(rid=i, model="m" if i % 2 else "n") for i in range(6)]
    for j in jobs:
        s.submit(j)
    assert [s.take("m").request_id for _ in range(3)] == [1, 3, 5]
    assert s.take("m") is None
    assert s.take("n").request_id == 0
    assert s.queued() == 2 and s.running_count() == 4 and s.running_count("n") == 1


def test_cancel_removes_a_queued_job_and_flags_a_running_one() -> None:
    s = Scheduler()
    a, b = job(rid=1), job(rid=2)
    s.submit(a)
    s.submit(b)
    assert s.take("m") is a
    assert s.cancel((b"a", 2)) is b and b.state == REMOVED and b.reason == "cancelled"
    assert s.cancel((b"a", 1)) is a and a.state == RUNNING and a.cancelled
    assert s.cancel((b"a", 3)) is None
    assert s.cancel((b"other", 1)) is None  # a client can only reach its own requests
    s.finish(a)
    assert a.state == FINISHED and s.running_count() == 0


def test_a_deadline_removes_a_queued_job_and_flags_a_running_one() -> None:
    s = Scheduler()
    running, late, fine = job(rid=1, deadline=5), job(rid=2, deadline=5), job(rid=3, deadline=50)
    for j in (running, late, fine):
        s.submit(j)
    s.take("m")
    assert s.expire_one(late, 10.0) and late.state == REMOVED  # removed: the caller replies
    assert not s.expire_one(running, 10.0) and running.cancelled and running.reason == "deadline"  # its worker stops it
    assert not s.expire_one(fine, 10.0) and not fine.cancelled and s.queued() == 1


def test_drop_peer_touches_only_that_client() -> None:
    s = Scheduler()
    mine_running, mine_queued, theirs = job(b"a", 1), job(b"a", 2), job(b"b", 1)
    for j in (mine_running, mine_queued, theirs):
        s.submit(j)
    s.take("m")
    assert s.drop_peer(b"a") == [mine_queued]
    assert mine_running.reason == "client_gone" and not theirs.cancelled


def test_first_cancel_reason_wins() -> None:
    s = Scheduler()
    j = job()
    s.submit(j)
    s.take("m")
    s.cancel(j.key)
    s.expire_one(j, 1e9)
    assert j.reason == "cancelled"


OPS = st.lists(
    st.tuples(st.sampled_from(["submit", "take", "take_batch", "finish", "cancel", "expire", "drop", "cancel_all"]),
              st.integers(0, 3), st.integers(0, 7), st.sampled_from(["m", "n"])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_every_job_ends_in_exactly_one_place(ops) -> None:
    s = Scheduler()
    submitted: list[Job] = []
    taken: list[Job] = []
    removed: list[Job] = []
    for op, peer_n, n, model in ops:
        peer = bytes([peer_n])
        if op == "submit":
            j = job(peer, len(submitted), model, deadline=float(n))
            submitted.append(j)
            s.submit(j)
        elif op == "take":
            j = s.take(model)
            if j is not None:
                taken.append(j)
        elif op == "take_batch":  # key: the deadline's parity (None for 0): some join, some pass, some run alone
            taken += s.take_batch(model, peer_n + 1, lambda j: None if j.deadline_s == 0 else j.deadline_s % 2)
        elif op == "finish" and s.running:
            s.finish(next(iter(s.running.values())))
        elif op == "cancel":
            j = s.cancel((peer, n))
            if j is not None and j.state == REMOVED:
                removed.append(j)
        elif op == "expire":  # every deadline timer due at time n fires, as the core's timer heap fires them
            removed += [j for j in submitted if j.state in (QUEUED, RUNNING) and s.expire_one(j, float(n))]
        elif op == "drop":
            removed += s.drop_peer(peer)
        elif op == "cancel_all":
            removed += s.cancel_all("shutdown")
    queued = [j for q in s.queues.values() for j in q]
    ids = lambda js: [id(j) for j in js]  # noqa: E731
    assert sorted(ids(taken) + ids(removed) + ids(queued)) == sorted(ids(submitted))
    assert all(j.state == QUEUED and not j.cancelled for j in queued)
    assert all(j.state == REMOVED and j.cancelled and j.reason for j in removed)
    assert all(j.state in (RUNNING, FINISHED) for j in taken)
    for q in s.queues.values():  # FIFO: queue order is submission order
        assert [j.request_id for j in q] == sorted(j.request_id for j in q)


def gen(rid: int, key: object, model: str = "m", kind: str = "generate") -> Job:
    return Job(b"a", rid, kind, model, {"key": key}, 0, 100.0)


def key_of(j: Job) -> object:
    return j.body["key"]


def test_take_batch_joins_equal_keys_in_order_up_to_max_rows_and_keeps_the_rest_in_place() -> None:
    s = Scheduler()
    jobs = [gen(1, "x"), gen(2, "y"), gen(3, "x"), gen(4, None), gen(5, "x"), gen(6, "x")]
    for j in jobs:
        s.submit(j)
    assert s.batch_size("m", 3, key_of) == 3
    batch = s.take_batch("m", 3, key_of)
    assert [j.request_id for j in batch] == [1, 3, 5]
    assert all(j.state == RUNNING for j in batch) and s.running_count("m") == 3
    assert [j.request_id for j in s.queues["m"]] == [2, 4, 6]  # passed over: same order, still queued
    assert [j.request_id for j in s.take_batch("m", 3, key_of)] == [2]  # no other "y"
    assert [j.request_id for j in s.take_batch("m", 3, key_of)] == [4]  # key None: always alone
    assert [j.request_id for j in s.take_batch("m", 3, key_of)] == [6]
    assert s.take_batch("m", 3, key_of) == [] and s.batch_size("m", 3, key_of) == 0


def test_a_job_without_a_key_or_one_row_allowed_runs_alone() -> None:
    s = Scheduler()
    for j in (gen(1, None), gen(2, None), gen(3, "x"), gen(4, "x")):
        s.submit(j)
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [1]  # two seeded jobs never share a pass
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [2]
    assert [j.request_id for j in s.take_batch("m", 1, key_of)] == [3]  # max_batch_size = 1: one at a time
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [4]


def test_a_batch_does_not_reach_past_a_queued_unload_or_into_another_model() -> None:
    s = Scheduler()
    for j in (gen(1, "x"), gen(2, "x", model="n"), gen(3, None, kind="unload"), gen(4, "x")):
        s.submit(j)
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [1]  # 4 must run after the unload
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [3]
    assert [j.request_id for j in s.take_batch("m", 8, key_of)] == [4]
    assert [j.request_id for j in s.take_batch("n", 8, key_of)] == [2]


def test_rows_of_a_running_batch_are_cancelled_and_finished_one_by_one() -> None:
    s = Scheduler()
    for j in (gen(1, "x"), gen(2, "x")):
        s.submit(j)
    a, b = s.take_batch("m", 8, key_of)
    assert s.cancel(b.key) is b and b.cancelled and not a.cancelled and b.state == RUNNING
    s.finish(b)
    assert s.running_count("m") == 1 and s.find(a.key) is a
