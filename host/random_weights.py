"""Random-weight checkpoints in the formats real users have, built with the libraries' own classes.

For tests, benchmarks and the offline default catalog: nothing here downloads. Each writer builds
the model through the library's own constructors, saves it the way the real checkpoints are saved,
and the backends load it back through the same loaders as a real checkpoint:

* ``write_audiocraft``: an audiocraft checkpoint folder (``state_dict.bin`` and
  ``compression_state_dict.bin``, each ``{"xp.cfg": ..., "best_state": ...}``) for MusicGen or
  AudioGen, loadable with ``MusicGen.get_pretrained(folder)``. Text conditioning is a lookup table
  (audiocraft's ``lut`` conditioner), so no T5 download is needed.
* ``write_magnet``: the same folder for MAGNeT (``transformer_lm_magnet``: non-causal, memory-efficient
  attention, parallel codebooks, span masking), music at 32 kHz or audio-MAGNeT at 16 kHz, loadable with
  ``MAGNeT.get_pretrained(folder)``.
* ``write_hubert``: a fairseq HuBERT checkpoint (``hubert_base.pt`` format).
* ``write_rvc_voice``: an RVC v2 voice ``.pth`` (``{"config", "weight", "f0", "version"}``).
* ``write_faiss_index``: an RVC-style IVF ``.index`` of 768-d features.
* ``write_rmvpe``: RMVPE pitch-model weights (``rmvpe.pt``).

Runs in whatever thread calls it; imports the heavy libraries on call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

# A tiny v2 voice (hop 320 at 32 kHz, like the real 32k voices); shapes as RVC's own configs list them.
TINY_RVC_CONFIG: list[Any] = [513, 32, 16, 16, 32, 2, 1, 3, 0, "1", [3], [[1, 3, 5]], [10, 8, 2, 2], 32,
                              [20, 16, 4, 4], 1, 16, 32000]
# RVC's published v2 40 kHz configuration: a voice of real size (~55 M parameters).
REAL_RVC_V2_40K_CONFIG: list[Any] = [1025, 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11],
                                     [[1, 3, 5], [1, 3, 5], [1, 3, 5]], [10, 10, 2, 2], 512, [16, 16, 4, 4],
                                     109, 256, 40000]

_SAMPLE_RATES = {"musicgen": 32000, "audiogen": 16000}
_RATIOS = {32000: [10, 8, 16], 16000: [10, 8, 8]}  # 25 Hz frames, as audiocraft's debug models


def audiocraft_configs(kind: str, *, dim: int = 32, layers: int = 2, heads: int = 4, n_q: int = 4,
                       card: int = 256, seanet_filters: int = 4, segment_duration_s: float = 30.0,
                       memory_efficient: bool = False) -> tuple[dict, dict]:
    """The ``xp.cfg`` of the LM and of the compression model, as plain dicts the builders accept.
    ``memory_efficient``: attention as the published MusicGen/AudioGen configs have it (audiocraft's
    efficient-attention backend, a process-wide switch, then picks its implementation)."""
    sample_rate = _SAMPLE_RATES[kind]
    lm_cfg = {
        "lm_model": "transformer_lm",
        "device": "cpu",
        "dtype": "float32",
        "dataset": {"segment_duration": segment_duration_s},
        "transformer_lm": {
            "n_q": n_q, "card": card, "dim": dim, "num_heads": heads, "num_layers": layers, "hidden_scale": 4,
            "norm_first": True, "causal": True, "memory_efficient": memory_efficient, "positional_embedding": "sin",
            "bias_proj": False, "bias_ff": False, "bias_attn": False,
        },
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": list(range(n_q))}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.1, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
                  "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "lut", "lut": {"n_bins": 256, "dim": dim, "tokenizer": "noop"}}},
    }
    compression_cfg = {
        "compression_model": "encodec",
        "device": "cpu",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 32, "channels": 1, "n_filters": seanet_filters, "n_residual_layers": 1,
                   "ratios": _RATIOS[sample_rate], "encoder": {}, "decoder": {}},
        "rvq": {"n_q": n_q, "bins": card},
    }
    return lm_cfg, compression_cfg


def write_audiocraft(folder: str | Path, kind: str = "musicgen", *, seed: int = 0, **sizes: Any) -> Path:
    """A MusicGen (32 kHz) or AudioGen (16 kHz) checkpoint folder with random weights."""
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    lm_cfg, compression_cfg = audiocraft_configs(kind, **sizes)
    return _write_audiocraft_folder(folder, lm_cfg, compression_cfg, seed,
                                    lambda compression: builders.get_lm_model(OmegaConf.create(lm_cfg)))


def _write_audiocraft_folder(folder: str | Path, lm_cfg: dict, compression_cfg: dict, seed: int,
                             build_lm: Callable[[Any], Any]) -> Path:
    """Build the compression model (codebooks initialised) and then the LM (``build_lm(compression)``) from
    ``seed``, and write both as audiocraft's checkpoint files: the one path of every audiocraft family."""
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        compression = builders.get_compression_model(OmegaConf.create(compression_cfg))
        compression.quantizer(torch.randn(8, 32, 64), 25)  # initialise the codebooks (k-means init), as training would
        lm = build_lm(compression)
    torch.save({"xp.cfg": compression_cfg, "best_state": compression.state_dict()}, folder / "compression_state_dict.bin")
    torch.save({"xp.cfg": lm_cfg, "best_state": lm.state_dict()}, folder / "state_dict.bin")
    return folder


# MAGNeT's flavours: music (MusicGen's 32 kHz EnCodec) and audio-MAGNeT (AudioGen's 16 kHz one).
_MAGNET_CODECS = {"magnet": "musicgen", "audio-magnet": "audiogen"}


def magnet_configs(kind: str = "magnet", *, segment_duration_s: int = 2, subcodes_context: int = 5, span_len: int = 3,
                   **sizes: Any) -> tuple[dict, dict]:
    """The ``xp.cfg`` of a MAGNeT LM and of its compression model, as the published ones are laid out
    (audiocraft's ``config/solver/magnet/magnet_32khz.yaml``): the keys MAGNeT's loader fills in from the
    compression model and the dataset hold the solver's placeholders."""
    lm_cfg, compression_cfg = audiocraft_configs(_MAGNET_CODECS[kind], segment_duration_s=int(segment_duration_s), **sizes)
    lm_cfg["lm_model"] = "transformer_lm_magnet"
    lm_cfg["transformer_lm"].update({
        "causal": False, "memory_efficient": True, "subcodes_context": subcodes_context,
        "compression_model_framerate": 50, "segment_duration": 0, "span_len": -1,  # set by load_lm_model_magnet
    })
    lm_cfg["codebooks_pattern"] = {"modeling": "parallel", "parallel": {"empty_initial": -1}}
    lm_cfg["masking"] = {"span_len": span_len}
    return lm_cfg, compression_cfg


def write_magnet(folder: str | Path, kind: str = "magnet", *, seed: int = 0, **sizes: Any) -> Path:
    """A MAGNeT (``kind`` "magnet", 32 kHz) or audio-MAGNeT ("audio-magnet", 16 kHz) checkpoint folder with
    random weights; ``segment_duration_s`` (an int, as MAGNeT's masks need) is the length it always makes."""
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    lm_cfg, compression_cfg = magnet_configs(kind, **sizes)

    def build_lm(compression: Any) -> Any:
        build_cfg = OmegaConf.create(lm_cfg)  # what load_lm_model_magnet hands the builder
        build_cfg.transformer_lm.compression_model_framerate = int(compression.frame_rate)
        build_cfg.transformer_lm.segment_duration = build_cfg.dataset.segment_duration
        build_cfg.transformer_lm.span_len = build_cfg.masking.span_len
        return builders.get_lm_model(build_cfg)

    return _write_audiocraft_folder(folder, lm_cfg, compression_cfg, seed, build_lm)


def write_hubert(path: str | Path, *, layers: int = 2, ffn_dim: int = 256, conv_dim: int = 64, heads: int = 4,
                 seed: int = 0) -> Path:
    """A fairseq HuBERT checkpoint (768-d features, as RVC v2 expects; conv stride 320 like the real one)."""
    from fairseq.data.dictionary import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    conv = f"[({conv_dim},10,5)] + [({conv_dim},3,2)] * 4 + [({conv_dim},2,2)] * 2"
    task_cfg = {"_name": "hubert_pretraining", "data": "unused", "labels": ["km"], "label_rate": 50.0,
                "sample_rate": 16000, "normalize": False, "fine_tuning": False}
    model_cfg = {"_name": "hubert", "label_rate": 50.0, "encoder_layers": layers, "encoder_embed_dim": 768,
                 "encoder_ffn_embed_dim": ffn_dim, "encoder_attention_heads": heads, "conv_feature_layers": conv,
                 "final_dim": 256, "extractor_mode": "default"}
    dictionary = Dictionary()
    for i in range(100):
        dictionary.add_symbol(str(i))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HubertModel(
            OmegaConf.merge(OmegaConf.structured(HubertConfig), {k: v for k, v in model_cfg.items() if k != "_name"}),
            OmegaConf.merge(OmegaConf.structured(HubertPretrainingConfig), {k: v for k, v in task_cfg.items() if k != "_name"}),
            [dictionary],
        )
    state = {
        "cfg": {"_name": None, "common": {}, "task": task_cfg, "model": model_cfg},
        "model": model.state_dict(),
        "task_state": {"dictionaries": [dictionary]},
        "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "args": None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_rvc_voice(path: str | Path, *, config: list[Any] | None = None, seed: int = 0) -> Path:
    """An RVC v2 voice with pitch (f0) and random weights, saved as RVC's training does."""
    from rvc_python.lib.infer_pack.models import SynthesizerTrnMs768NSFsid

    config = list(config or TINY_RVC_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SynthesizerTrnMs768NSFsid(*config, is_half=False)
    weight = {k: v.half() for k, v in net.state_dict().items() if not k.startswith("enc_q")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config, "weight": weight, "f0": 1, "version": "v2", "info": "modelhost random weights",
                "sr": f"{config[-1] // 1000}k"}, path)
    return path


def write_faiss_index(path: str | Path, *, vectors: int = 512, lists: int = 8, seed: int = 0) -> Path:
    """An IVF-Flat index over 768-d features, built as RVC's training builds its ``added_*.index``."""
    import faiss

    feats = np.random.default_rng(seed).standard_normal((vectors, 768)).astype(np.float32)
    index = faiss.index_factory(768, f"IVF{lists},Flat")
    faiss.extract_index_ivf(index).nprobe = 1
    index.train(feats)
    index.add(feats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return path


def write_rmvpe(path: str | Path, *, seed: int = 0) -> Path:
    """RMVPE weights (the real architecture, ~90 M parameters), as ``rmvpe.pt`` is saved."""
    from rvc_python.lib.rmvpe import E2E

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = E2E(4, 1, (2, 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
