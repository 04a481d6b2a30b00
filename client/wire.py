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

``dtype.str`` keeps the byte order ('<f4', '>i2', '|b1'); only bool, integer, float and complex
dtypes are accepted. Non-contiguous and Fortran-order arrays are sent as a C-order copy; the
decoded array is C-order, writable (ZeroMQ's received frames are), and equal in dtype, shape and values. Out-of-band frames are
sent without copying and rebuilt with ``frombuffer(...).reshape``, so they stay zero-copy.

Decoding is bounded by ``Limits``: total bytes, frame count, map/array/str sizes, nesting depth
(msgpack's own), array rank, and an array's byte count must match its shape. Every violation
raises a ``RequestError`` subclass with a code and a message; nothing else escapes ``decode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

from modelhost.client.errors import (
    BadRequestError,
    ModelhostError,
    RequestError,
    TooLargeError,
    UnknownKindError,
    VersionMismatchError,
)

PROTOCOL_VERSION = 1

# Requests a client sends, and the kinds a host replies with.
REQUEST_KINDS = frozenset({"ping", "health", "ps", "load", "unload", "generate", "cancel", "pin"})
REPLY_KINDS = frozenset({"pong", "progress", "result", "error"})
FINAL_REPLY_KINDS = frozenset({"result", "error"})

_EXT_INLINE = 1
_EXT_FRAME = 2
_ARRAY_KINDS = "biufc"
_MAX_NDIM = 32

# Measured with benchmarks/wire_threshold.py: below this size an extra frame costs more than the
# copy into the header (see benchmarks/README.md for the figures).
DEFAULT_INLINE_MAX_BYTES = 16 * 1024

_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_INT = (int, type(None))
_OPT_ARRAY = (np.ndarray, type(None))

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
    },
    "cancel": {"target": ((int,), True)},
    "pin": {"model": ((str,), True), "pinned": ((bool,), True)},
    "pong": {},
    "progress": {"step": ((int,), True), "total": ((int,), True)},
    "result": {},  # free-form: the request's kind decides what a result holds
    "error": {"code": ((str,), True), "message": ((str,), True)},
}
_FREE_FORM = frozenset({"result"})


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
    """One decoded message: its kind, request id, body and (if any) auth token."""

    kind: str
    id: int
    body: dict[str, Any] = field(default_factory=dict)
    token: str | None = None


def encode(
    kind: str,
    request_id: int,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Frames for one message: the header, then one buffer per large array (sent with copy=False)."""
    if kind not in BODY_SCHEMA:
        raise UnknownKindError(f"unknown message kind {kind!r}")
    buffers: list[Any] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return _pack_array(obj, buffers, limits.inline_max_bytes)
        if isinstance(obj, np.generic):
            return obj.item()
        raise BadRequestError(f"cannot send a value of type {type(obj).__name__}: only msgpack types and numeric numpy arrays travel")

    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "k": kind, "id": request_id, "b": body or {}}
    if token is not None:
        header["t"] = token
    packed = msgpack.packb(header, default=default, use_bin_type=True)
    total = len(packed) + sum(memoryview(b).nbytes for b in buffers)
    if total > limits.max_message_bytes:
        raise TooLargeError(f"message is {total} bytes, over the limit of {limits.max_message_bytes}; send less audio per request")
    if 1 + len(buffers) > limits.max_frames:
        raise TooLargeError(f"message needs {1 + len(buffers)} frames, over the limit of {limits.max_frames}; send fewer arrays")
    return [packed, *buffers]


def _pack_array(arr: np.ndarray, buffers: list[Any], inline_max_bytes: int) -> msgpack.ExtType:
    dtype = arr.dtype
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise BadRequestError(f"cannot send an array of dtype {dtype}: only bool, integer, float and complex arrays travel")
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    shape = list(arr.shape)
    if arr.nbytes >= inline_max_bytes and arr.nbytes > 0:
        buffers.append(memoryview(arr).cast("B"))
        payload = [dtype.str, shape, len(buffers)]
        return msgpack.ExtType(_EXT_FRAME, msgpack.packb(payload))
    return msgpack.ExtType(_EXT_INLINE, msgpack.packb([dtype.str, shape, arr.tobytes()], use_bin_type=True))


def _buffer_of(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", frame)  # a zmq.Frame exposes .buffer; bytes and memoryviews are buffers
    return memoryview(buf).cast("B") if isinstance(buf, memoryview) else memoryview(buf)


def decode(frames: Sequence[Any], *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """The message in ``frames``; raises a ``RequestError`` (with the request id when known) if bad."""
    if not frames:
        raise BadRequestError("empty message: expected a header frame")
    if len(frames) > limits.max_frames:
        raise TooLargeError(f"message has {len(frames)} frames, over the limit of {limits.max_frames}")
    views = [_buffer_of(f) for f in frames]
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise TooLargeError(f"message is {total} bytes, over the limit of {limits.max_message_bytes}")

    used: set[int] = set()
    header = _unpack_header(views, used, limits)
    request_id = header.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0:
        raise BadRequestError(f"header field 'id' must be a non-negative int, got {request_id!r}")
    try:
        return _check_header(header, request_id, len(views), used)
    except RequestError as exc:
        exc.request_id = request_id
        raise


def _unpack_header(views: list[memoryview], used: set[int], limits: Limits) -> dict[str, Any]:
    nframes = len(views)

    def ext_hook(code: int, data: bytes) -> Any:
        return _unpack_array(code, data, views, used, nframes)

    head = views[0]
    try:
        header = msgpack.unpackb(
            head,
            raw=False,
            ext_hook=ext_hook,
            strict_map_key=True,
            max_str_len=limits.max_message_bytes,
            max_bin_len=limits.max_message_bytes,
            max_array_len=1_000_000,
            max_map_len=100_000,
            max_ext_len=limits.max_message_bytes,
        )
    except RequestError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"header frame is not valid msgpack: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # msgpack raises a few undocumented types on garbage; none may escape
        raise BadRequestError(f"header frame could not be decoded: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise BadRequestError(f"header must be a msgpack map, got {type(header).__name__}")
    return header


def _check_header(header: dict[str, Any], request_id: int, nframes: int, used: set[int]) -> Message:
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise VersionMismatchError(
            f"protocol version {version!r} is not supported; this side speaks version {PROTOCOL_VERSION}: "
            "upgrade modelhost so host and client match"
        )
    kind = header.get("k")
    if not isinstance(kind, str) or kind not in BODY_SCHEMA:
        raise UnknownKindError(f"unknown message kind {kind!r}; known kinds: {', '.join(sorted(BODY_SCHEMA))}")
    unknown_keys = set(header) - {"v", "k", "id", "b", "t"}
    if unknown_keys:
        raise BadRequestError(f"unknown header fields: {', '.join(sorted(map(str, unknown_keys)))}")
    body = header.get("b", {})
    if not isinstance(body, dict):
        raise BadRequestError(f"header field 'b' (the body) must be a map, got {type(body).__name__}")
    token = header.get("t")
    if token is not None and not isinstance(token, str):
        raise BadRequestError("header field 't' (the token) must be a string")
    if kind not in _FREE_FORM:
        _check_body(kind, body)
    if len(used) != nframes - 1:
        raise BadRequestError(f"message has {nframes - 1} array frames but the body references {len(used)}")
    return Message(kind=kind, id=request_id, body=body, token=token)


def _check_body(kind: str, body: dict[str, Any]) -> None:
    schema = BODY_SCHEMA[kind]
    for name, value in body.items():
        if name not in schema:
            raise BadRequestError(f"unknown field {name!r} in a {kind!r} message; known: {', '.join(schema) or 'none'}")
        types, _ = schema[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BadRequestError(f"field {name!r} of a {kind!r} message must be {wanted}, got {type(value).__name__}")
    for name, (_, required) in schema.items():
        if required and name not in body:
            raise BadRequestError(f"a {kind!r} message needs the field {name!r}")


def _unpack_array(code: int, data: bytes, views: list[memoryview], used: set[int], nframes: int) -> np.ndarray:
    if code not in (_EXT_INLINE, _EXT_FRAME):
        raise BadRequestError(f"unknown msgpack extension type {code}")
    try:
        spec = msgpack.unpackb(data, raw=False, max_array_len=8, max_map_len=0, max_str_len=16, max_bin_len=len(data))
    except Exception as exc:
        raise BadRequestError(f"array header is not valid msgpack: {exc}") from None
    if not isinstance(spec, list) or len(spec) != 3:
        raise BadRequestError("an array must be [dtype, shape, data or frame index]")
    dtype_str, shape, where = spec
    dtype = _parse_dtype(dtype_str)
    shape = _parse_shape(shape)
    if code == _EXT_INLINE:
        if not isinstance(where, bytes):
            raise BadRequestError("an inline array's data must be bytes")
        buf: Any = bytearray(where)  # small: copy so the array is writable like an out-of-band one
    else:
        if not isinstance(where, int) or isinstance(where, bool) or not 1 <= where < nframes:
            raise BadRequestError(f"array frame index {where!r} is out of range (message has {nframes} frames)")
        if where in used:
            raise BadRequestError(f"array frame {where} is referenced twice")
        used.add(where)
        buf = views[where]
    expected = math.prod(shape) * dtype.itemsize
    if len(buf) != expected:
        raise BadRequestError(f"array of dtype {dtype.str} and shape {tuple(shape)} needs {expected} bytes, got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


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
