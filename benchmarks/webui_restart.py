"""A TTS-WebUI restart to its first audio of a non-audiocraft tab: the model warm in a WebUI runner on the host vs
loaded in the WebUI's own process, side by side in one run.

The WebUI is ``tests/support/webui_runner_tree``'s: TTS-WebUI's code (a checkout in ``$MODELHOST_TTS_WEBUI``, else
modelhost's stand-in), its main environment with the MMS and Seamless M4T extensions, random tiny models in the
hub's layout. Each sample is one new WebUI process (``tests/support/webui_process.py``: the WebUI's start, its
decorator loader, a tab's call through ``dictionarize``) from its start to the first call's audio:

* ``host_warm``: ``serve --webui`` runs, its ``webui:main`` runner has the model loaded (the WebUI loads none);
* ``in_process``: no host (``MODELHOST_WEBUI_FALLBACK=local``): the WebUI imports the model code and loads the
  model itself, as it does without modelhost.

Rounds alternate the two. With tiny random models a load costs little: the gap measured here is the model code's
imports and the load path; a real checkpoint's load time (Seamless M4T v2 large: 2.3 B parameters; not measured
here, no hub) adds to ``in_process`` only.

Usage: python -m benchmarks.webui_restart [--reps N] [--json OUT]
"""

from __future__ import annotations

import statistics
import time

from benchmarks import machine
from modelhost.client import Client
from tests.support import webui_runner_tree as tree
from tests.support.launch import short_tmp, start_host

CALLS = {"seamless": tree.SEAMLESS_CALL, "mms": tree.MMS_CALL}


def _first_audio_s(webui: tree.RunnerWebui, call: dict, env: dict[str, str]) -> float:
    started = time.perf_counter()
    report = tree.run_webui(webui.main_python, webui.root, [call], env=env)
    took = time.perf_counter() - started
    if "error" in report["calls"][0]:
        raise RuntimeError(f"the WebUI's call failed: {report['calls'][0]['error']}")
    return took


def measure(webui: tree.RunnerWebui, address: str, reps: int, warm_up: bool = True) -> dict:
    """The figures, on a laid-out WebUI and a host serving it at ``address`` (``serve --webui``); ``warm_up=False``
    where the runner already holds both models."""
    hosted = {"MODELHOST_ADDRESS": address}
    local = {"MODELHOST_ADDRESS": f"ipc://{webui.root}/nobody.sock", "MODELHOST_WEBUI_FALLBACK": "local"}
    for call in CALLS.values() if warm_up else ():  # the runner starts and loads each model before any sample
        _first_audio_s(webui, call, hosted)
    samples: dict[str, dict[str, list[float]]] = {name: {"host_warm": [], "in_process": []} for name in CALLS}
    for _ in range(reps):
        for name, call in CALLS.items():
            samples[name]["host_warm"].append(_first_audio_s(webui, call, hosted))
            samples[name]["in_process"].append(_first_audio_s(webui, call, local))
    with Client(address) as c:
        row = next(m for m in c.ps() if m["name"] == "webui:main")
    report: dict = {"machine": machine.describe(), "webui_code": webui.code, "reps": reps,
                    "runner_loads": row["details"]["loads"]}
    for name, by_path in samples.items():
        p50 = {path: statistics.median(values) for path, values in by_path.items()}
        report[name] = {"host_warm_p50_s": p50["host_warm"], "in_process_p50_s": p50["in_process"],
                        "in_process_over_host_warm": p50["in_process"] / p50["host_warm"], "samples_s": by_path}
    return report


def run(reps: int) -> dict:
    webui = tree.build_runner_webui(short_tmp("mh-wrb-"))
    host = start_host("", args=("--webui", str(webui.root)), env={"HF_HUB_OFFLINE": "1"}, timeout_s=120)
    try:
        return measure(webui, host.address, reps)
    finally:
        host.stop()


def main(argv: list[str] | None = None) -> int:
    args = machine.parse_args(__doc__, argv, default_reps=5)
    print(machine.line())
    why = tree.why_not_available()
    if why:  # no WebUI environments here (a plain ./setup.sh): nothing to measure
        print(f"webui_restart: {why}; nothing to measure here")
        machine.finish({"machine": machine.describe(), "skipped": why}, args.json)
        return 0
    report = machine.finish(run(args.reps), args.json)
    print(f"WebUI code: {report['webui_code']}")
    for name in CALLS:
        r = report[name]
        print(f"{name:<9} WebUI start to first audio p50: host warm {r['host_warm_p50_s']:.2f} s, "
              f"in-process {r['in_process_p50_s']:.2f} s ({r['in_process_over_host_warm']:.2f}x)")
    print(f"loads in the host's runner over the whole run: {report['runner_loads']} (one per model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
