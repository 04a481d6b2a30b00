"""The wire codec: awkward arrays round-trip exactly, frame counts follow the threshold, and every
malformed input class is rejected with its error code (never another exception)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelhost.client import wire
from modelhost.client.errors import RequestError

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
    except RequestError:
        pass


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
