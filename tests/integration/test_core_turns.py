"""The core loop in-process, with a real synth model and its worker thread (no sockets): what one turn
lets go of, and in which order, and that timed work does not pile up with small calls."""

from __future__ import annotations

import threading
import time

from modelhost.client.protocol import wire
from modelhost.host.config import parse_config
from modelhost.host.core import Core
from modelhost.host.model import READY

PEER = b"client-1"


class _Replies:
    """The core's reply callback: records every message; for each final reply, what ``ps`` showed as it left."""

    def __init__(self, core_ref: list[Core]) -> None:
        self.core_ref = core_ref
        self.final: dict[int, list[tuple[str, dict, str]]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expect = 0

    def __call__(self, peer: bytes, kind: str, request_id: int, body: dict) -> None:
        if kind not in wire.FINAL_REPLY_KINDS:
            return
        state = self.core_ref[0].rows["m"]["state"]  # what another thread's ps reads at this moment
        with self.lock:
            self.final.setdefault(request_id, []).append((kind, body, state))
            if len(self.final) >= self.expect:
                self.done.set()


def _core() -> tuple[Core, _Replies]:
    ref: list[Core] = []
    replies = _Replies(ref)
    core = Core(parse_config({"models": {"m": {"backend": "synth", "width": 8, "depth": 1, "hop": 64}}}), replies)
    ref.append(core)
    core.start()
    return core, replies


def test_a_load_reply_leaves_after_the_state_it_reports_is_published() -> None:
    core, replies = _core()
    try:
        replies.expect = 1
        core.post(PEER, wire.Message("load", 1, {"model": "m"}), time.monotonic_ns())
        assert replies.done.wait(30)
        (kind, body, state_seen), = replies.final[1]
        assert kind == "result" and body["state"] == READY
        assert state_seen == READY  # a ps right after the reply cannot see the model still loading
    finally:
        core.control("stop")


def test_ps_rows_keep_the_catalog_order() -> None:
    names = ["m", "zeta", "alpha", "k", "beta"]
    core = Core(parse_config({"models": {n: {"backend": "synth", "width": 8} for n in names}}), lambda *a: None)
    assert list(core.rows) == names  # what `ps` lists and the memory bar letters follow
    assert [row["name"] for row in core.ps()] == names


def test_many_small_calls_get_one_reply_each_and_their_deadlines_do_not_pile_up() -> None:
    core, replies = _core()
    n = 1500
    try:
        replies.expect = 1
        core.post(PEER, wire.Message("load", 1, {"model": "m"}), time.monotonic_ns())
        assert replies.done.wait(30)
        replies.done.clear()
        replies.expect = n + 1
        for i in range(2, n + 2):  # each with a deadline an hour away, as a client's timeout_s gives
            core.post(PEER, wire.Message("generate", i, {"model": "m", "params": {"duration_s": 0.001, "seed": i},
                                                         "timeout_s": 3600.0}), time.monotonic_ns())
        assert replies.done.wait(120)
        assert core.wait_idle(10)
        assert sorted(replies.final) == list(range(1, n + 2))
        assert all(len(v) == 1 and v[0][0] == "result" for v in replies.final.values())
        assert len(core._timers) < 600  # ended jobs' deadlines were swept out, not kept for an hour
    finally:
        core.control("stop")
