"""Swap-in from the warm CPU tier vs a cold load from disk, for one real-sized model, side by side.

Needs a CUDA device (the warm tier exists only beside a GPU); elsewhere it says so and exits 0.
The model is a synth with ~300 M parameters (1.2 GB of float32 weights, MusicGen-small's size),
written as a checkpoint file so the cold load reads it from disk like a real one.
Usage: python -m benchmarks.swap [--reps N] [--json OUT]
"""

from __future__ import annotations

from benchmarks import machine
from benchmarks.timing import pct_ms


def run(reps: int) -> dict:
    from modelhost.client import Client
    from modelhost.host.backends.synth import save_checkpoint
    from tests.support.launch import short_tmp, start_host

    root = short_tmp("mh-swap-")
    ckpt = save_checkpoint(root / "big.pt", {"width": 7600, "depth": 5, "hop": 320})
    size = ckpt.stat().st_size
    host = start_host(f"""
        [budget]
        cuda = {int(size * 1.5)}
        warm = {int(size * 3)}
        [models.a]
        backend = "synth"
        checkpoint = "{ckpt}"
        device = "cuda"
        [models.b]
        backend = "synth"
        checkpoint = "{ckpt}"
        device = "cuda"
    """, folder=root, timeout_s=600)
    cold, swap = [], []
    try:
        with Client(host.address) as c:
            for _ in range(reps):
                c.unload("a")
                c.generate("a", params={"duration_s": 0.01})  # cold: from the file on disk
                cold.append(int({m["name"]: m for m in c.ps()}["a"]["load_s"] * 1e9))
                c.generate("b", params={"duration_s": 0.01})  # evicts a to the warm tier
                c.generate("a", params={"duration_s": 0.01})  # swaps a back in (b goes warm)
                swap.append(int({m["name"]: m for m in c.ps()}["a"]["swap_in_s"] * 1e9))
                c.unload("b")
    finally:
        host.stop()
    return {"machine": machine.describe(), "reps": reps, "model_bytes": size,
            "cold_load_p50_ms": pct_ms(cold, 0.5), "swap_in_p50_ms": pct_ms(swap, 0.5),
            "ratio_cold_over_swap": pct_ms(cold, 0.5) / pct_ms(swap, 0.5),
            "swap_gb_per_s": size / 1e9 / (pct_ms(swap, 0.5) / 1e3)}


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=5)
    print(machine.line())
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: the warm tier exists only beside a GPU; nothing to measure here")
        return machine.finish({"machine": machine.describe(), "skipped": "no CUDA device"}, args.json)
    report = run(args.reps)
    print(f"model {report['model_bytes'] / 1e9:.2f} GB: cold load p50 {report['cold_load_p50_ms']:.0f} ms, "
          f"swap-in p50 {report['swap_in_p50_ms']:.0f} ms ({report['swap_gb_per_s']:.1f} GB/s), "
          f"cold/swap {report['ratio_cold_over_swap']:.1f}x")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
