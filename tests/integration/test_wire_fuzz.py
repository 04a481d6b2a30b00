"""Structure-aware fuzzing of a real host through a raw DEALER socket (issue 12: bad input).

The host is its own (``start_host``, the helper the shared fixture uses) with small limits, 1 MiB
and 8 frames per message, so oversized messages are cheap to send, and one tiny synth model whose
``max_duration_s`` keeps any generation that gets through to a few milliseconds. Not the session's
shared host: the fuzz loads, unloads and pins models, which other tests must not see.

The messages come from a seeded random mutator (``MODELHOST_FUZZ_SEED``, ``MODELHOST_FUZZ_COUNT``)
rather than hypothesis: 20,000 examples at hypothesis' per-example cost do not fit a minute on a
2-core machine, and tests/unit/test_wire.py already runs hypothesis on the codec itself. Each
message starts as a valid request and gets one to three mutations: header fields deleted, retyped
or added, keys reordered; body fields deleted or retyped, non-finite timeouts, deep or foreign
params, broken array extensions; and at frame level truncation, trailing garbage, flipped bytes,
duplicated or dropped frames, too many frames, too many bytes, random bytes.

Asserted: every message gets exactly one final reply (pong, result or error; progress is extra),
every reply has the documented shape (a header map of exactly v/k/id/b; an error body with a code
and a message) and decodes with the client's own decoder, the request id is echoed whenever the
header's id can be read (oracle: plain msgpack reads frame 0 as a map whose "id" is an int in
[0, 2**63)), and afterwards the host process is alive and answers ping and generate.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections import Counter
from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
import zmq

from modelhost.client import Client
from modelhost.client.protocol import wire
from modelhost.client.protocol.errors import RequestError
from tests.support.launch import start_host

SEED = int(os.environ.get("MODELHOST_FUZZ_SEED", "20240612"))
COUNT = int(os.environ.get("MODELHOST_FUZZ_COUNT", "20000"))
MAX_MESSAGE_BYTES = 1 << 20
MAX_FRAMES = 8
WINDOW = 64  # messages in flight: replies keep flowing, and the DEALER's queues never fill
TS = msgpack.Timestamp(1_700_000_000, 5)
FIRST_ID = 1_000_000


@pytest.fixture(scope="module")
def fuzz_host():
    h = start_host(f"""
        preload = ["tiny"]

        [host]
        heartbeat_s = 0.25
        client_liveness_s = 5
        max_message_bytes = {MAX_MESSAGE_BYTES}
        max_frames = {MAX_FRAMES}

        [models.tiny]
        backend = "synth"
        width = 16
        depth = 1
        max_duration_s = 0.05

        [models.other]
        backend = "synth"
        width = 8
        depth = 1
        max_duration_s = 0.05
    """)
    yield h
    h.stop()


def _dealer(address: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(address)
    return ctx, sock


# ---- the mutator ----

WEIRD: list[Any] = [
    None, True, False, 0, -1, 1, 1.0, 0.5, float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 1e308,
    2**63 - 1, 2**63, 2**64 - 1, -(2**63), "", "tiny", "x" * 300, b"", b"\x00\xff", [], [1, [2, [3]]], {}, {"a": 1},
    {1: 2}, {b"k": "v"}, TS, msgpack.ExtType(7, b"x"), msgpack.ExtType(1, b"\xc1"), msgpack.ExtType(2, b""),
]


def _weird(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(WEIRD))  # a copy: mutations must not change the pool


BODY_FIELDS = ["model", "prompt", "params", "audio", "sample_rate", "timeout_s", "keep_alive_s", "target", "pinned"]


def _array(rng: random.Random, frames: list[bytes], *, broken: bool = False) -> msgpack.ExtType:
    """A float32 audio array as ext 1 (inline) or ext 2 (its own frame); ``broken``: a wrong spec of some kind."""
    samples = rng.choice([1, 16, 256, 640])
    data = np.zeros(samples, np.float32).tobytes()
    if not broken:
        if rng.random() < 0.5:
            return msgpack.ExtType(1, msgpack.packb(["<f4", [samples], data]))
        frames.append(data)
        return msgpack.ExtType(2, msgpack.packb(["<f4", [samples], len(frames)]))
    spec: list[Any] = ["<f4", [samples], data]
    choice = rng.randrange(9)
    if choice == 0:
        spec[0] = rng.choice(["|O", "V8", "<M8[s]", "zz", 4, "<f4" * 9, TS])
    elif choice == 1:
        spec[1] = rng.choice([[-1], [2**40, 2**40], [1] * 40, 3, [True], [samples + 1]])
    elif choice == 2:
        spec[2] = data[: rng.randrange(len(data))]
    elif choice == 3:  # a frame index out of range, to the header, or referenced twice
        frames.append(data)
        where = rng.choice([0, len(frames) + 1, -1, True, 2**64 - 1, 1 if len(frames) > 1 else len(frames) + 3])
        return msgpack.ExtType(2, msgpack.packb(["<f4", [samples], where]))
    elif choice == 4:
        spec = spec[: rng.randrange(3)]
    elif choice == 5:
        return msgpack.ExtType(rng.choice([0, 3, 9, 127]), msgpack.packb(spec))
    elif choice == 6:
        return msgpack.ExtType(rng.choice([1, 2]), rng.randbytes(rng.randrange(12)))
    elif choice == 7:
        return TS
    else:
        spec[2] = rng.choice(["abcd", 7, None, [data]])
    return msgpack.ExtType(1, msgpack.packb(spec))


def _tree(rng: random.Random, depth: int) -> Any:
    """A random params value: nested maps and lists, sometimes with foreign keys or values."""
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice([_weird(rng), rng.random(), rng.randrange(-5, 5), "s"])
    if rng.random() < 0.5:
        return [_tree(rng, depth - 1) for _ in range(rng.randrange(3))]
    keys = ["a", "b", "duration_s", "seed", 1, b"k", -7, 0.5]
    return {rng.choice(keys[:4] if rng.random() < 0.8 else keys): _tree(rng, depth - 1) for _ in range(rng.randrange(3))}


def _deep(depth: int) -> Any:
    tree: Any = 1
    for level in range(depth):
        tree = {"x": tree} if level % 2 else [tree]
    return tree


def _valid(rng: random.Random, request_id: int) -> tuple[dict[str, Any], list[bytes]]:
    """A header (as a dict, arrays as ExtType) and its array frames, as a correct client would send them."""
    frames: list[bytes] = []
    model = rng.choice(["tiny", "tiny", "tiny", "other", "nope"])
    kind = rng.choice(["ping", "health", "ps", "load", "unload", "generate", "generate", "generate", "cancel", "pin",
                       "pong", "result", "error", "progress"])
    body: dict[str, Any] = {
        "ping": {}, "health": {}, "ps": {}, "pong": {},
        "load": {"model": model, "timeout_s": 30.0, "keep_alive_s": 60.0},
        "unload": {"model": model, "timeout_s": 30.0},
        "cancel": {"target": request_id - rng.randrange(1, WINDOW)},
        "pin": {"model": model, "pinned": rng.random() < 0.5},
        "result": {"cancelled": False},
        "error": {"code": "bad_request", "message": "m"},
        "progress": {"step": 1, "total": 2},
    }.get(kind, {})
    if kind == "generate":
        body = {"model": model, "prompt": "rain", "params": {"duration_s": 0.01, "seed": rng.randrange(1, 99)}, "timeout_s": 30.0}
        if rng.random() < 0.3:
            body.pop("params")
            body.update(audio=_array(rng, frames), sample_rate=32000)
        if rng.random() < 0.2:
            body["keep_alive_s"] = 5.0
    return {"v": wire.PROTOCOL_VERSION, "k": kind, "id": request_id, "b": body}, frames


def _mutate_header(rng: random.Random, header: dict[str, Any], frames: list[bytes]) -> None:
    body = header["b"] if isinstance(header.get("b"), dict) else None
    choice = rng.randrange(16)
    if choice == 0:
        header.pop(rng.choice(["v", "k", "id", "b"]), None)
    elif choice == 1:
        header[rng.choice(["v", "k", "b", "t"])] = _weird(rng)
    elif choice == 2:
        header["id"] = rng.choice([_weird(rng), rng.randrange(2**63), 0])
    elif choice == 3:
        header[rng.choice(["x", "", "ID", "tt"])] = _weird(rng)
    elif choice == 4:
        header["k"] = rng.choice(sorted(wire.BODY_SCHEMA) + ["explode", "", "Ping"])
    elif choice == 5:
        header["v"] = rng.choice([True, 1.0, 0, 2, -1, "1", TS, None])
    elif body is None:
        header["b"] = {}
    elif choice == 6 and body:
        body.pop(rng.choice(list(body)))
    elif choice == 7:
        body[rng.choice(BODY_FIELDS + ["x"])] = _weird(rng)
    elif choice == 8:
        body[rng.choice(["timeout_s", "keep_alive_s"])] = rng.choice(
            [float("nan"), float("inf"), float("-inf"), 0, 0.0, -0.0, -1, 5e-324, 1e308, 2**64 - 1, None, True, TS])
    elif choice == 9:
        body["params"] = _tree(rng, rng.randrange(1, 6))
    elif choice == 10:
        body["params"] = {"deep": _deep(rng.randrange(12, 30))}
    elif choice == 11:
        body["params"] = {rng.choice(["seed", 1, b"seed", -1]): rng.choice([1, TS, [TS], {"a": TS}, _array(rng, frames)])}
    elif choice == 12:
        body[rng.choice(["audio", "prompt", "params", "x"])] = _array(rng, frames, broken=True)
        body.setdefault("sample_rate", 32000)
    elif choice == 13:
        body["sample_rate"] = rng.choice([0, -1, 1, 2**63 - 1, None, 1.5])
        body.setdefault("audio", _array(rng, frames))
    elif choice == 14:
        body["prompt"] = rng.choice(["", "é" * 100, "x" * 20_000, "\x00"])
    else:
        keys = list(header)
        rng.shuffle(keys)
        header.update({key: header.pop(key) for key in keys})  # same fields, another order


def _mutate_frames(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    head = frames[0]
    choice = rng.randrange(13)
    if choice == 0 and head:
        frames[0] = head[: rng.randrange(len(head))]
    elif choice == 1:
        frames[0] = head + rng.randbytes(rng.randrange(1, 8))
    elif choice == 2 and head:
        flipped = bytearray(head)
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        frames[0] = bytes(flipped)
    elif choice == 3:
        frames.append(frames[rng.randrange(len(frames))])
    elif choice == 4 and len(frames) > 1:
        frames.pop(rng.randrange(1, len(frames)))
    elif choice == 5:
        frames.extend(rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(1, 4)))
    elif choice == 6:
        frames.extend([b"x"] * rng.randrange(MAX_FRAMES, 3 * MAX_FRAMES))
    elif choice == 7 and rng.random() < 0.05:  # over the byte limit in frames that are each under it
        frames.extend([bytes(MAX_MESSAGE_BYTES // 2)] * 3)
    elif choice == 8:
        return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 4))]
    elif choice == 9:
        frames[0] = msgpack.packb(rng.choice([[1, 2], 5, "header", None, [{"id": 3}]]))
    elif choice == 10:
        frames[0] = b""
    elif choice == 11:
        frames[0] = b"\x91" * rng.randrange(500, 5000) + b"\x00"
    else:
        frames.insert(1, rng.randbytes(rng.randrange(1, 64)))
    return frames


def _pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def fuzz_messages(seed: int, count: int) -> Iterator[list[bytes]]:
    rng = random.Random(seed)
    for n in range(count):
        header, frames = _valid(rng, FIRST_ID + n)
        roll = rng.random()
        if roll >= 0.08:  # 8% stay valid
            for _ in range(rng.choice([1, 1, 2, 3])):
                _mutate_header(rng, header, frames)
        try:
            out = [_pack(header), *frames]
        except (TypeError, ValueError, OverflowError):
            out = [_pack({"v": 1, "k": "health", "id": FIRST_ID + n, "b": {}})]
        if roll >= 0.5:
            out = _mutate_frames(rng, out)
        yield out


def readable_id(frames: list[bytes]) -> int | None:
    """The oracle: the header's id if plain msgpack reads frame 0 as a map with a valid "id", else None."""
    try:
        header = msgpack.unpackb(frames[0], raw=False, strict_map_key=False, timestamp=0)
    except Exception:
        return None
    value = header.get("id") if isinstance(header, dict) else None
    return value if type(value) is int and 0 <= value < 2**63 else None


# ---- the checks ----

def check_reply(frames: list[Any]) -> tuple[str, int, dict[str, Any]]:
    """The reply's kind, id and body, after asserting its documented shape."""
    raw = [f.bytes for f in frames]
    header = msgpack.unpackb(raw[0], raw=False, ext_hook=lambda code, data: msgpack.ExtType(code, data))
    assert isinstance(header, dict) and set(header) == {"v", "k", "id", "b"}, header
    assert header["v"] in wire.ACCEPTED_VERSIONS and header["k"] in wire.REPLY_KINDS, header
    assert type(header["id"]) is int and 0 <= header["id"] < 2**63 and isinstance(header["b"], dict), header
    msg = wire.decode(raw)  # the client's own decoder reads it
    if msg.kind == "error":
        assert isinstance(msg.body["code"], str) and msg.body["code"], header
        assert isinstance(msg.body["message"], str) and msg.body["message"], header
    return msg.kind, msg.id, msg.body


class Tally:
    def __init__(self) -> None:
        self.sent = self.finals = self.progress = self.readable = 0
        self.expected: Counter[int] = Counter()  # ids whose reply is still owed
        self.examples: dict[int, list[bytes]] = {}  # the message behind each owed id, for the failure message
        self.unattributed: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()

    def sent_one(self, frames: list[bytes]) -> None:
        self.sent += 1
        rid = readable_id(frames)
        if rid is not None:
            self.readable += 1
            self.expected[rid] += 1
            self.examples[rid] = frames

    def replied(self, kind: str, rid: int, body: dict[str, Any]) -> None:
        if kind == "progress":
            self.progress += 1
            return
        self.finals += 1
        self.codes[body.get("code", kind) if kind == "error" else kind] += 1
        if self.expected[rid] > 0:
            self.expected[rid] -= 1
        else:
            self.unattributed[rid] += 1

    def owed(self) -> dict[int, list[bytes]]:
        return {rid: self.examples.get(rid, []) for rid, n in self.expected.items() if n > 0}


def _receive(sock: zmq.Socket, tally: Tally, timeout_ms: int) -> bool:
    if not sock.poll(timeout_ms):
        return False
    while True:
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return True
        tally.replied(*check_reply(frames))


def _brief(frames: list[bytes]) -> str:
    return repr([f[:120] for f in frames])[:400]


def test_twenty_thousand_mutated_messages_get_one_well_formed_reply_each(fuzz_host) -> None:
    ctx, sock = _dealer(fuzz_host.address)
    tally = Tally()
    started = time.monotonic()
    try:
        for frames in fuzz_messages(SEED, COUNT):
            while tally.sent - tally.finals >= WINDOW:
                assert _receive(sock, tally, 20_000), f"no reply for 20 s with {tally.sent - tally.finals} owed (seed {SEED})"
            sock.send_multipart(frames)
            tally.sent_one(frames)
        deadline = time.monotonic() + 30
        while tally.finals < tally.sent and time.monotonic() < deadline:
            _receive(sock, tally, 500)
        _receive(sock, tally, 200)  # nothing more may come
    finally:
        sock.close()
        ctx.term()
    elapsed_s = time.monotonic() - started
    owed = tally.owed()
    echoed = tally.readable - sum(tally.expected.values())
    print(f"\nfuzz seed {SEED}: {tally.sent} messages, {tally.finals} final replies (+{tally.progress} progress) in "
          f"{elapsed_s:.1f} s; id readable in {tally.readable}, echoed for {echoed} ({echoed / max(1, tally.readable):.2%}); "
          f"replies to unreadable ids: {dict(Counter({'id 0': tally.unattributed[0], 'other': sum(tally.unattributed.values()) - tally.unattributed[0]}))}; "
          f"codes: {dict(tally.codes.most_common())}")
    assert tally.sent == COUNT
    assert tally.finals == tally.sent, f"{tally.sent} messages but {tally.finals} final replies (seed {SEED})"
    assert not owed, f"{len(owed)} readable ids not echoed (seed {SEED}), e.g. " + "; ".join(
        f"id {rid}: {_brief(frames)}" for rid, frames in list(owed.items())[:5])
    assert "internal" not in tally.codes, "the host raised inside itself; see its log: " + fuzz_host.log()[-3000:]
    _assert_host_serves(fuzz_host)


def _assert_host_serves(host) -> None:
    assert host.proc.poll() is None, f"the host died:\n{host.log()[-3000:]}"
    ctx, sock = _dealer(host.address)
    try:
        sock.send_multipart(wire.encode("ping", 424242))
        assert sock.poll(10_000), "no pong within 10 s"
        kind, rid, _ = check_reply(sock.recv_multipart(copy=False))
        assert (kind, rid) == ("pong", 424242)
    finally:
        sock.close()
        ctx.term()
    with Client(host.address) as c:
        assert c.generate("tiny", params={"duration_s": 0.01}).audio.size == 320
    assert "the I/O thread failed" not in host.log()


def _oversized(request_id: int) -> list[bytes]:
    return [_pack({"v": 1, "k": "generate", "id": request_id, "b": {"model": "tiny"}}), bytes(MAX_MESSAGE_BYTES + 1)]


def test_oversized_frames_leave_the_host_serving(fuzz_host) -> None:
    ctx, sock = _dealer(fuzz_host.address)
    try:
        for n in range(3):
            sock.send_multipart(_oversized(7000 + n))
            sock.send_multipart([_pack({"v": 1, "k": "generate", "id": 8000 + n, "b": {"model": "tiny"}})] + [b"x" * 300_000] * 4)
        sock.poll(2000)
    finally:
        sock.close()
        ctx.term()
    _assert_host_serves(fuzz_host)


def test_an_oversized_frame_is_answered_too_large_with_its_id(fuzz_host) -> None:
    ctx, sock = _dealer(fuzz_host.address)
    try:
        sock.send_multipart(_oversized(9001))
        assert sock.poll(5000), "no reply to a message with a frame over max_message_bytes"
        kind, rid, body = check_reply(sock.recv_multipart(copy=False))
        assert (kind, rid, body["code"]) == ("error", 9001, "too_large")
    finally:
        sock.close()
        ctx.term()


def test_too_many_bytes_across_frames_is_answered_too_large_with_its_id(fuzz_host) -> None:
    ctx, sock = _dealer(fuzz_host.address)
    try:
        sock.send_multipart([_pack({"v": 1, "k": "generate", "id": 9002, "b": {"model": "tiny"}})] + [bytes(MAX_MESSAGE_BYTES // 2)] * 3)
        sock.send_multipart([_pack({"v": 1, "k": "ping", "id": 9003, "b": {}})] + [b""] * (MAX_FRAMES + 1))
        replies = []
        for _ in range(2):
            assert sock.poll(5000), "no reply to an oversized message"
            replies.append(check_reply(sock.recv_multipart(copy=False)))
    finally:
        sock.close()
        ctx.term()
    assert sorted((rid, body["code"]) for _, rid, body in replies) == [(9002, "too_large"), (9003, "too_large")]


def test_the_mutator_is_deterministic_and_mostly_invalid() -> None:
    first = list(fuzz_messages(SEED, 300))
    assert first == list(fuzz_messages(SEED, 300))
    refused = 0
    for frames in first:
        try:
            wire.decode(frames, limits=wire.Limits(max_message_bytes=MAX_MESSAGE_BYTES, max_frames=MAX_FRAMES))
        except RequestError:
            refused += 1
    assert 0.6 < refused / len(first) < 0.99  # most are bad, some are good requests
