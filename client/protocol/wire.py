"""THE wire format of modelhost: message kinds, msgpack framing, numpy arrays as extra frames.

No other module imports msgpack or slices frames; the host imports this module from ``client``.
Nothing is ever pickled: only msgpack's plain types and numeric numpy arrays cross the wire.

Frame layout of one message (a ZeroMQ multipart message; on the host's ROUTER socket the peer's
routing id comes first and is stripped before ``decode``)::

    frame 0      header: a msgpack map
                   "v"  int     protocol version (PROTOCOL_VERSION); a mismatch is an error reply
                   "k"  str     message kind (REQUEST_KINDS or REPLY_KINDS)
                   "id" int     request id, chosen by the client, echoed in every reply to it
                   "b"  map     the body; its fields per kind are in BODY_SCHEMA
                   "t"  str     optional: the auth token (TCP hosts only)
    frame 1..N   out-of-band array buffers, each referenced exactly once from the body

A numpy array anywhere in the body is a msgpack extension value:

    ext 1 (inline)        msgpack [dtype.str, shape, raw bytes]      when nbytes <  inline_max_bytes
    ext 2 (out of band)   msgpack [dtype.str, shape, frame index]    when nbytes >= inline_max_bytes
    ext 3 (shared memory) msgpack [dtype.str, shape, segment id, fd, segment size]
                          version 2, between peers that attached shared memory, when nbytes >=
                          the sender's threshold and its pool has room (``client.protocol.shm``); the
                          array's bytes are at offset 0 of the sender's segment ``segment id``,
                          which the receiver maps from /proc/<sender pid>/fd/<fd>

Versions: this side writes PROTOCOL_VERSION (2) and reads 1 and 2. Version 2 adds ext 3 and two
kinds: ``attach`` (a client on the host's machine offers shared memory: its pid and segment key;
the result carries the host's) and ``shm``, a notification in either direction that is never
answered: ``release`` lists segments the receiver is done with, ``mapped`` segments it mapped for
the first time, ``forget`` segments the sender retired, and ``detach`` (a client closing) the
host's segments its arrays still read: everything else lent to it is free again. The host answers a version-1 peer in version 1, so an old client keeps working (frames).

``dtype.str`` keeps the byte order ('<f4', '>i2', '|b1'); only bool, integer, float and complex
dtypes are accepted. Non-contiguous and Fortran-order arrays are sent as a C-order copy; the
decoded array is C-order, writable (ZeroMQ's received frames are), and equal in dtype, shape and values. Out-of-band frames are
sent without copying and rebuilt with ``frombuffer(...).reshape``, so they stay zero-copy.

Decoding is bounded by ``Limits``: total bytes, frame count, map/array/str sizes, nesting depth
(msgpack's own), array rank, and an array's byte count must match its shape. Every violation
raises a ``RequestError`` subclass with a code and a message; nothing else escapes ``decode``.

Whose request was it: every error ``decode`` raises carries ``request_id``, the header's "id"
whenever it can be read (0 only when it cannot), so the error reply reaches the request's caller.
The id is read before anything can fail on the rest: a message over the size or frame limit is
answered ``too_large`` with the id read from the header's first bytes (``_ID_SCAN_BYTES``), and a
bad array is remembered while msgpack runs and raised once the header, and so its id, is known.

Strict types: "v" and "id" are ints (not bools, not floats), the id is in [0, 2**63), "k" is a str;
``timeout_s`` is finite and > 0, ``keep_alive_s`` finite and >= 0; ``params`` is a tree of maps
with str keys and lists, at most ``MAX_PARAMS_DEPTH`` deep, of plain values and arrays. Only
extension types 1, 2 and 3 exist here: msgpack's own Timestamp (ext -1, which msgpack decodes itself
without calling ``ext_hook``) is kept a ``msgpack.Timestamp`` (``timestamp=0``, never a float that
would pass as a number) and refused wherever it appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import msgpack
import numpy as np

from modelhost.client.protocol.errors import (
    BadRequestError,
    ModelhostError,
    RequestError,
    TooLargeError,
    UnknownKindError,
    VersionMismatchError,
)

PROTOCOL_VERSION = 2
ACCEPTED_VERSIONS = frozenset({1, 2})
_V2_KINDS = frozenset({"attach", "shm"})

# Requests a client sends, the kinds a host replies with, and notifications either side sends (never answered).
REQUEST_KINDS = frozenset({"ping", "health", "ps", "load", "unload", "generate", "cancel", "pin", "attach"})
REPLY_KINDS = frozenset({"pong", "progress", "chunk", "result", "error"})
FINAL_REPLY_KINDS = frozenset({"result", "error"})
NOTIFY_KINDS = frozenset({"shm"})
# Between a host and its own runner processes only (host.runners, host.runner): a client sending one is refused.
RUNNER_KINDS = frozenset({"hello", "command", "stop", "exit", "row", "report", "event", "alloc", "beat"})

_EXT_INLINE = 1
_EXT_FRAME = 2
_EXT_SHM = 3
_MAX_SEGMENT_REFS = 100_000  # ids in one "shm" notification
_ARRAY_KINDS = "biufc"
_MAX_NDIM = 32
_MAX_ID = 2**63  # request ids are in [0, 2**63): int64 everywhere, never a uint64 surprise
MAX_PARAMS_DEPTH = 16  # a generate's params map counts as level 1
MAX_TIMEOUT_S = 30 * 86400.0  # the longest timeout_s a request may give (beyond it, clocks and timers overflow)
# How much of a header frame is read to find the id of a message refused before its full decode.
# The encoder writes "v", "k", "id" first, so the id sits within the first few dozen bytes.
_ID_SCAN_BYTES = 64 * 1024
_PLAIN_TYPES = frozenset({str, int, float, bool, bytes, type(None), np.ndarray})  # what msgpack and ext 1/2 build

# Measured with benchmarks/wire_threshold.py: below this size an extra frame costs more than the
# copy into the header (see benchmarks/README.md for the figures).
DEFAULT_INLINE_MAX_BYTES = 16 * 1024

_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_INT = (int, type(None))
_OPT_ARRAY = (np.ndarray, type(None))
_TREE = (dict, list, str, int, float, bool, bytes, type(None), np.ndarray)  # any value a tree may hold

# kind -> {field: (allowed types, required)}. Unknown fields are rejected: the version is in every
# message, so a field this side does not know means the peer is newer and the caller must know.
BODY_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "ping": {},
    "health": {},
    "ps": {},
    "load": {"model": ((str,), True), "timeout_s": (_OPT_NUM, False), "keep_alive_s": (_OPT_NUM, False)},
    "unload": {"model": ((str,), True), "timeout_s": (_OPT_NUM, False)},
    "generate": {
        "model": ((str,), True),
        "prompt": (_OPT_STR, False),
        "params": ((dict,), False),
        "audio": (_OPT_ARRAY, False),
        "sample_rate": (_OPT_INT, False),
        "timeout_s": (_OPT_NUM, False),
        "keep_alive_s": (_OPT_NUM, False),
        "stream": ((bool,), False),  # send "chunk" replies as the audio is made
        "stream_interval_s": (_OPT_NUM, False),  # seconds of audio between chunks (None: the model's default)
    },
    "cancel": {"target": ((int,), True)},
    "pin": {"model": ((str,), True), "pinned": ((bool,), True)},
    # a client on the host's machine offers shared memory ("recv": it can map the host's segments too)
    "attach": {"pid": ((int,), True), "key": ((str,), True), "recv": ((bool,), False)},
    "shm": {"release": ((list,), False), "forget": ((list,), False), "mapped": ((list,), False), "detach": ((list,), False)},
    "pong": {},
    "progress": {"step": ((int,), True), "total": ((int,), True)},
    # a streaming generate's samples [offset, offset + n) of the result, in order (seq 0, 1, ...)
    "chunk": {"audio": ((np.ndarray,), True), "sample_rate": ((int,), True), "offset": ((int,), True), "seq": ((int,), True),
              "item": (_TREE, False)},  # a WebUI generator's item (client.webui_call's encoding); its audio is then empty
    "result": {},  # free-form: the request's kind decides what a result holds
    "error": {"code": ((str,), True), "message": ((str,), True)},
    # host <-> runner (host.runners, host.runner; the values inside are host.commands' plain forms)
    "hello": {"runner": ((str,), True), "pid": ((int,), True), "token": ((str,), True), "python": ((str,), True),
              "torch": ((bool,), False)},
    "command": {"op": ((str,), True), "model": ((str,), True), "spec": ((dict, type(None)), False), "tasks": ((list,), True),
                "device": ((str,), True), "reason": ((str,), True), "measure": ((bool,), True), "warmup": ((bool,), True)},
    "stop": {"model": ((str,), True), "peer": ((bytes,), True), "target": ((int,), True), "reason": ((str,), True)},
    "exit": {},
    "row": {"peer": ((bytes,), True), "target": ((int,), True), "body": ((dict,), True)},  # one task's result
    "report": {"model": ((str,), True), "op": ((str,), True), "ok": ((bool,), True), "error": ((list, type(None)), True),
               "oom": ((bool,), True), "memory": ((list, type(None)), True), "seconds": (_NUM, True),
               "delta_bytes": ((int,), True), "details": ((dict, type(None)), True), "rows": ((list,), True),
               "peak_rise_bytes": ((int,), True), "process_bytes": ((int,), True)},
    "event": {"peer": ((bytes,), True), "target": ((int,), True), "kind": ((str,), True), "body": ((dict,), True)},
    # a runner asks for a segment of the host's pool to write an array for ``peer`` into; the reply names one or is empty
    "alloc": {"peer": ((bytes,), False), "nbytes": ((int,), False), "seg": ((int,), False), "fd": ((int,), False),
              "size": ((int,), False)},
    "beat": {"process_bytes": ((int,), False)},
}
_FREE_FORM = frozenset({"result"})
_NESTED = frozenset({"command", "row", "report", "event", "chunk"})  # kinds whose fields hold trees: foreign values refused


@dataclass(frozen=True)
class Limits:
    """Bounds on what ``decode`` accepts and where ``encode`` switches arrays to extra frames."""

    max_message_bytes: int = 256 * 1024 * 1024
    max_frames: int = 64
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, got {self.max_message_bytes}")
        if not 1 <= self.max_frames <= 4096:
            raise ValueError(f"max_frames must be between 1 and 4096, got {self.max_frames}")
        if self.inline_max_bytes < 0:
            raise ValueError(f"inline_max_bytes must be >= 0, got {self.inline_max_bytes}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Message:
    """One decoded message: its kind, request id, body, (if any) auth token, and the version it was written in."""

    kind: str
    id: int
    body: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    version: int = PROTOCOL_VERSION


class ShmSender(Protocol):
    """Where ``encode`` puts large arrays for a peer that attached shared memory (``client.protocol.shm.Pool.sender``)."""

    min_bytes: int

    def place(self, arr: np.ndarray) -> tuple[int, int, int] | None:
        """Copy an array (any strides) in C order into a segment lent to the peer: (segment id, fd, size), or None
        (send a frame)."""

    def unplace(self, seg_ids: list[int]) -> None:
        """The message holding these segments was never sent: they are free again."""


class ShmReceiver(Protocol):
    """How ``decode`` maps a peer's segments (``client.protocol.shm.Mappings``)."""

    def array(self, seg_id: int, fd: int, size: int, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        """A view of the array in the segment; raises ``client.protocol.shm.ShmError`` if it cannot be mapped."""

    def unread(self, seg_id: int) -> None:
        """The message referencing this segment was refused before its array was read: give the segment back."""


def encode(
    kind: str,
    request_id: int,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    version: int = PROTOCOL_VERSION,
    shm: ShmSender | None = None,
    placed: list[int] | None = None,
) -> list[Any]:
    """Frames for one message: the header, then one buffer per large array (sent with copy=False).

    With ``shm`` (a peer that attached shared memory), arrays of at least ``shm.min_bytes`` go into
    its segments instead of frames, as far as the pool has room; ``placed``, if given, receives the
    segment ids used (a message never sent gives them back with ``shm.unplace``). ``version`` 1 writes
    what a version-1 peer reads (no ext 3)."""
    if kind not in BODY_SCHEMA:
        raise UnknownKindError(f"unknown message kind {kind!r}")
    buffers: list[Any] = []
    placed = [] if placed is None else placed
    shared = [0]
    if version < 2:
        shm = None

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return _pack_array(obj, buffers, limits.inline_max_bytes, shm, placed, shared)
        if isinstance(obj, np.generic):
            return obj.item()
        raise BadRequestError(f"cannot send a value of type {type(obj).__name__}: only msgpack types and numeric numpy arrays travel")

    header: dict[str, Any] = {"v": version, "k": kind, "id": request_id, "b": body or {}}
    if token is not None:
        header["t"] = token
    try:
        packed = msgpack.packb(header, default=default, use_bin_type=True)
        total = len(packed) + sum(memoryview(b).nbytes for b in buffers) + shared[0]
        if total > limits.max_message_bytes:
            raise TooLargeError(f"message is {total} bytes, over the limit of {limits.max_message_bytes}; send less audio per request")
        if 1 + len(buffers) > limits.max_frames:
            raise TooLargeError(f"message needs {1 + len(buffers)} frames, over the limit of {limits.max_frames}; send fewer arrays")
    except BaseException:
        if placed:
            shm.unplace(placed)
        raise
    return [packed, *buffers]


def _pack_array(arr: np.ndarray, buffers: list[Any], inline_max_bytes: int, shm: ShmSender | None,
                placed: list[int], shared: list[int]) -> msgpack.ExtType:
    dtype = arr.dtype
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise BadRequestError(f"cannot send an array of dtype {dtype}: only bool, integer, float and complex arrays travel")
    shape = list(arr.shape)
    if shm is not None and arr.nbytes >= shm.min_bytes and arr.nbytes > 0:
        ref = shm.place(arr)  # copies straight into the segment, in C order: no intermediate copy of a strided array
        if ref is not None:
            placed.append(ref[0])
            shared[0] += arr.nbytes
            return msgpack.ExtType(_EXT_SHM, msgpack.packb([dtype.str, shape, *ref]))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    if arr.nbytes >= inline_max_bytes and arr.nbytes > 0:
        buffers.append(memoryview(arr).cast("B"))
        payload = [dtype.str, shape, len(buffers)]
        return msgpack.ExtType(_EXT_FRAME, msgpack.packb(payload))
    return msgpack.ExtType(_EXT_INLINE, msgpack.packb([dtype.str, shape, arr.tobytes()], use_bin_type=True))


def _buffer_of(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", frame)  # a zmq.Frame exposes .buffer; bytes and memoryviews are buffers
    return memoryview(buf).cast("B") if isinstance(buf, memoryview) else memoryview(buf)


def decode(frames: Sequence[Any], *, limits: Limits = DEFAULT_LIMITS, shm: ShmReceiver | None = None) -> Message:
    """The message in ``frames``; raises a ``RequestError`` whose ``request_id`` is the header's id, or 0
    when that cannot be read. ``shm`` maps the sender's segments (a peer that attached shared memory);
    without it a shared-memory array is refused."""
    if not frames:
        raise BadRequestError("empty message: expected a header frame", request_id=0)
    head: memoryview | None = None
    try:
        head = _buffer_of(frames[0])
        return _decode(head, frames, limits, shm)
    except RequestError as exc:
        if exc.request_id is None:
            exc.request_id = 0
        raise
    except Exception as exc:  # a safety net: whatever a frame holds, only RequestError leaves decode
        raise BadRequestError(f"message could not be decoded: {type(exc).__name__}: {_brief(exc)}",
                              request_id=_scan_id(head)) from None


class _Reading:
    """What one decode collects while msgpack runs: frames used, the first fault, shared-memory use."""

    __slots__ = ("views", "used", "faults", "shm", "shared_bytes", "limits")

    def __init__(self, views: list[memoryview], limits: Limits, shm: ShmReceiver | None) -> None:
        self.views, self.limits, self.shm = views, limits, shm
        self.used: set[int] = set()
        self.faults: list[RequestError] = []
        self.shared_bytes = 0


def _decode(head: memoryview, frames: Sequence[Any], limits: Limits, shm: ShmReceiver | None) -> Message:
    nframes = len(frames)
    if nframes > limits.max_frames:
        raise TooLargeError(f"message has {nframes} frames, over the limit of {limits.max_frames}",
                            request_id=_scan_id(head))
    views = [head, *map(_buffer_of, frames[1:])]
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise TooLargeError(f"message is {total} bytes, over the limit of {limits.max_message_bytes}",
                            request_id=_scan_id(head))
    reading = _Reading(views, limits, shm)
    header = _unpack_header(reading)
    request_id = header.get("id")
    if type(request_id) is not int or not 0 <= request_id < _MAX_ID:
        raise BadRequestError(f"header field 'id' must be an int in [0, 2**63), got {_brief(request_id)}", request_id=0)
    try:
        if total + reading.shared_bytes > limits.max_message_bytes:
            raise TooLargeError(f"message is {total + reading.shared_bytes} bytes with its shared-memory arrays, over "
                                f"the limit of {limits.max_message_bytes}")
        return _check_header(header, request_id, nframes, reading)
    except RequestError as exc:
        exc.request_id = request_id
        raise


def _scan_id(head: memoryview | None) -> int:
    """The header's id, read from its first ``_ID_SCAN_BYTES`` without building the rest; 0 if not there."""
    if head is None:
        return 0
    found = 0
    try:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, timestamp=0, max_buffer_size=_ID_SCAN_BYTES)
        unpacker.feed(head[:_ID_SCAN_BYTES])
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "id":
                value = unpacker.unpack()
                found = value if type(value) is int and 0 <= value < _MAX_ID else 0  # the last "id" wins, as in a dict
            else:
                unpacker.skip()
    except Exception:  # not a map, cut short, or garbage after the id: what was read stands
        pass
    return found


def _unpack_header(reading: _Reading) -> dict[str, Any]:
    views, limits = reading.views, reading.limits
    nframes = len(views)
    faults = reading.faults

    def ext_hook(code: int, data: bytes) -> Any:
        # Raising here would lose the request id (msgpack has not returned the header yet): the first
        # bad array is kept and raised by _check_header; the rest are not even parsed (but segments
        # they reference go back to their sender).
        if faults:
            if code == _EXT_SHM:
                _give_back(data, reading.shm)
            return None
        try:
            return _unpack_array(code, data, reading)
        except RequestError as exc:
            faults.append(exc)
        except Exception as exc:
            faults.append(BadRequestError(f"an array could not be decoded: {type(exc).__name__}: {_brief(exc)}"))
        return None

    head = views[0]
    try:
        header = msgpack.unpackb(
            head,
            raw=False,
            ext_hook=ext_hook,
            timestamp=0,  # ext -1 stays a msgpack.Timestamp, refused by the type checks (1..3 would pass it as a number)
            strict_map_key=True,
            max_str_len=limits.max_message_bytes,
            max_bin_len=limits.max_message_bytes,
            max_array_len=1_000_000,
            max_map_len=100_000,
            max_ext_len=limits.max_message_bytes,
        )
    except Exception as exc:  # msgpack raises several types on garbage (FormatError, StackError, ValueError, ...)
        raise BadRequestError(f"header frame is not valid msgpack: {type(exc).__name__}: {_brief(exc)}",
                              request_id=_scan_id(head)) from None
    if not isinstance(header, dict):
        raise BadRequestError(f"header must be a msgpack map, got {type(header).__name__}", request_id=0)
    return header


def _check_header(header: dict[str, Any], request_id: int, nframes: int, reading: _Reading) -> Message:
    used, faults = reading.used, reading.faults
    version = header.get("v")
    if version is not None and type(version) is not int:
        raise BadRequestError(f"header field 'v' (the protocol version) must be an int, got {type(version).__name__}")
    if version not in ACCEPTED_VERSIONS:
        raise VersionMismatchError(
            f"protocol version {_brief(version)} is not supported; this side speaks versions "
            f"{', '.join(map(str, sorted(ACCEPTED_VERSIONS)))}: upgrade modelhost so host and client match"
        )
    kind = header.get("k")
    if type(kind) is not str or kind not in BODY_SCHEMA:
        raise UnknownKindError(f"unknown message kind {_brief(kind)}; known kinds: {', '.join(sorted(BODY_SCHEMA))}")
    if version < 2 and (kind in _V2_KINDS or reading.shared_bytes):
        raise VersionMismatchError(f"a {kind!r} message{' with shared-memory arrays' if reading.shared_bytes else ''} "
                                   "needs protocol version 2")
    unknown_keys = set(header) - {"v", "k", "id", "b", "t"}
    if unknown_keys:
        raise BadRequestError(f"unknown header fields: {', '.join(sorted(_brief(k, 40) for k in unknown_keys))}")
    if faults:
        raise faults[0]
    body = header.get("b", {})
    if not isinstance(body, dict):
        raise BadRequestError(f"header field 'b' (the body) must be a map, got {type(body).__name__}")
    token = header.get("t")
    if token is not None and not isinstance(token, str):
        raise BadRequestError("header field 't' (the token) must be a string")
    if kind in _FREE_FORM:
        _check_tree(body, f"a {kind!r} body", max_depth=None)
    else:
        _check_body(kind, body)
        if kind in _NESTED:
            _check_tree(body, f"a {kind!r} body", max_depth=None)
    if len(used) != nframes - 1:
        raise BadRequestError(f"message has {nframes - 1} array frames but the body references {len(used)}")
    return Message(kind=kind, id=request_id, body=body, token=token, version=version)


def _check_body(kind: str, body: dict[str, Any]) -> None:
    schema = BODY_SCHEMA[kind]
    for name, value in body.items():
        if name not in schema:
            raise BadRequestError(f"unknown field {_brief(name)} in a {kind!r} message; known: {', '.join(schema) or 'none'}")
        types, _ = schema[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BadRequestError(f"field {name!r} of a {kind!r} message must be {wanted}, got {type(value).__name__}")
    for name, (_, required) in schema.items():
        if required and name not in body:
            raise BadRequestError(f"a {kind!r} message needs the field {name!r}")
    timeout_s = body.get("timeout_s")
    if timeout_s is not None and not (math.isfinite(timeout_s) and 0 < timeout_s <= MAX_TIMEOUT_S):
        raise BadRequestError(f"field 'timeout_s' of a {kind!r} message must be seconds above 0 and at most "
                              f"{MAX_TIMEOUT_S:.0f} (30 days), got {timeout_s!r}")
    keep_alive_s = body.get("keep_alive_s")
    if keep_alive_s is not None and not (math.isfinite(keep_alive_s) and keep_alive_s >= 0):
        raise BadRequestError(f"field 'keep_alive_s' of a {kind!r} message must be a finite number of seconds >= 0, got {keep_alive_s!r}")
    params = body.get("params")
    if params is not None:
        _check_tree(params, "params", max_depth=MAX_PARAMS_DEPTH)
    for name in ("release", "forget", "mapped", "detach"):  # a "shm" notification's segment ids
        ids = body.get(name) if kind == "shm" else None
        if ids is not None and (len(ids) > _MAX_SEGMENT_REFS or not all(type(i) is int and 0 < i < _MAX_ID for i in ids)):
            raise BadRequestError(f"field {name!r} of a 'shm' message must be a list of at most {_MAX_SEGMENT_REFS} segment ids")


def _check_tree(tree: dict[str, Any], where: str, *, max_depth: int | None) -> None:
    """Refuse foreign values (a Timestamp) anywhere in ``tree``; with ``max_depth``, also non-str keys and
    more than ``max_depth`` levels of maps and lists. Level by level, no recursion: msgpack's own depth
    limit is far above Python's recursion limit."""
    level: list[Any] = [tree]
    depth = 1
    while level:
        if max_depth is not None and depth > max_depth:
            raise BadRequestError(f"{where} nest deeper than {max_depth} levels of maps and lists")
        nested: list[Any] = []
        for node in level:
            if type(node) is dict:
                if max_depth is not None:
                    for key in node:
                        if type(key) is not str:
                            raise BadRequestError(f"{where} keys must be strings, got a {type(key).__name__} key {_brief(key)}")
                node = node.values()
            for item in node:
                kind = type(item)
                if kind is dict or kind is list:
                    nested.append(item)
                elif kind not in _PLAIN_TYPES:
                    _refuse_value(item, where)
        level = nested
        depth += 1


def _refuse_value(value: Any, where: str) -> None:
    if isinstance(value, msgpack.Timestamp):
        raise BadRequestError(f"{where} holds a msgpack Timestamp (extension -1); only arrays (extensions 1, 2 and 3) travel as extensions")
    raise BadRequestError(f"{where} holds a value of type {type(value).__name__}, which does not travel")


def _brief(value: Any, max_chars: int = 80) -> str:
    """``repr(value)`` (``str`` of an exception) cut short: error messages echo what the peer sent, never megabytes of it."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _unpack_array(code: int, data: bytes, reading: _Reading) -> np.ndarray:
    if code not in (_EXT_INLINE, _EXT_FRAME, _EXT_SHM):
        raise BadRequestError(f"unknown msgpack extension type {code}")
    try:
        spec = msgpack.unpackb(data, raw=False, max_array_len=8, max_map_len=0, max_str_len=16, max_bin_len=len(data))
    except Exception as exc:
        raise BadRequestError(f"array header is not valid msgpack: {exc}") from None
    if code == _EXT_SHM:
        return _shared_array(spec, reading)
    if not isinstance(spec, list) or len(spec) != 3:
        raise BadRequestError("an array must be [dtype, shape, data or frame index]")
    dtype_str, shape, where = spec
    dtype = _parse_dtype(dtype_str)
    shape = _parse_shape(shape)
    nframes = len(reading.views)
    if code == _EXT_INLINE:
        if not isinstance(where, bytes):
            raise BadRequestError("an inline array's data must be bytes")
        buf: Any = bytearray(where)  # small: copy so the array is writable like an out-of-band one
    else:
        if not isinstance(where, int) or isinstance(where, bool) or not 1 <= where < nframes:
            raise BadRequestError(f"array frame index {_brief(where)} is out of range (message has {nframes} frames)")
        if where in reading.used:
            raise BadRequestError(f"array frame {where} is referenced twice")
        reading.used.add(where)
        buf = reading.views[where]
    expected = math.prod(shape) * dtype.itemsize
    if len(buf) != expected:
        raise BadRequestError(f"array of dtype {dtype.str} and shape {tuple(shape)} needs {expected} bytes, got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _shared_array(spec: Any, reading: _Reading) -> np.ndarray:
    if not isinstance(spec, list) or len(spec) != 5 or not all(type(x) is int and x >= 0 for x in spec[2:]):
        raise BadRequestError("a shared-memory array must be [dtype, shape, segment id, fd, segment size]")
    dtype_str, shape, seg_id, fd, size = spec
    if reading.shm is None:
        raise BadRequestError("a shared-memory array arrived on a connection that did not attach shared memory; "
                              "send arrays as frames (only clients on the host's machine attach)")
    try:
        dtype = _parse_dtype(dtype_str)
        shape = _parse_shape(shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > reading.limits.max_message_bytes:
            raise TooLargeError(f"a shared-memory array of {nbytes} bytes is over the limit of {reading.limits.max_message_bytes}")
        arr = reading.shm.array(seg_id, fd, size, dtype, tuple(shape), nbytes)
    except RequestError:
        reading.shm.unread(seg_id)
        raise
    except Exception as exc:  # client.shm.ShmError, or an OS error mapping it
        reading.shm.unread(seg_id)
        raise BadRequestError(f"a shared-memory array could not be mapped: {_brief(exc, 200)}") from None
    reading.shared_bytes += nbytes
    return arr


def _give_back(data: bytes, shm: ShmReceiver | None) -> None:
    """A segment referenced by a message already refused goes back to its sender unread."""
    try:
        spec = msgpack.unpackb(data, raw=False, max_array_len=8, max_map_len=0, max_str_len=16, max_bin_len=len(data))
        seg_id = spec[2]
    except Exception:
        return
    if shm is not None and type(seg_id) is int and seg_id > 0:
        shm.unread(seg_id)


def _parse_dtype(value: Any) -> np.dtype:
    if not isinstance(value, str) or len(value) > 8:
        raise BadRequestError(f"array dtype must be a short numpy dtype string like '<f4', got {value!r}")
    try:
        dtype = np.dtype(value)
    except Exception:
        raise BadRequestError(f"array dtype {value!r} is not a numpy dtype") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise BadRequestError(f"array dtype {value!r} is not allowed: only bool, integer, float and complex")
    return dtype


def _parse_shape(value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) > _MAX_NDIM:
        raise BadRequestError(f"array shape must be a list of at most {_MAX_NDIM} ints, got {value!r}")
    for dim in value:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise BadRequestError(f"array shape entries must be non-negative ints, got {value!r}")
    return value


def error_body(exc: BaseException) -> dict[str, str]:
    """The body of an error reply for ``exc``: its code, and a message that says what to fix."""
    if isinstance(exc, RequestError):
        return {"code": exc.code, "message": exc.message}
    if isinstance(exc, ModelhostError):
        return {"code": "internal", "message": str(exc)}
    return {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
