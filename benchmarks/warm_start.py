"""Warm start: a fresh WebUI-side process to its first audio, in-process vs through a warm host.

Two ways, in one run, several repetitions each, for MusicGen and for an RVC voice:
  * in-process (today's way): a new Python process imports torch and the model library, loads the
    model from its checkpoint on disk, and generates;
  * through the host: a new Python process imports the client, connects to the running host (the
    model is resident there) and generates.
Each is split into start-up (interpreter + imports), load, and generation, and the total is
measured by the parent from spawning the process to the child holding its first audio.

Checkpoints are random weights in the real formats: ``--size real`` uses MusicGen-small's published
LM shape (dim 1024, 24 layers, 16 heads, 4 x 2048 codebooks; ~420 M parameters with cross-attention,
1.7 GB) with EnCodec-32k's shape, and an RVC v2 40 kHz voice with a HuBERT-base-sized HuBERT;
``--size tiny`` uses the test sizes. Text conditioning is audiocraft's lookup table, not T5, so the
in-process load here omits T5-base (~0.9 GB more in real MusicGen): the in-process figures are a
lower bound. Built checkpoints are kept in ``$MODELHOST_CACHE_DIR/bench`` (else ~/.cache/modelhost/bench).
Usage: python -m benchmarks.warm_start [--size tiny|real] [--reps N] [--json OUT]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import machine

ROOT = Path(__file__).resolve().parent.parent

IN_PROCESS = {
    "musicgen": """
import time, json, sys
t0 = time.time()
import torch, audiocraft.models
t1 = time.time()
model = audiocraft.models.MusicGen.get_pretrained(sys.argv[1], device="cpu")
model.set_generation_params(duration=1.0, top_k=50)
t2 = time.time()
torch.manual_seed(1)
audio = model.generate(["a calm piano melody"])
t3 = time.time()
print(json.dumps({"imported": t1, "loaded": t2, "audio": t3, "import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}))
""",
    "rvc": """
import time, json, sys
t0 = time.time()
import numpy as np, torch
from modelhost.host.backends import GenerateRequest, RunContext
from modelhost.host.backends.rvc import RvcBackend
from modelhost.host.backends import ModelSpec
import rvc_python.modules.vc.modules, fairseq
t1 = time.time()
voice = RvcBackend(ModelSpec("v", "rvc", options={"model": sys.argv[1], "hubert": sys.argv[2]}))
voice.load("cpu")
t2 = time.time()
x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
voice.generate(GenerateRequest(None, {"f0_method": "pm"}, x, 16000), RunContext.detached())
t3 = time.time()
print(json.dumps({"imported": t1, "loaded": t2, "audio": t3, "import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}))
""",
}

THROUGH_HOST = """
import time, json, sys
t0 = time.time()
import numpy as np
from modelhost.client import Client
t1 = time.time()
with Client(sys.argv[1]) as c:
    t2 = time.time()
    if sys.argv[2] == "musicgen":
        c.generate("musicgen", "a calm piano melody", params={"duration": 1.0, "top_k": 50, "seed": 1})
    else:
        x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
        c.generate("voice", audio=x, sample_rate=16000, params={"f0_method": "pm"})
    t3 = time.time()
print(json.dumps({"imported": t1, "loaded": t2, "audio": t3, "import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}))
"""


def build(size: str, cache: Path) -> dict[str, Path]:
    """The checkpoints for ``size``, written once into ``cache``."""
    from modelhost.host import random_weights as weights

    folder = cache / size
    files = {"musicgen": folder / "musicgen", "voice": folder / "voice.pth", "hubert": folder / "hubert_base.pt"}
    if not (files["musicgen"] / "state_dict.bin").is_file():
        sizes = {}
        if size == "real":
            sizes = {"dim": 1024, "layers": 24, "heads": 16, "card": 2048, "n_q": 4, "seanet_filters": 64}
        weights.write_audiocraft(files["musicgen"], "musicgen", **sizes)
    if not files["voice"].is_file():
        weights.write_rvc_voice(files["voice"], config=weights.REAL_RVC_V2_40K_CONFIG if size == "real" else None)
    if not files["hubert"].is_file():
        big = {"layers": 12, "ffn_dim": 3072, "conv_dim": 512, "heads": 12} if size == "real" else {}
        weights.write_hubert(files["hubert"], **big)
    return files


def _spawn(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "3000000"}
    started = time.time()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    phases["total_s"] = phases["audio"] - started
    phases["startup_s"] = phases["imported"] - started  # interpreter start + imports
    return phases


def _summary(runs: list[dict]) -> dict:
    return {phase: {"min": min(r[phase] for r in runs), "median": statistics.median(r[phase] for r in runs),
                    "max": max(r[phase] for r in runs)} for phase in ("startup_s", "load_s", "generate_s", "total_s")}


def run(size: str, reps: int, cache: Path) -> dict:
    from tests.support.launch import short_tmp, start_host

    files = build(size, cache)
    host = start_host(f"""
        preload = ["musicgen", "voice"]
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{files['musicgen']}"
        [models.voice]
        backend = "rvc"
        model = "{files['voice']}"
        hubert = "{files['hubert']}"
    """, folder=short_tmp("mh-warm-"), timeout_s=600)
    results: dict[str, dict] = {}
    try:
        for family in ("musicgen", "rvc"):
            args = (str(files["musicgen"]),) if family == "musicgen" else (str(files["voice"]), str(files["hubert"]))
            local, remote = [], []
            for _ in range(reps):  # interleaved, so both ways see the same machine state
                local.append(_spawn(IN_PROCESS[family], *args))
                remote.append(_spawn(THROUGH_HOST, host.address, family))
            summary_local, summary_remote = _summary(local), _summary(remote)
            results[family] = {
                "in_process": summary_local, "through_host": summary_remote,
                "ratio_total_median": summary_local["total_s"]["median"] / summary_remote["total_s"]["median"],
            }
    finally:
        host.stop()
    checkpoint_bytes = sum(f.stat().st_size for f in files["musicgen"].iterdir())
    return {"machine": machine.describe(), "size": size, "reps": reps, "musicgen_checkpoint_bytes": checkpoint_bytes,
            "voice_bytes": files["voice"].stat().st_size, "hubert_bytes": files["hubert"].stat().st_size, "results": results}


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=3, sized=True)
    from modelhost.host.config import cache_dir

    report = run(args.size, args.reps, cache_dir() / "bench")
    print(machine.line())
    print(f"size {args.size}: musicgen checkpoint {report['musicgen_checkpoint_bytes'] / 1e9:.2f} GB, voice "
          f"{report['voice_bytes'] / 1e6:.0f} MB, hubert {report['hubert_bytes'] / 1e6:.0f} MB; {args.reps} reps, median (min-max) s")
    print(f"{'':<10} {'way':<13} {'start-up':>20} {'load':>20} {'generate':>20} {'total':>20}")
    for family, r in report["results"].items():
        for way in ("in_process", "through_host"):
            cells = [f"{r[way][p]['median']:.2f} ({r[way][p]['min']:.2f}-{r[way][p]['max']:.2f})"
                     for p in ("startup_s", "load_s", "generate_s", "total_s")]
            print(f"{family:<10} {way:<13} " + " ".join(f"{c:>20}" for c in cells))
        print(f"{family:<10} in-process / through host (total, median): {r['ratio_total_median']:.1f}x")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
