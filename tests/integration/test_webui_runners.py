"""The WebUI's other tabs in WebUI runners, with TTS-WebUI's code (8c9046b) and real extensions.

The WebUI (``tests/support/webui_runner_tree.py``): its code from a checkout when ``$MODELHOST_TTS_WEBUI`` names
one, else modelhost's stand-in for it (``tests/support/tts_webui_standin``, as in CI; the same tests pass on
both, which checks the stand-in against the real code), its main environment with the MMS
and Seamless M4T extensions (``tts-webui-extension-mms`` 0.1.0 and ``tts-webui-extension-seamless-m4t`` 0.0.7, a
random tiny VITS and SeamlessM4Tv2 in the hub's layout, offline) and a proxied
extension's ``.venvs/<package>`` with a generator extension written as the WebUI's are; where set up (its code is
on GitHub only: ``$MODELHOST_WEBUI_KOKORO`` at setup), Kokoro's extension in its own ``.venvs/<package>``. Each WebUI process is a
real one of those environments (``tests/support/webui_process.py``: the WebUI's decorator loader, its
``dictionarize``, its Unload button's call). One host, started as a user starts it (``serve --webui``), serves
the whole module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from modelhost.client import Client
from tests.conftest import ROOT, short_tmp, start_host
from tests.support import webui_runner_tree as tree

pytestmark = pytest.mark.skipif(tree.why_not_available() is not None, reason=str(tree.why_not_available()))
MMS = "tts_webui_extension.mms.main:generate_audio_with_mms"
SEAMLESS = "tts_webui_extension.seamless_m4t.main:seamless_translate"
TONE_MODEL = f"webui:{tree.TONE_PACKAGE}"


@pytest.fixture(scope="module")
def webui():
    built = tree.build_runner_webui(short_tmp("mh-wr-"))
    print(f"\nWebUI code: {built.code}")
    return built


@pytest.fixture(scope="module")
def host(webui):
    h = start_host("", args=("--webui", str(webui.root)), env={"HF_HUB_OFFLINE": "1"}, timeout_s=120)
    yield h
    h.stop()


MMS_CALL, SEAMLESS_CALL = tree.MMS_CALL, tree.SEAMLESS_CALL


@pytest.fixture(scope="module")
def first_mms(webui, host):
    """The module's first calls: one WebUI process of the main environment makes an MMS call (seed 7), then a
    Seamless M4T one (seed 3); the runner loads both models."""
    return tree.run_webui(webui.main_python, webui.root, [MMS_CALL, SEAMLESS_CALL], env={"MODELHOST_ADDRESS": host.address})


def _row(host, name: str) -> dict:
    with Client(host.address) as c:
        return next(m for m in c.ps() if m["name"] == name)


def test_mms_and_seamless_run_in_the_main_environments_runner_and_the_webui_process_loads_no_model(webui, host, first_mms) -> None:
    mms, seamless = first_mms["calls"]
    assert "error" not in mms and "error" not in seamless, first_mms["calls"]
    assert mms["rate"] == 16000 and len(mms["samples"]) > 100
    assert seamless["rate"] == 16000 and len(seamless["samples"]) > 10 and any(seamless["samples"])
    assert first_mms["adapter"] and first_mms["loaded_here"] == [] and first_mms["model_code_here"] == []
    row = _row(host, "webui:main")
    assert (row["state"], row["backend"], row["runner"]) == ("ready", "webui_call", "webui-main")
    details = row["details"]
    assert details["holds"] == {"mms": "eng", "seamless": tree.SEAMLESS_HUB}
    assert details["loads"] == {"mms": 1, "seamless": 1} and details["calls"] == {MMS: 1, SEAMLESS: 1}
    assert details["python"] == str(webui.main_python)  # the calling environment's interpreter, as the WebUI spells it
    assert row["memory_bytes"] > 50 * 2**20 and details["rss_bytes"] > 50 * 2**20  # the runner's process, measured


def test_a_second_webui_and_a_restarted_one_reuse_the_loaded_models(webui, host, first_mms) -> None:
    pid = _row(host, "webui:main")["pid"]
    second = tree.run_webui(webui.main_python, webui.root, [{"call": "mms", "kwargs": {"text": "second webui"}}],
                            env={"MODELHOST_ADDRESS": host.address})
    restarted = tree.run_webui(webui.main_python, webui.root, [{"call": "seamless", "kwargs": {"text": "after a restart"}}],
                               env={"MODELHOST_ADDRESS": host.address})
    for report in (second, restarted):
        assert "error" not in report["calls"][0] and report["loaded_here"] == [] and report["model_code_here"] == []
    row = _row(host, "webui:main")
    assert row["pid"] == pid and row["details"]["loads"] == {"mms": 1, "seamless": 1}
    assert row["details"]["calls"][MMS] == 2 and row["details"]["calls"][SEAMLESS] == 2


def test_outputs_equal_the_webuis_own_in_process_call_for_the_same_seed(webui, host, first_mms) -> None:
    # no host: the WebUI's own code, in-process (a first call loads, a second does not)
    local = tree.run_webui(webui.main_python, webui.root, [MMS_CALL, MMS_CALL, SEAMLESS_CALL, SEAMLESS_CALL],
                           env={"MODELHOST_ADDRESS": f"ipc://{webui.root}/nobody.sock", "MODELHOST_WEBUI_FALLBACK": "local"})
    assert local["loaded_here"] == ["mms", "seamless"]  # the reference really ran here
    warm = tree.run_webui(webui.main_python, webui.root, [MMS_CALL, SEAMLESS_CALL], env={"MODELHOST_ADDRESS": host.address})
    # the first call loads the model inside the seed (as in the WebUI), the second does not: compare like with like
    assert first_mms["calls"][0]["samples"] == local["calls"][0]["samples"]
    assert warm["calls"][0]["samples"] == local["calls"][1]["samples"]
    assert first_mms["calls"][1]["samples"] == local["calls"][2]["samples"]
    assert warm["calls"][1]["samples"] == local["calls"][3]["samples"]
    assert local["calls"][0]["samples"] != tree.run_webui(  # the seed is what makes them equal: another seed differs
        webui.main_python, webui.root, [{**MMS_CALL, "kwargs": {**MMS_CALL["kwargs"], "seed": "8"}}],
        env={"MODELHOST_ADDRESS": host.address})["calls"][0]["samples"]


def test_the_webui_restart_benchmark_runs_here(webui, host, first_mms) -> None:
    from benchmarks import webui_restart

    report = webui_restart.measure(webui, host.address, reps=1, warm_up=False)  # the smoke run: one sample each
    for name in ("seamless", "mms"):
        assert report[name]["host_warm_p50_s"] > 0 and report[name]["in_process_p50_s"] > 0
    assert report["runner_loads"] == {"mms": 1, "seamless": 1}  # every hosted sample used the runner's loaded models


KOKORO_CALL = {"call": "kokoro", "kwargs": {"text": "hola mundo", "seed": "1"}}


def test_kokoro_in_its_own_environments_runner_equals_the_webuis_in_process_call_and_a_restart_reuses_it(webui, host) -> None:
    if webui.kokoro_python is None:
        pytest.skip("no Kokoro environment: set MODELHOST_WEBUI_KOKORO to a checkout of rsxdalv/tts_webui_extension.kokoro "
                    f"({tree.KOKORO_COMMIT[:7]}) and run ./setup.sh --test")
    hosted = tree.run_webui(webui.kokoro_python, webui.root, [KOKORO_CALL, KOKORO_CALL], env={"MODELHOST_ADDRESS": host.address})
    restarted = tree.run_webui(webui.kokoro_python, webui.root, [KOKORO_CALL], env={"MODELHOST_ADDRESS": host.address})
    local = tree.run_webui(webui.kokoro_python, webui.root, [KOKORO_CALL, KOKORO_CALL],
                           env={"MODELHOST_ADDRESS": f"ipc://{webui.root}/nobody.sock", "MODELHOST_WEBUI_FALLBACK": "local"})
    for report in (hosted, restarted):
        assert all("error" not in call for call in report["calls"]), report["calls"]
        assert report["loaded_here"] == [] and report["model_code_here"] == []
    assert local["loaded_here"] == ["kokoro"] and "kokoro.model" in local["model_code_here"]
    first, warm = hosted["calls"]
    assert first["rate"] == 24000 and len(first["samples"]) > 1000 and first["tokens"]
    # the first call loads inside the seed (Kokoro's fixed-width parts are initialised then), later ones do not
    assert first["samples"] == local["calls"][0]["samples"] and warm["samples"] == local["calls"][1]["samples"]
    assert restarted["calls"][0]["samples"] == warm["samples"]
    row = _row(host, f"webui:{tree.KOKORO_PACKAGE}")
    assert row["details"]["holds"] == {"kokoro": tree.KOKORO_HUB} and row["details"]["loads"] == {"kokoro": 1}
    assert row["details"]["python"] == str(webui.kokoro_python)


def test_a_generator_streams_item_by_item_from_a_proxied_extensions_environment(webui, host) -> None:
    report = tree.run_webui(webui.proxy_python, webui.root,
                            [{"call": "tone", "kwargs": {"pieces": 3, "delay_s": 0.6, "seed": "5"}}],
                            env={"MODELHOST_ADDRESS": host.address})
    items = report["calls"][0]["items"]
    assert [i["rate"] for i in items] == [16000] * 3 and all(len(i["samples"]) == 1600 for i in items)
    gaps = [b["at_s"] - a["at_s"] for a, b in zip(items, items[1:])]
    assert all(gap > 0.4 for gap in gaps), gaps  # each item arrived as the runner made it, not all at the end
    assert report["loaded_here"] == []
    row = _row(host, TONE_MODEL)
    assert row["runner"] == f"webui-{tree.TONE_PACKAGE}" and row["details"]["python"] == str(webui.proxy_python)
    assert row["details"]["holds"] == {"tone": "tone-small"}
    assert _row(host, "webui:main")["pid"] != row["pid"]  # one runner per environment


def test_a_cancelled_generator_is_closed_in_the_runner_and_a_model_the_webui_loads_itself_stays_out_of_it(webui, host) -> None:
    closed_log = webui.root / "tone-closed.log"
    report = tree.run_webui(webui.proxy_python, webui.root, [
        {"call": "tone", "kwargs": {"text": "cancelled", "pieces": 40, "delay_s": 0.25}, "stop_after": 1},
        {"call": "load_here", "tab": "tts_webui_extension.modelhost_tone.main", "loader": "get_model", "args": ["tone-small"]},
    ], env={"MODELHOST_ADDRESS": host.address})
    assert len(report["calls"][0]["items"]) == 1 and report["calls"][1] == {}
    for _ in range(100):  # the cancel reaches the runner at its next item: it closes the WebUI's generator there
        if closed_log.exists() and "cancelled" in closed_log.read_text():
            break
        time.sleep(0.1)
    made = [int(line.split()[1]) for line in closed_log.read_text().splitlines() if line.startswith("cancelled ")]
    assert len(made) == 1 and made[0] < 10, made
    # the WebUI process loaded the tone model itself (its own manage_model_state): the runner's copy is untouched
    assert report["loaded_here"] == ["tone"]
    row = _row(host, TONE_MODEL)
    assert row["state"] == "ready" and row["details"]["holds"] == {"tone": "tone-small"} and row["pid"] is not None


def test_the_webuis_unload_button_reaches_the_runner_and_frees_it(webui, host) -> None:
    tree.run_webui(webui.proxy_python, webui.root, [{"call": "tone", "kwargs": {"pieces": 1}}],
                   env={"MODELHOST_ADDRESS": host.address})
    pid = _row(host, TONE_MODEL)["pid"]
    report = tree.run_webui(webui.proxy_python, webui.root,
                            [{"call": "unload", "namespace": "tone", "tab": "tts_webui_extension.modelhost_tone.main"}],
                            env={"MODELHOST_ADDRESS": host.address})
    assert report["calls"] == [{}]
    row = _row(host, TONE_MODEL)
    assert row["state"] == "unloaded" and row["memory_bytes"] == 0
    for _ in range(100):  # the runner holds no model: it exits (within a heartbeat or two)
        if _row(host, TONE_MODEL)["pid"] is None:
            break
        time.sleep(0.1)
    assert _row(host, TONE_MODEL)["pid"] is None
    with pytest.raises(ProcessLookupError):  # the runner's process is gone: everything it held is back
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_a_runner_killed_mid_call_gives_the_webui_a_clear_error_and_the_next_call_works(webui, host) -> None:
    calls = [{"call": "tone", "kwargs": {"pieces": 4, "delay_s": 1.0}}]
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(webui.proxy_python), str(ROOT / "tests" / "support" / "webui_process.py"), json.dumps(calls)],
                            cwd=webui.root, env={**environ, "MODELHOST_ADDRESS": host.address},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the WebUI's own prints, then the first item: the call is under way and has streamed
            if line.strip() == "ITEM 0":
                break
        os.kill(_row(host, TONE_MODEL)["pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads(next(line for line in out.splitlines() if line.startswith("WEBUI-REPORT "))[len("WEBUI-REPORT "):])
    error = report["calls"][0]["error"]
    assert error.startswith("gradio.exceptions.Error") and "ended during this call" in error and "SIGKILL" in error
    again = tree.run_webui(webui.proxy_python, webui.root, [{"call": "tone", "kwargs": {"pieces": 2}}],
                           env={"MODELHOST_ADDRESS": host.address})
    assert len(again["calls"][0]["items"]) == 2


def test_no_runner_writes_the_webuis_config_and_ps_shows_what_each_runner_holds(webui, host, first_mms) -> None:
    assert json.loads((webui.root / "config.json").read_text())["gradio_interface_options"] == {"server_port": 7770}
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "modelhost"), "ps", "--address", host.address],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "webui:main" in done.stdout and "mms=eng" in done.stdout


def test_an_error_in_the_webuis_function_reaches_the_webui_as_a_gr_error_saying_what(webui, host) -> None:
    report = tree.run_webui(webui.main_python, webui.root, [{"call": "mms", "kwargs": {"text": "x", "language": "deu"}}],
                            env={"MODELHOST_ADDRESS": host.address})  # no German MMS in the (offline) cache
    error = report["calls"][0]["error"]
    assert error.startswith("gradio.exceptions.Error") and "modelhost (webui:main): OSError" in error
    assert _row(host, "webui:main")["state"] == "ready"  # the runner lives on


def test_an_uploaded_clip_travels_to_the_runner_and_the_extensions_own_error_comes_back(webui, host, first_mms) -> None:
    # Seamless M4T's "Audio to Speech" button: the clip (rate, int16 samples) crosses as an array; the extension then
    # calls its processor with `audios=`, which transformers 5 refuses: the WebUI shows that error, as in-process
    report = tree.run_webui(webui.main_python, webui.root, [{"call": "seamless_audio", "kwargs": {"audio": [0, 300, -300] * 800}}],
                            env={"MODELHOST_ADDRESS": host.address})
    error = report["calls"][0]["error"]
    assert error.startswith("gradio.exceptions.Error") and "modelhost (webui:main): ValueError" in error and "audio" in error
    row = _row(host, "webui:main")
    assert row["state"] == "ready" and report["loaded_here"] == []
