"""A WebUI call's key and values (client/webui_call.py): the same key on both sides, values through the real wire."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from modelhost.client import webui_call
from modelhost.client.protocol import wire


def generate_audio(text, **kwargs):
    return text


def log_function_time(fn):  # TTS-WebUI's tts_webui/decorators/log_function_time.py: no functools.wraps
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def test_the_key_sees_through_the_webuis_timer_wrapper_and_functools_wraps() -> None:
    inner = log_function_time(generate_audio)
    assert inner.__qualname__ == "log_function_time.<locals>.wrapper"
    ours = functools.wraps(inner)(lambda *a, **k: inner(*a, **k))
    expected = f"{__name__}:generate_audio"
    assert webui_call.call_key(inner) == webui_call.call_key(ours) == webui_call.call_key(generate_audio) == expected


def _through_the_wire(value):
    params = {webui_call.KWARGS: webui_call.encode_kwargs({"x": value})}
    frames = wire.encode("generate", 1, {"model": "webui:main", "params": params})
    body = wire.decode([bytes(f) for f in frames]).body
    return webui_call.decode(body["params"][webui_call.KWARGS])["x"]


def test_values_cross_as_the_webui_made_them() -> None:
    audio = (24000, np.arange(6, dtype=np.int16))
    got = _through_the_wire({"audio_out": audio, "tokens": torch.arange(4).reshape(1, 4), "half": torch.ones(2, dtype=torch.bfloat16),
                             "path": Path("/tmp/a.wav"), "ids": {1: "one"}, "nested": [(1, 2.5), None, "s"],
                             "tag": {"__tuple__": 1}})
    assert isinstance(got["audio_out"], tuple) and got["audio_out"][0] == 24000
    np.testing.assert_array_equal(got["audio_out"][1], audio[1])
    assert got["audio_out"][1].dtype == np.int16
    assert torch.equal(got["tokens"], torch.arange(4).reshape(1, 4)) and got["half"].dtype == torch.bfloat16
    assert got["path"] == Path("/tmp/a.wav") and isinstance(got["path"], Path)  # a path, as it was sent
    assert got["ids"] == {1: "one"} and got["nested"] == [(1, 2.5), None, "s"]
    assert got["tag"] == {"__tuple__": 1}  # a map that looks like a tag comes back as the map it was


@pytest.mark.parametrize("value", [torch.tensor(3.5), torch.tensor(7, dtype=torch.int16), torch.zeros(0, 3),
                                   torch.arange(6).reshape(2, 3).T, torch.ones(1, 2, dtype=torch.bfloat16),
                                   torch.ones(2, dtype=torch.float16, requires_grad=True)],
                         ids=["0-d", "0-d int16", "empty", "transposed", "bfloat16", "requires_grad"])
def test_a_tensor_keeps_its_shape_dtype_and_values(value) -> None:
    got = _through_the_wire(value)
    assert isinstance(got, torch.Tensor) and got.shape == value.shape and got.dtype == value.dtype
    assert torch.equal(got, value.detach())


def test_arrays_keep_their_shape_and_dtype() -> None:
    for value in (np.array(2.5, np.float32), np.arange(6, dtype=np.uint8).reshape(2, 3).T, np.zeros((0, 2), np.int64)):
        got = _through_the_wire(value)
        assert got.shape == value.shape and got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_what_cannot_travel_is_refused_naming_where_and_outputs_are_dropped() -> None:
    with pytest.raises(ValueError, match=r"argument 'model'\['m'\] is a .*Linear"):
        webui_call.encode_kwargs({"model": {"m": torch.nn.Linear(1, 1)}})
    assert webui_call.encode_kwargs({"text": "t", "outputs": {object(): object()}}) == {"text": "t"}
