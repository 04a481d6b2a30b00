"""What needs a CUDA device: the warm CPU tier. Skipped (with the reason) on CPU-only machines; the
CPU-only behaviour, where the tiers collapse to resident/unloaded, is covered in test_residency."""

from __future__ import annotations

import pytest

from modelhost.client import Client
from tests.support.launch import start_host

pytestmark = pytest.mark.gpu

MODEL = 'backend = "synth"\nparameters = 50000000\ndevice = "cuda"'  # ~200 MB of float32 weights


def test_an_evicted_gpu_model_goes_warm_and_swaps_back_in() -> None:
    h = start_host(f"""
        [budget]
        cuda = {int(200e6 * 1.5)}
        warm = "4GiB"
        [models.a]
        {MODEL}
        [models.b]
        {MODEL}
    """)
    try:
        with Client(h.address) as c:
            c.generate("a", params={"duration_s": 0.1})
            c.generate("b", params={"duration_s": 0.1})
            ps = {m["name"]: m for m in c.ps()}
            assert ps["a"]["tier"] == "warm" and ps["b"]["tier"] == "gpu"
            warm = {d["device"]: d for d in c.devices()}
            assert warm["warm"]["used_by_models_bytes"] == ps["a"]["memory_bytes"]
            out = c.generate("a", params={"duration_s": 0.1, "seed": 3})
            ps = {m["name"]: m for m in c.ps()}
            assert ps["a"]["tier"] == "gpu" and ps["a"]["swap_in_s"] is not None and ps["a"]["loads"] == 1
            assert ps["b"]["tier"] == "warm"
            assert out.audio.size == 3200
    finally:
        h.stop()
