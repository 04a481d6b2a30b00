"""modelhost's stand-in for TTS-WebUI's ``tts_webui`` package (``tests/support/tts_webui_standin``), checked.

The WebUI-runner tests run on the stand-in wherever no TTS-WebUI checkout is given (CI). The probe
(``tests/support/tts_webui_probe.py``: the package's decorator chain, extension loader, seed, model state,
config and ``.env`` handling, exercised through their public functions in a real WebUI environment's Python)
reports what the code does. With ``$MODELHOST_TTS_WEBUI`` set, the stand-in's report must equal the real code's
(8c9046b), every value of it; without, the facts modelhost relies on are checked on the stand-in alone.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import short_tmp
from tests.support import webui_runner_tree as tree

pytestmark = pytest.mark.skipif(tree.why_not_available() is not None, reason=str(tree.why_not_available()))


@pytest.fixture(scope="module")
def standin() -> dict:
    return tree.probe(tree.STANDIN, short_tmp("mh-probe-"))


def test_the_stand_in_does_what_the_real_code_does(standin) -> None:
    if not os.environ.get(tree.SOURCE_ENV):
        pytest.skip(f"no TTS-WebUI checkout to compare with: set {tree.SOURCE_ENV} (the facts test checks the stand-in alone)")
    real = tree.probe(tree.webui_source(), short_tmp("mh-probe-"))
    assert sorted(standin) == sorted(real)
    assert {k: v for k, v in standin.items() if v != real[k]} == {}, {k: real[k] for k in standin if standin[k] != real[k]}


def test_the_facts_modelhost_relies_on_hold_in_the_stand_in(standin) -> None:
    # an inner decorator receives log_function_time's wrapper (no functools.wraps: the function only in its closure)
    assert standin["log_function_time"] == ["log_function_time.<locals>.wrapper", True, [True]]
    decorated = [step[1:] for step in standin["decorated_by_extensions"]]
    assert decorated == [["i2", "log_function_time.<locals>.wrapper"], ["i1", "_recorder.<locals>.decorate.<locals>.wrapper"],
                         ["o2", "decorator_apply_torch_seed.<locals>.wrapper"], ["o1", "_recorder.<locals>.decorate.<locals>.wrapper"]]
    # what each decorator sees: the outer ones the UI's inputs and outputs; the inner ones _type too; seed a string
    calls = {c[1]: c[2:] for c in standin["chain_calls"] if c[0] == "call"}
    ui = ["model_name", "outputs", "seed", "speed", "text"]
    assert calls["o1"] == [ui, "7", None] and calls["i2"] == [sorted([*ui, "_type"]), "7", "probe"]
    # date and file name are added to the result after the inner chain; metadata and files by the outer ones
    results = {c[1]: c[2] for c in standin["chain_calls"] if c[0] == "result"}
    assert results["i1"] == ["audio_out", "seen", "speed"]
    assert results["o1"] == ["audio_out", "date", "filename", "folder_root", "metadata", "seen", "speed"]
    assert standin["chain_files"] == ["<date>__probe__Hello_world_it_.json", "<date>__probe__Hello_world_it_.wav"]
    assert standin["chain_metadata"]["seed"] == "7" and standin["chain_metadata"]["outputs"] is None
    # one model per namespace, keyed by the loader's first argument only
    assert standin["model_state_loads"] == [["default", None], ["a", None], ["b", 2]]
    assert standin["unload_button_binding"] and standin["unload_button_api"] == ["probe_unload_model"]
    # Seed(n) seeds torch, numpy and random, and applies n again when its block ends
    inside, after, _, unseeded_deterministic = standin["seed"]
    assert inside[0] == after and inside[3] is True and unseeded_deterministic is False
    # the loader: registration files, disabled names skipped, a missing package only printed
    assert standin["loader_listed"][:3] == ["probe_outer", "probe_missing", "probe_inner"]
    assert any("Failed to load: No module named 'probe_missing'" in line for line in standin["loader_failed"])
    # .env does not override the environment, .env.user does; config.json is written when missing
    assert standin["dotenv"] == {"PROBE_A": "preset", "PROBE_B": "user", "PROBE_C": "env"}
    assert standin["config_written"]["gradio_interface_options"]["server_port"] == 7770
