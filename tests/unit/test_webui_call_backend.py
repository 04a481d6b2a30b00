"""The WebUI runner's backend (host/backends/webui_call.py) around a WebUI function, without a WebUI: what it does
when a generator call must stop, and with the function's own errors. The function is registered as the WebUI's inner
decorator registers it in a runner; the host's RunContext is the real one."""

from __future__ import annotations

import pytest

from modelhost.client.protocol.errors import BackendError, CancelledError, DeadlineExceededError, ShuttingDownError
from modelhost.host.backends import webui_call as backend_module
from modelhost.host.backends.base import GenerateRequest, ModelSpec, RunContext

KEY = "tts_webui_extension.fake.main:speak"


@pytest.fixture
def backend(tmp_path, monkeypatch):
    monkeypatch.setattr(backend_module, "_registry", {})
    return backend_module.WebuiCallBackend(ModelSpec("webui:main", "webui_call", options={"root": str(tmp_path)}))


def _register(fn, is_generator: bool) -> None:
    backend_module._registry[KEY] = (fn, is_generator)


def _request(**kwargs) -> GenerateRequest:
    return GenerateRequest(prompt=None, params={"call": KEY, "kwargs": kwargs})


@pytest.mark.parametrize(("reason", "error"), [("by its client", CancelledError), ("client_gone", CancelledError),
                                               ("deadline", DeadlineExceededError), ("shutdown", ShuttingDownError)])
def test_a_generator_call_that_must_stop_ends_with_the_stop_error_and_the_webuis_generator_is_closed(backend, reason, error,
                                                                                                    capsys) -> None:
    made, closed = [], []

    def speak(text, **kwargs):
        try:
            for n in range(100):
                made.append(n)
                yield {"audio_out": (16000, [n]), "text": text}
        finally:
            closed.append(len(made))

    _register(speak, True)
    sent = []
    ctx = RunContext(emit=lambda step, total: None, is_cancelled=lambda: reason if sent else None,
                     chunk=lambda audio, rate, offset, item=None: sent.append(item))
    with pytest.raises(error):
        backend.generate(_request(text="hi"), ctx)
    assert len(sent) == 1 and closed == [1]  # stopped once the cancel was seen, and the WebUI's generator closed there
    assert "Traceback" not in capsys.readouterr().err  # a stop is not a failure of the WebUI's function


def test_the_functions_own_error_comes_back_as_a_backend_error_with_its_type(backend) -> None:
    def speak(text, **kwargs):
        raise OSError("no such voice")

    _register(speak, False)
    with pytest.raises(BackendError, match="] OSError: no such voice$"):
        backend.generate(_request(text="hi"), RunContext.detached())
