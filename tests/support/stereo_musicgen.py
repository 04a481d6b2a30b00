"""A stereo MusicGen checkpoint folder with small random weights, built through audiocraft's own builders.

audiocraft's stereo MusicGen (``facebook/musicgen-stereo-*``) is a mono EnCodec whose codebooks the LM
predicts twice, left and right interleaved: the LM's config carries ``interleave_stereo_codebooks``
(``use: true``), twice the codebooks, and each delay twice (0, 0, 1, 1, ...); ``MusicGen.get_pretrained``
then wraps the compression model in ``InterleaveStereoCompressionModel`` and generates (1, 2, T).
The sizes are those of ``modelhost.host.random_weights.audiocraft_configs``. Runs in the calling thread.
"""

from __future__ import annotations

from pathlib import Path


def write_stereo_musicgen(folder: str | Path, *, seed: int = 0) -> Path:
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    from modelhost.host.random_weights import audiocraft_configs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lm_cfg, compression_cfg = audiocraft_configs("musicgen")
    n_q = compression_cfg["rvq"]["n_q"]
    lm_cfg["transformer_lm"]["n_q"] = 2 * n_q
    lm_cfg["codebooks_pattern"]["delay"]["delays"] = [d for d in range(n_q) for _ in ("left", "right")]
    lm_cfg["interleave_stereo_codebooks"] = {"use": True, "per_timestep": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        compression = builders.get_compression_model(OmegaConf.create(compression_cfg))
        compression.quantizer(torch.randn(8, 32, 64), 25)  # initialise the codebooks, as training would
        lm = builders.get_lm_model(OmegaConf.create(lm_cfg))
    torch.save({"xp.cfg": compression_cfg, "best_state": compression.state_dict()}, folder / "compression_state_dict.bin")
    torch.save({"xp.cfg": lm_cfg, "best_state": lm.state_dict()}, folder / "state_dict.bin")
    return folder
