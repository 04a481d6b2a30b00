"""Light UI warm start: a fresh light UI instance to its first audio (host warm) vs a UI loading MusicGen in-process.

Measured side by side, interleaved, in one run:
  * light UI: spawn ``python -m webui_adapter`` (Python 3.10, Gradio, no torch), wait until it serves
    HTTP, then call ``/musicgen`` through gradio_client for 1 s of audio; the model is resident in the
    running host. Total = spawn to the audio file in hand.
  * in-process: a fresh process imports torch and audiocraft, loads the same MusicGen checkpoint and
    generates 1 s (what a WebUI restart costs today before its first audio). A WebUI also starts
    Gradio, so the in-process UI total is estimated as this plus the light UI's own Gradio start-up
    (import and launch, measured in the same run); both parts are printed.
Checkpoints as in ``warm_start`` (``--size real``: MusicGen-small's LM shape, T5 omitted, so the
in-process side is a lower bound). Needs .venv-py310 (``./setup.sh --test``).
Usage: python -m benchmarks.light_ui [--size tiny|real] [--reps N] [--json OUT]
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from benchmarks import machine, warm_start

PY310 = warm_start.ROOT / ".venv-py310" / "bin" / "python"


def light_ui_first_audio(host_address: str) -> dict[str, float]:
    """Spawn a light UI, wait for HTTP, generate once; seconds from spawn."""
    from gradio_client import Client as GradioClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    started = time.time()
    saves = tempfile.mkdtemp(prefix="mh-ui-")  # where its results are saved (outputs/...): never this checkout
    proc = subprocess.Popen([str(PY310), "-m", "webui_adapter", "--port", str(port), "--address", host_address,
                             "--webui", saves], cwd=warm_start.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"light UI exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        ready = time.time()
        GradioClient(url, verbose=False).predict(text="a calm piano melody", melody=None, model_name="musicgen", duration=1,
                                                 topk=50, topp=0, temperature=1, cfg_coef=3, seed=1,
                                                 use_multi_band_diffusion=False, api_name="/musicgen")
        done = time.time()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"ui_ready_s": ready - started, "first_audio_s": done - ready, "total_s": done - started}


def run(size: str, reps: int) -> dict:
    from modelhost.host.config import cache_dir
    from tests.support.launch import short_tmp, start_host

    files = warm_start.build(size, cache_dir() / "bench")
    host = start_host(f"""
        preload = ["musicgen"]
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{files['musicgen']}"
    """, folder=short_tmp("mh-lightui-"), timeout_s=600)
    light, local = [], []
    try:
        for _ in range(reps):  # interleaved, so both ways see the same machine state
            light.append(light_ui_first_audio(host.address))
            local.append(warm_start._spawn(warm_start.IN_PROCESS["musicgen"], str(files["musicgen"])))
    finally:
        host.stop()
    med = statistics.median
    gradio_start_s = med(r["ui_ready_s"] for r in light)
    in_process_s = med(r["total_s"] for r in local)
    light_s = med(r["total_s"] for r in light)
    return {
        "machine": machine.describe(), "size": size, "reps": reps,
        "light_ui": {k: med(r[k] for r in light) for k in ("ui_ready_s", "first_audio_s", "total_s")},
        "light_ui_runs": light,
        "in_process": {k: med(r[k] for r in local) for k in ("startup_s", "load_s", "generate_s", "total_s")},
        "in_process_ui_estimate_s": in_process_s + gradio_start_s,
        "ratio": (in_process_s + gradio_start_s) / light_s,
    }


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=3, sized=True)
    if not PY310.exists():
        raise SystemExit("benchmarks.light_ui needs .venv-py310 (Gradio on Python 3.10): run ./setup.sh --test")
    report = run(args.size, args.reps)
    light, local = report["light_ui"], report["in_process"]
    print(machine.line())
    print(f"size {args.size}; {args.reps} reps, medians; 1 s of MusicGen audio")
    print(f"light UI, host warm:  Gradio up {light['ui_ready_s']:.2f} s + first audio {light['first_audio_s']:.2f} s "
          f"= {light['total_s']:.2f} s from spawn")
    print(f"in-process model:     imports {local['startup_s']:.2f} s + load {local['load_s']:.2f} s + generate "
          f"{local['generate_s']:.2f} s = {local['total_s']:.2f} s from spawn")
    print(f"in-process UI (that + Gradio start-up {light['ui_ready_s']:.2f} s, estimate): {report['in_process_ui_estimate_s']:.2f} s")
    print(f"in-process UI / light UI on a warm host: {report['ratio']:.1f}x")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
