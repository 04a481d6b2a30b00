"""The wire codec: awkward arrays round-trip exactly, frame counts follow the threshold, and every
malformed input class is rejected with its error code (never another exception)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelhost.client.protocol import wire
from modelhost.client.protocol.errors import RequestError

SMALL = wire.Limits(max_message_bytes=1 << 20, max_frames=8, inline_max_bytes=1024)


def _round_trip(arr: np.ndarray, limits: wire.Limits = wire.DEFAULT_LIMITS) -> tuple[np.ndarray, int]:
    frames = wire.encode("generate", 7, {"model": "m", "audio": arr, "sample_rate": 16000}, limits=limits)
    # bytearray mimics what the socket hands over: independent, writable buffers
    msg = wire.decode([bytearray(memoryview(f)) for f in frames], limits=limits)
    return msg.body["audio"], len(frames)


AWKWARD = {
    "non_contiguous": np.arange(40, dtype=np.float32).reshape(4, 10)[:, ::3],
    "fortran_order": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    "empty": np.zeros((0, 5), dtype=np.float32),
    "zero_d": np.array(3.5, dtype=np.float32),
    "big_endian": np.arange(10, dtype=">i4"),
    "big_endian_float": np.linspace(-1, 1, 9).astype(">f8"),
    "float16": np.linspace(-1, 1, 33).astype(np.float16),
    "int16": (np.sin(np.arange(100)) * 32767).astype(np.int16),
    "float32_stereo": np.random.default_rng(0).standard_normal((2, 3000)).astype(np.float32),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, -3j], dtype=np.complex64),
    "uint8": np.arange(256, dtype=np.uint8),
    "transposed_big": np.random.default_rng(1).standard_normal((3000, 2)).astype(np.float32).T,
}


@pytest.mark.parametrize("name", sorted(AWKWARD))
@pytest.mark.parametrize("limits", [wire.DEFAULT_LIMITS, wire.Limits(inline_max_bytes=0)], ids=["default", "all_frames"])
def test_awkward_arrays_round_trip_exactly(name: str, limits: wire.Limits) -> None:
    arr = AWKWARD[name]
    out, _ = _round_trip(arr, limits)
    assert out.dtype == arr.dtype  # byte order included
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.c_contiguous and out.flags.writeable


def test_frame_count_follows_the_inline_threshold() -> None:
    small = np.zeros(255, dtype=np.float32)  # 1020 bytes: inline
    large = np.zeros(256, dtype=np.float32)  # 1024 bytes: its own frame
    assert _round_trip(small, SMALL)[1] == 1
    assert _round_trip(large, SMALL)[1] == 2
    frames = wire.encode("result", 1, {"a": large, "b": large, "c": small, "nested": [{"d": large}]}, limits=SMALL)
    assert len(frames) == 4
    body = wire.decode([bytes(f) for f in frames], limits=SMALL).body
    assert body["nested"][0]["d"].shape == (256,)


def test_out_of_band_frames_are_not_copied_on_decode() -> None:
    arr = np.arange(100_000, dtype=np.float32)
    frames = wire.encode("result", 1, {"audio": arr})
    buf = bytearray(frames[1])
    out = wire.decode([frames[0], buf]).body["audio"]
    buf[0:4] = np.float32(42).tobytes()
    assert out[0] == 42  # the array is a view on the received frame


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    dtype=st.sampled_from(["<f4", ">f4", "<i2", ">i8", "<f2", "|u1", "<c8", "|b1"]),
    inline=st.booleans(),
)
def test_any_shape_and_dtype_round_trips(shape: list[int], dtype: str, inline: bool) -> None:
    rng = np.random.default_rng(len(shape))
    arr = np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
    out, _ = _round_trip(arr, wire.Limits(inline_max_bytes=1 << 30 if inline else 0))
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def _header(**fields) -> bytes:
    base = {"v": wire.PROTOCOL_VERSION, "k": "health", "id": 5, "b": {}}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not _DROP}, use_bin_type=True)


_DROP = object()


def _array_ext(dtype: str, shape: list, where, code: int = 2) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb([dtype, shape, where], use_bin_type=True))


def _gen(audio) -> bytes:
    return _header(k="generate", b={"model": "m", "audio": audio})


MALFORMED = {
    "empty message": ([], "bad_request"),
    "not msgpack": ([b"\xc1\xc1\xc1"], "bad_request"),
    "truncated msgpack": ([_header()[:-3]], "bad_request"),
    "trailing bytes": ([_header() + b"\x00"], "bad_request"),
    "header is a list": ([msgpack.packb([1, 2, 3])], "bad_request"),
    "deep nesting": ([b"\x91" * 100_000], "bad_request"),
    "id missing": ([_header(id=_DROP)], "bad_request"),
    "id negative": ([_header(id=-1)], "bad_request"),
    "id a string": ([_header(id="x")], "bad_request"),
    "wrong version": ([_header(v=99)], "version_mismatch"),
    "no version": ([_header(v=_DROP)], "version_mismatch"),
    "unknown kind": ([_header(k="explode")], "unknown_kind"),
    "kind not a string": ([_header(k=3)], "unknown_kind"),
    "unknown header field": ([_header(x=1)], "bad_request"),
    "body not a map": ([_header(b=[1])], "bad_request"),
    "token not a string": ([_header(t=5)], "bad_request"),
    "missing required field": ([_header(k="load", b={})], "bad_request"),
    "wrong field type": ([_header(k="load", b={"model": 5})], "bad_request"),
    "bool where int": ([_header(k="cancel", b={"target": True})], "bad_request"),
    "unknown body field": ([_header(k="ps", b={"all": True})], "bad_request"),
    "params not a map": ([_header(k="generate", b={"model": "m", "params": [1]})], "bad_request"),
    "too many frames": ([_header()] + [b"x"] * 8, "too_large"),
    "too many bytes": ([_header(), b"\0" * (1 << 20)], "too_large"),
    "unreferenced frame": ([_header(), b"\0" * 8], "bad_request"),
    "frame index out of range": ([_gen(_array_ext("<f4", [2], 3)), b"\0" * 8], "bad_request"),
    "frame index zero (the header)": ([_gen(_array_ext("<f4", [2], 0)), b"\0" * 8], "bad_request"),
    "frame referenced twice": ([_header(k="result", b={"a": _array_ext("<f4", [2], 1), "b": _array_ext("<f4", [2], 1)}), b"\0" * 8], "bad_request"),
    "byte count mismatch (frame)": ([_gen(_array_ext("<f4", [3], 1)), b"\0" * 8], "bad_request"),
    "byte count mismatch (inline)": ([_gen(_array_ext("<f4", [3], b"\0" * 8, code=1))], "bad_request"),
    "huge shape overflow": ([_gen(_array_ext("<f4", [2**40, 2**40], 1)), b"\0" * 8], "bad_request"),
    "object dtype (pickle)": ([_gen(_array_ext("|O", [1], b"\0" * 8, code=1))], "bad_request"),
    "structured dtype": ([_gen(_array_ext("V8", [1], b"\0" * 8, code=1))], "bad_request"),
    "datetime dtype": ([_gen(_array_ext("<M8[s]", [1], b"\0" * 8, code=1))], "bad_request"),
    "dtype not a string": ([_gen(_array_ext(4, [1], b"\0" * 4, code=1))], "bad_request"),
    "bogus dtype string": ([_gen(_array_ext("zz9", [1], b"\0" * 4, code=1))], "bad_request"),
    "negative dim": ([_gen(_array_ext("<f4", [-1], b"", code=1))], "bad_request"),
    "shape not a list": ([_gen(_array_ext("<f4", 3, b"", code=1))], "bad_request"),
    "too many dims": ([_gen(_array_ext("<f4", [1] * 40, b"\0" * 4, code=1))], "bad_request"),
    "inline data not bytes": ([_gen(_array_ext("<f4", [1], "abcd", code=1))], "bad_request"),
    "array spec wrong length": ([_gen(msgpack.ExtType(1, msgpack.packb(["<f4", [1]])))], "bad_request"),
    "array spec garbage": ([_gen(msgpack.ExtType(1, b"\xc1"))], "bad_request"),
    "unknown ext code": ([_gen(msgpack.ExtType(9, b"abc"))], "bad_request"),
    "non-string map key": ([msgpack.packb({1: 2})], "bad_request"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_is_rejected_with_a_code(name: str) -> None:
    frames, code = MALFORMED[name]
    with pytest.raises(RequestError) as info:
        wire.decode(frames, limits=SMALL)
    assert info.value.code == code
    assert info.value.message  # says what is wrong


def test_rejections_carry_the_request_id_when_known() -> None:
    with pytest.raises(RequestError) as info:
        wire.decode([_header(v=99, id=42)])
    assert info.value.request_id == 42


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_bytes_never_escape_as_other_exceptions(frames: list[bytes]) -> None:
    try:
        wire.decode(frames, limits=SMALL)
    except RequestError as exc:
        assert type(exc.request_id) is int and 0 <= exc.request_id < 2**63  # always set: 0 when unreadable


def test_encode_refuses_what_cannot_travel() -> None:
    with pytest.raises(RequestError, match="dtype object"):
        wire.encode("result", 1, {"a": np.array([object()])})
    with pytest.raises(RequestError, match="type set"):
        wire.encode("result", 1, {"a": {1, 2}})
    with pytest.raises(RequestError) as info:
        wire.encode("result", 1, {"a": np.zeros(1 << 18, dtype=np.float32)}, limits=SMALL)
    assert info.value.code == "too_large"


def test_numpy_scalars_travel_as_plain_numbers() -> None:
    body = wire.decode(wire.encode("result", 1, {"x": np.float32(1.5), "n": np.int64(3)})).body
    assert body == {"x": 1.5, "n": 3}


# ---- issue 12: every rejection says whose request it was, strict header types, no foreign values ----

ID = 42
TS = msgpack.Timestamp(1_700_000_000, 0)


def _msg(kind: str = "health", body=None, **fields) -> bytes:
    """A header with id 42, then ``fields`` in the given order (or dropped with _DROP)."""
    return _header(k=kind, id=ID, b={} if body is None else body, **fields)


def _nested(depth: int) -> dict:
    """params whose maps and lists nest ``depth`` levels deep (the params map is level 1)."""
    tree: object = 1
    for level in range(depth - 1):
        tree = {"x": tree} if level % 2 else [tree]
    return {"deep": tree}


def _gen_body(**fields) -> dict:
    return {"model": "m", **fields}


_OVER = 1 << 20  # SMALL's max_message_bytes
ECHOED = {
    # defect 1: size and frame-count checks, array errors and msgpack errors all keep the id
    "too many frames": ([_msg()] + [b"x"] * 8, "too_large", ID),
    "too many bytes in the frames": ([_msg(), b"\0" * _OVER], "too_large", ID),
    "the header frame itself too large": ([_msg("generate", _gen_body(prompt="a" * _OVER))], "too_large", ID),
    "too many frames and too large": ([_msg()] + [b"\0" * (_OVER // 4)] * 9, "too_large", ID),
    "truncated after the id": ([_msg("generate", _gen_body(prompt="abc"))[:-2]], "bad_request", ID),
    "trailing bytes": ([_msg() + b"\x00"], "bad_request", ID),
    "non-string key deep in the body": ([_msg("result", {"a": {1: 2}})], "bad_request", ID),
    "nesting past msgpack's stack": ([_msg("result", {"a": 0})[:-1] + b"\x91" * 100_000 + b"\x00"], "bad_request", ID),
    "unreferenced frame": ([_msg(), b"\0" * 8], "bad_request", ID),
    "frame index out of range": ([_msg("generate", _gen_body(audio=_array_ext("<f4", [2], 3))), b"\0" * 8], "bad_request", ID),
    "frame referenced twice": ([_msg("result", {"a": _array_ext("<f4", [2], 1), "b": _array_ext("<f4", [2], 1)}), b"\0" * 8], "bad_request", ID),
    "byte count mismatch": ([_msg("generate", _gen_body(audio=_array_ext("<f4", [3], b"\0" * 8, code=1)))], "bad_request", ID),
    "object dtype": ([_msg("generate", _gen_body(audio=_array_ext("|O", [1], b"\0" * 8, code=1)))], "bad_request", ID),
    "unknown ext code": ([_msg("generate", _gen_body(audio=msgpack.ExtType(9, b"abc")))], "bad_request", ID),
    "array spec garbage": ([_msg("generate", _gen_body(audio=msgpack.ExtType(1, b"\xc1")))], "bad_request", ID),
    "array error before an unknown kind": ([_msg("explode", {"a": msgpack.ExtType(9, b"")})], "unknown_kind", ID),
    "wrong version": ([_msg(v=99)], "version_mismatch", ID),
    # the id cannot be read: 0
    "empty message": ([], "bad_request", 0),
    "garbage": ([b"\xc1\xc1\xc1"], "bad_request", 0),
    "header is a list": ([msgpack.packb([1, ID])], "bad_request", 0),
    "too large and garbage": ([b"\xc1"] + [b"x"] * 8, "too_large", 0),
    "truncated before the id": ([_msg()[:8]], "bad_request", 0),
    "id missing": ([_header(id=_DROP)], "bad_request", 0),
    # defect 2: strict header types
    "version True": ([_msg(v=True)], "bad_request", ID),
    "version 1.0": ([_msg(v=1.0)], "bad_request", ID),
    "version a string": ([_msg(v="1")], "bad_request", ID),
    "id True": ([_header(id=True)], "bad_request", 0),
    "id 42.0": ([_header(id=42.0)], "bad_request", 0),
    "id 2**63": ([_header(id=2**63)], "bad_request", 0),
    "id 2**64-1": ([_header(id=2**64 - 1)], "bad_request", 0),
    "kind as bytes": ([_msg(b"health")], "unknown_kind", ID),
    # defect 3: msgpack's Timestamp (ext -1) is not one of ours
    "Timestamp in params": ([_msg("generate", _gen_body(params={"seed": TS}))], "bad_request", ID),
    "Timestamp as timeout_s": ([_msg("generate", _gen_body(timeout_s=TS))], "bad_request", ID),
    "Timestamp as the model": ([_msg("load", {"model": TS})], "bad_request", ID),
    "Timestamp as the version": ([_msg(v=TS)], "bad_request", ID),
    "Timestamp as the token": ([_msg(t=TS)], "bad_request", ID),
    "Timestamp as the id": ([_header(id=TS)], "bad_request", 0),
    "Timestamp in a result": ([_msg("result", {"info": [{"at": TS}]})], "bad_request", ID),
    "Timestamp as an array dtype": ([_msg("generate", _gen_body(audio=_array_ext(TS, [1], b"\0", code=1)))], "bad_request", ID),
    # defect 4: finite timeouts
    **{f"{kind} timeout_s {value}": ([_msg(kind, _gen_body(timeout_s=value))], "bad_request", ID)
       for kind in ("generate", "load", "unload") for value in (float("nan"), float("inf"), float("-inf"), 0, 0.0, -1.0)},
    **{f"{kind} keep_alive_s {value}": ([_msg(kind, _gen_body(keep_alive_s=value))], "bad_request", ID)
       for kind in ("generate", "load") for value in (float("nan"), float("inf"), float("-inf"), -1, -0.5)},
    # defect 5: params are a tree of str-keyed maps, at most 16 levels
    "params with an int key": ([_msg("generate", _gen_body(params={1: 2}))], "bad_request", ID),
    "params with a bytes key": ([_msg("generate", _gen_body(params={b"seed": 2}))], "bad_request", ID),
    "params with a nested bytes key": ([_msg("generate", _gen_body(params={"a": [{b"k": 1}]}))], "bad_request", ID),
    "params 17 levels deep": ([_msg("generate", _gen_body(params=_nested(17)))], "bad_request", ID),
    "params with a bad array": ([_msg("generate", _gen_body(params={"a": _array_ext("<f4", [9], b"", code=1)}))], "bad_request", ID),
}


@pytest.mark.parametrize("name", sorted(ECHOED))
def test_each_rejection_has_its_code_and_echoes_the_id_it_could_read(name: str) -> None:
    frames, code, request_id = ECHOED[name]
    with pytest.raises(RequestError) as info:
        wire.decode(frames, limits=SMALL)
    assert (info.value.code, info.value.request_id) == (code, request_id), info.value.message
    assert 0 < len(info.value.message) < 1000  # says what is wrong, without echoing megabytes


@pytest.mark.parametrize("field,value", [("timeout_s", float("nan")), ("timeout_s", float("inf")), ("keep_alive_s", float("-inf"))])
def test_a_bad_timeout_names_its_field(field: str, value: float) -> None:
    with pytest.raises(RequestError, match=field):
        wire.decode([_msg("generate", _gen_body(**{field: value}))])


def test_timestamps_and_foreign_params_say_why() -> None:
    with pytest.raises(RequestError, match="Timestamp"):
        wire.decode([_msg("generate", _gen_body(params={"a": [TS]}))])
    with pytest.raises(RequestError, match="16 levels"):
        wire.decode([_msg("generate", _gen_body(params=_nested(17)))])
    with pytest.raises(RequestError, match="keys must be strings"):
        wire.decode([_msg("generate", _gen_body(params={b"k": 1}))])


def test_what_the_rules_allow_still_decodes() -> None:
    body = _gen_body(params=_nested(16) | {"list": [1, 2.5, "x", None, True, b"raw"]}, timeout_s=0.001, keep_alive_s=0)
    assert wire.decode([_msg("generate", body)]).body == body
    for kind in ("generate", "load"):
        assert wire.decode([_msg(kind, _gen_body(timeout_s=None, keep_alive_s=None))]).id == ID
    assert wire.decode([_header(id=2**63 - 1)]).id == 2**63 - 1
    assert wire.decode([_header(id=0)]).id == 0
    frames = wire.encode("generate", 9, _gen_body(params={"seed": 1}, timeout_s=3600.0, keep_alive_s=60.0))
    assert wire.decode(frames).body["keep_alive_s"] == 60.0


def test_the_id_is_read_from_the_first_bytes_of_a_huge_header() -> None:
    big = wire.encode("generate", 77, _gen_body(prompt="p" * (300 * 1024)), limits=wire.Limits(max_message_bytes=1 << 30))
    with pytest.raises(RequestError) as info:
        wire.decode(big, limits=wire.Limits(max_message_bytes=256 * 1024))
    assert (info.value.code, info.value.request_id) == ("too_large", 77)


_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8), st.binary(max_size=8),
    st.just(TS), st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    st.builds(_array_ext, st.sampled_from(["<f4", "|O", "x"]), st.lists(st.integers(-1, 3), max_size=3), st.integers(-1, 4)),
)
_TREE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.binary(max_size=2), inner, max_size=3), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(
    request_id=st.integers(0, 2**63 - 1),
    kind=st.sampled_from(sorted(wire.BODY_SCHEMA) + ["bogus"]),
    body=st.dictionaries(st.sampled_from(["model", "prompt", "params", "audio", "sample_rate", "timeout_s", "keep_alive_s",
                                          "target", "pinned", "step", "total", "code", "message", "x"]), _TREE, max_size=5),
    extra=st.lists(st.binary(max_size=32), max_size=10),
    version=st.sampled_from([wire.PROTOCOL_VERSION, wire.PROTOCOL_VERSION, 2, True, 1.0]),
)
def test_any_rejection_of_a_readable_header_echoes_its_id(request_id, kind, body, extra, version) -> None:
    header = msgpack.packb({"v": version, "k": kind, "id": request_id, "b": body}, use_bin_type=True)
    try:
        msg = wire.decode([header, *extra], limits=SMALL)
    except RequestError as exc:
        assert exc.request_id == request_id, exc
    else:
        assert msg.id == request_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48), st.integers(0, 2**63 - 1))
def test_a_header_cut_or_spoiled_after_its_id_still_echoes_it(tail: bytes, request_id: int) -> None:
    head = msgpack.packb({"v": 1, "k": "health", "id": request_id}, use_bin_type=True)
    header = b"\x84" + head[1:] + tail  # a fourth entry made of anything
    try:
        wire.decode([header], limits=SMALL)
    except RequestError as exc:
        assert exc.request_id == request_id, exc
