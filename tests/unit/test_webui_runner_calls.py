"""The WebUI side of WebUI-runner calls (webui_adapter/main.py, runner_calls.py), without a WebUI or a host: what the
Unload hooks reach, and when a generator call may fall back to running in the WebUI's process."""

from __future__ import annotations

import sys
import types

import pytest

from webui_adapter import main, runner_calls
from webui_adapter.forward import HostDownError

MODEL_STATE = "tts_webui.utils.manage_model_state"


def _fake_webui(monkeypatch) -> tuple[types.ModuleType, types.ModuleType, list]:
    """manage_model_state (a loader that unloads before loading, as the WebUI's does) and list_dir_models (a module
    holding unload_model, as the Unload button's does)."""
    states = types.ModuleType(MODEL_STATE)
    unloaded: list = []
    states.unload_model = lambda model_namespace, silent=False: unloaded.append(("here", model_namespace))
    states.unload_all_models = lambda: unloaded.append(("here", None))
    exec("def load(ns):\n    unload_model(ns, silent=True)\n    return ns\n", states.__dict__)
    buttons = types.ModuleType("tts_webui.utils.list_dir_models")
    buttons.unload_model = states.unload_model
    monkeypatch.setitem(sys.modules, MODEL_STATE, states)
    monkeypatch.setitem(sys.modules, buttons.__name__, buttons)
    return states, buttons, unloaded


def test_the_unload_button_reaches_the_runner_and_a_load_in_this_process_does_not(monkeypatch) -> None:
    states, buttons, unloaded = _fake_webui(monkeypatch)
    runner_calls.hook_unloads(lambda namespace: unloaded.append(("runner", namespace)))
    buttons.unload_model(model_namespace="mms")
    assert unloaded == [("here", "mms"), ("runner", "mms")]
    unloaded.clear()
    states.load("mms")  # the WebUI's own loader, for a call that stays in this process
    assert unloaded == [("here", "mms")]


class _Settings:
    fallback_local = True


class _Forwarder:
    """A host that streams ``items`` of a runner's generator and then goes away."""

    settings = _Settings()

    def __init__(self, items: list) -> None:
        self.items = items
        self.closed = False

    def stream_webui(self, model, key, kind, kw):
        try:
            yield from self.items
            raise HostDownError("modelhost: no host answered")
        finally:
            self.closed = True


@pytest.mark.parametrize("streamed", [[], ["first"]], ids=["nothing streamed", "one item streamed"])
def test_a_generator_falls_back_to_this_process_only_while_nothing_was_shown(monkeypatch, streamed) -> None:
    host = _Forwarder(list(streamed))
    monkeypatch.setattr(main, "forwarder", lambda: host)
    monkeypatch.setattr(main, "_route", lambda fn, args, kwargs: ("webui:main", "m:speak", dict(kwargs)))
    ran_here = []

    def speak(text, **kwargs):
        ran_here.append(text)
        yield "local"

    call = main.decorator_modelhost_generator(speak)
    if not streamed:
        assert list(call(text="hi", _type="kokoro")) == ["local"] and ran_here == ["hi"]
    else:
        got = []
        with pytest.raises(HostDownError):
            for item in call(text="hi", _type="kokoro"):
                got.append(item)
        assert got == ["first"] and ran_here == []  # not run again here: the WebUI would show its first item twice
    assert host.closed
