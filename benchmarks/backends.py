"""The real backends in one host: start-up, memory per model, the shared-HuBERT saving, and one
MusicGen and one RVC request through the host vs the same backend in-process, side by side.

Checkpoints are random-weight ones in the real formats (host.random_weights), tiny by default, so the run
needs no download; the figures measure the host, not the model's quality.
Usage: python -m benchmarks.backends [--reps N] [--json OUT]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks import machine
from benchmarks.timing import compare, time_calls

MUSICGEN_PARAMS = {"duration": 1.0, "seed": 7, "top_k": 50}
RVC_PARAMS = {"f0_method": "pm"}


def _files(root: Path) -> dict[str, Path]:
    from modelhost.host import random_weights as weights

    return {
        "musicgen": weights.write_audiocraft(root / "musicgen", "musicgen"),
        "audiogen": weights.write_audiocraft(root / "audiogen", "audiogen"),
        "hubert": weights.write_hubert(root / "hubert_base.pt"),
        "a": weights.write_rvc_voice(root / "voices" / "a.pth", seed=1),
        "b": weights.write_rvc_voice(root / "voices" / "b.pth", seed=2),
        "voices": root / "voices",
    }


def _catalog(f: dict[str, Path]) -> str:
    return f"""
        preload = ["musicgen", "audiogen", "voices"]
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{f['musicgen']}"
        [models.audiogen]
        backend = "audiogen"
        checkpoint = "{f['audiogen']}"
        [models.voices]
        backend = "rvc"
        folder = "{f['voices']}"
        hubert = "{f['hubert']}"
    """


def _in_process(f: dict[str, Path], voice_input: np.ndarray, reps: int) -> dict[str, list[int]]:
    from modelhost.host.backends import GenerateRequest, RunContext, create_backend
    from modelhost.host.backends import ModelSpec

    ctx = RunContext.detached()
    musicgen = create_backend(ModelSpec("musicgen", "musicgen", options={"checkpoint": str(f["musicgen"])}))
    musicgen.load("cpu")
    voice = create_backend(ModelSpec("a", "rvc", options={"model": str(f["a"]), "hubert": str(f["hubert"])}))
    voice.load("cpu")
    return {
        "musicgen_1s": time_calls(lambda: musicgen.generate(GenerateRequest("calm piano", dict(MUSICGEN_PARAMS)), ctx), reps),
        "rvc_1s": time_calls(lambda: voice.generate(GenerateRequest(None, dict(RVC_PARAMS), voice_input, 16000), ctx), reps),
    }


def run(reps: int) -> dict:
    from modelhost.client import Client
    from tests.support.launch import short_tmp, start_host

    root = short_tmp("mh-bench-")
    f = _files(root)
    voice_input = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    started = time.perf_counter()
    host = start_host(_catalog(f), folder=root, timeout_s=300)
    startup_s = time.perf_counter() - started
    try:
        with Client(host.address) as c:
            ps = {m["name"]: m for m in c.ps()}
            remote = {
                "musicgen_1s": time_calls(lambda: c.generate("musicgen", "calm piano", params=MUSICGEN_PARAMS), reps),
                "rvc_1s": time_calls(lambda: c.generate("voices/a", audio=voice_input, sample_rate=16000, params=RVC_PARAMS), reps),
            }
    finally:
        host.stop()
    local = _in_process(f, voice_input, reps)
    hubert = ps["voices/a"]["details"]["shared"]["hubert"]
    return {
        "machine": machine.describe(),
        "reps": reps,
        "host_startup_s": round(startup_s, 2),
        "memory_bytes": {name: m["memory_bytes"] for name, m in ps.items()},
        "load_s": {name: m["load_s"] for name, m in ps.items()},
        "hubert": {"bytes": hubert["bytes"], "holders": hubert["holders"],
                   "saved_bytes": hubert["bytes"] * (hubert["holders"] - 1)},
        "requests": {name: compare(local[name], remote[name]) for name in remote},
    }


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=20)
    report = run(args.reps)
    print(machine.line())
    print(f"host start-up to ready (3 families, 4 models preloaded): {report['host_startup_s']:.2f} s")
    for name, nbytes in report["memory_bytes"].items():
        print(f"  {name:<14} {nbytes / 2**20:8.2f} MiB resident, loaded in {report['load_s'][name]:.2f} s")
    h = report["hubert"]
    print(f"HuBERT: {h['bytes'] / 2**20:.2f} MiB, held by {h['holders']} voices: {h['saved_bytes'] / 2**20:.2f} MiB saved")
    print(f"{'request':<12} {'in-proc p50':>12} {'host p50':>10} {'ratio':>7} {'overhead':>9}  (ms)")
    for name, r in report["requests"].items():
        print(f"{name:<12} {r['in_process_p50_ms']:>12.2f} {r['host_p50_ms']:>10.2f} {r['ratio_p50']:>7.2f} {r['overhead_p50_ms']:>9.2f}")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
