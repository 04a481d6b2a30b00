"""``magnet``: audiocraft's MAGNeT, text to music (and, audio-MAGNeT, to sound effects) by masked,
non-autoregressive decoding. Runs in the model's worker thread, like every backend.

Loading is MusicGen's (``musicgen.AudiocraftCheckpoint``): ``checkpoint`` is a hub id (the six MAGNeT
models: ``facebook/magnet-{small,medium}-{10,30}secs``, ``facebook/audio-magnet-{small,medium}``) read
from the Hugging Face cache (``hf_cache``), or a folder with ``state_dict.bin`` and
``compression_state_dict.bin``, loaded through audiocraft's own ``MAGNeT.get_pretrained``. A MAGNeT
always makes its checkpoint's segment (10 or 30 s); there is no duration.

Parameters are TTS-WebUI's MAGNeT tab's, with its names and defaults: ``decoding_steps_1``..``_4``
(80, 40, 40, 20: the decoding iterations of each codebook stage), ``use_sampling`` (true),
``top_k`` (0), ``top_p`` (0.95), ``temperature`` (1; annealed to 0 over each stage), ``max_cfg_coef``
(20) and ``min_cfg_coef`` (1) (classifier-free guidance, annealed from max to min),
``span_arrangement`` (``nonoverlap`` or ``stride1``), plus ``seed`` (-1 non-deterministic, 0 random and
reported, else that seed: the samples in-process audiocraft gives after ``torch.manual_seed(seed)``)
and ``return_tokens``.

Attention. MAGNeT's stages 2-4 attend only to nearby frames (a stage mask, ``subcodes_context``
frames either side). audiocraft's MAGNeT loader therefore selects xformers for the whole process
(``set_efficient_attention_backend``): its torch branch drops such masks (it runs causal attention
instead), so MAGNeT is wrong there, and xformers does not run on the CPU or where no wheel matches
torch. Here a load never changes that process-wide switch (MusicGen and AudioGen in the same runner
keep their own attention, and so their seeds' samples); by default (catalog ``attention = "torch"``)
the MAGNeT's own attention layers use audiocraft's plain-torch attention, which adds the stage masks
(``use_torch_attention``), on any device. ``attention = "xformers"`` keeps audiocraft's own choice,
xformers for every audiocraft model of the process (give such a model its own ``runner``); its load
fails where xformers cannot run.

Batching: unseeded requests with the same parameters share one ``generate(descriptions=[...])`` pass
(up to 8 rows unless the catalog's ``max_batch_size`` says); a seeded one runs alone. MAGNeT decodes
the whole segment at once: a streaming request gets its audio as one chunk at the end.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Hashable, Iterator, Sequence

import numpy as np
import torch

from modelhost.client.protocol.errors import BadParamsError, RequestError
from modelhost.host.backends import (
    BatchProgress,
    GenerateOutput,
    GenerateRequest,
    ModelSpec,
    RunContext,
    number_param,
)
from modelhost.host.backends.musicgen import AudiocraftCheckpoint
from modelhost.host.backends.params import bool_param, check_known, choice_param
from modelhost.host.backends.rng import GLOBAL_RNG, parse_seed

STAGES = 4  # every MAGNeT has 4 codebooks, and the WebUI's tab one decoding-steps slider per stage
MAX_DECODING_STEPS = 1000
SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")
ATTENTION = ("torch", "xformers")
# The WebUI tab's defaults (tts_webui_extension.audiocraft magnet_tab.py); "seed" and "return_tokens" apart,
# these are what rows of one batched pass must agree on.
DEFAULTS: dict[str, Any] = {
    "decoding_steps_1": 80, "decoding_steps_2": 40, "decoding_steps_3": 40, "decoding_steps_4": 20,
    "use_sampling": True, "top_k": 0, "top_p": 0.95, "temperature": 1.0, "max_cfg_coef": 20.0, "min_cfg_coef": 1.0,
    "span_arrangement": "nonoverlap", "return_tokens": False,
}
_PARAMS = {*DEFAULTS, "seed"}
# audiocraft.modules.transformer's backend switch is process-wide: one load may swap it out at a time
_SWITCH_LOCK = threading.Lock()


class MagnetBackend(AudiocraftCheckpoint):
    """``backend = "magnet"``."""

    family = "magnet"
    example_checkpoint = "facebook/magnet-small-10secs"
    options = AudiocraftCheckpoint.options | {"attention"}
    batch_rows = 8

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.attention = spec.options.get("attention", "torch")
        if self.attention not in ATTENTION:
            raise ValueError(f"[models.{spec.name}]: attention must be \"torch\" (MAGNeT's own layers, any device) or "
                             f"\"xformers\" (audiocraft's choice, process-wide; CUDA with a matching xformers), "
                             f"got {self.attention!r}")
        self.segment_s: float | None = None  # the length every generation has, known once loaded

    # ---- loading ----

    def _get_pretrained(self, name: str, device: str) -> Any:
        from audiocraft.models import MAGNeT
        from audiocraft.modules import transformer

        with _loader_switch_held():
            model = MAGNeT.get_pretrained(name, device=device)
        if model.lm.n_q != STAGES:
            raise ValueError(f"a MAGNeT with {model.lm.n_q} codebooks; the WebUI's tab and this backend decode {STAGES}")
        if self.attention == "xformers":
            problem = xformers_problem(device, next(model.lm.parameters()).dtype)
            if problem:
                raise RuntimeError(f"attention = \"xformers\" but xformers cannot run on {device} here ({problem}); "
                                   "use attention = \"torch\"")
            transformer.set_efficient_attention_backend("xformers")  # process-wide, as audiocraft's loader does
        else:
            use_torch_attention(model.lm)
        self.segment_s = float(model.duration)
        return model

    # The stage masks are plain tensors on the LM, not buffers: they travel with the weights by hand.

    def offload(self) -> None:
        super().offload()
        pin = torch.cuda.is_available()
        self._move_masks(lambda m: m.to("cpu").pin_memory() if pin else m.to("cpu"))

    def restore(self, device: str) -> None:
        super().restore(device)
        self._move_masks(lambda m: m.to(device))

    def _move_masks(self, move) -> None:
        lm = self.model.lm
        lm.attn_mask_per_stage = [None if m is None else move(m) for m in lm.attn_mask_per_stage]

    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        masks = [m for m in self.model.lm.attn_mask_per_stage if m is not None]
        return super().memory_bytes() + sum(m.numel() * m.element_size() for m in masks)

    def details(self) -> dict[str, Any]:
        return {"attention": self.attention, "segment_s": self.segment_s}

    def warmup(self) -> None:
        steps = {f"decoding_steps_{i}": 1 for i in range(1, STAGES + 1)}
        self.generate(GenerateRequest("warm-up", {**steps, "seed": 1}), RunContext.detached())

    # ---- generation ----

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        model = self.model
        assert model is not None, "generate before load"
        params = self._check_params(request)
        seed, reported_seed = parse_seed(params.pop("seed", -1))
        return_tokens = params.pop("return_tokens")
        model.set_generation_params(**params)
        model.set_custom_progress_callback(ctx.progress)
        with GLOBAL_RNG.run(seed):
            wav, tokens = model.generate([request.prompt or ""], progress=True, return_tokens=True)
        return self._output(wav[0], tokens[0], ctx, {"seed": reported_seed}, return_tokens)

    def batch_key(self, request: GenerateRequest) -> Hashable | None:
        """Unseeded requests with equal parameters share a pass; the rest run alone."""
        params = request.params
        if request.audio is not None or set(params) - _PARAMS:
            return None
        seed = params.get("seed", -1)
        if isinstance(seed, bool) or seed != -1:  # seeded (or 0: a fresh seed, reported to reproduce it)
            return None
        key = []
        for name, default in DEFAULTS.items():
            value = params.get(name, default)
            if not isinstance(value, (int, float, str)):  # bool is an int
                return None  # a bad value: alone, where its own error names it
            key.append((type(value) is bool, value))  # True and 1 are different requests (one is refused)
        return tuple(key)

    def audio_seconds(self, request: GenerateRequest) -> float | None:
        return self.segment_s  # a float written once by the load: safe to read from the core thread

    def generate_batch(self, requests: Sequence[GenerateRequest],
                       ctxs: Sequence[RunContext]) -> list[GenerateOutput | RequestError]:
        """Rows with equal ``batch_key``: one ``model.generate(descriptions)`` call (one random stream),
        ``wav[i]`` to row i; a row whose parameters are refused gets its error and no row in the pass."""
        model = self.model
        assert model is not None, "generate before load"
        out: list[GenerateOutput | RequestError | None] = [None] * len(requests)
        rows: list[int] = []
        params: dict[str, Any] = {}
        for i, request in enumerate(requests):
            try:
                params = self._check_params(request)
                rows.append(i)
            except RequestError as exc:
                out[i] = exc
        if rows:
            params.pop("seed", None)
            return_tokens = params.pop("return_tokens")
            model.set_generation_params(**params)
            progress = BatchProgress([ctxs[i] for i in rows])
            model.set_custom_progress_callback(progress.progress)
            with GLOBAL_RNG.unseeded():
                wav, tokens = model.generate([requests[i].prompt or "" for i in rows], progress=True, return_tokens=True)
            for n, i in enumerate(rows):
                out[i] = progress.stopped.get(n) or self._output(wav[n], tokens[n], ctxs[i], {"seed": -1}, return_tokens)
        return [o for o in out if o is not None]  # every row was filled

    # ---- helpers ----

    def _output(self, wav: torch.Tensor, tokens: torch.Tensor, ctx: RunContext, info: dict[str, Any],
                return_tokens: bool) -> GenerateOutput:
        audio = wav.float().cpu().numpy()
        rate = int(self.model.sample_rate)
        if ctx.streaming:  # decoded all at once: the stream is the whole audio, in one chunk
            ctx.chunk(audio, rate, 0)
        if return_tokens:
            info["tokens"] = tokens.cpu().numpy().astype(np.int32)
        return GenerateOutput(audio=audio, sample_rate=rate, info=info)

    def _check_params(self, request: GenerateRequest) -> dict[str, Any]:
        """The request's parameters as ``set_generation_params`` takes them, plus ``seed`` and ``return_tokens``;
        BadParamsError names the first that is out of range."""
        params = dict(request.params)
        check_known(params, _PARAMS, f"a {self.family} model")
        if request.audio is not None:
            raise BadParamsError(f"model {self.name!r} takes text only (MAGNeT has no melody or audio prompt)")
        steps = [number_param(params, f"decoding_steps_{i}", DEFAULTS[f"decoding_steps_{i}"], 1, MAX_DECODING_STEPS,
                              integer=True) for i in range(1, STAGES + 1)]
        out: dict[str, Any] = {
            "use_sampling": bool_param(params, "use_sampling", DEFAULTS["use_sampling"]),
            "top_k": number_param(params, "top_k", DEFAULTS["top_k"], 0, int(self.model.lm.card), integer=True),
            "top_p": number_param(params, "top_p", DEFAULTS["top_p"], 0.0, 1.0),
            "temperature": number_param(params, "temperature", DEFAULTS["temperature"], 0.0, 100.0),
            "max_cfg_coef": number_param(params, "max_cfg_coef", DEFAULTS["max_cfg_coef"], 0.0, 100.0),
            "min_cfg_coef": number_param(params, "min_cfg_coef", DEFAULTS["min_cfg_coef"], 0.0, 100.0),
            "decoding_steps": steps,
            "span_arrangement": choice_param(params, "span_arrangement", DEFAULTS["span_arrangement"], SPAN_ARRANGEMENTS),
            "return_tokens": bool_param(params, "return_tokens", False),
        }
        if "seed" in params:
            out["seed"] = params["seed"]
        return out


def use_torch_attention(lm: Any) -> None:
    """Make a loaded MAGNeT LM's attention independent of audiocraft's process-wide backend switch, with its
    stage masks applied: each attention layer takes audiocraft's plain-torch path (``memory_efficient``
    off: softmax(q·kᵀ/√d + mask)·v written with torch ops, the layer's own code), and its mask loses the
    padding to a multiple of 8 that only xformers wants (audiocraft's memory-efficient branch trims it
    the same way, to the query's length). Idempotent; in-process audiocraft gets the same attention by
    calling this on ``model.lm``."""
    from audiocraft.modules.transformer import StreamingMultiheadAttention

    for module in lm.modules():
        if isinstance(module, StreamingMultiheadAttention) and module.memory_efficient:
            module.memory_efficient = False
            module.register_forward_pre_hook(_unpadded_mask, with_kwargs=True)


def _unpadded_mask(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    mask = kwargs.get("attn_mask")
    if mask is None:
        return None
    length = args[0].shape[1]  # (batch, time, dim) queries
    return args, {**kwargs, "attn_mask": mask[..., :length, :length]}


def xformers_problem(device: str, dtype: torch.dtype) -> str | None:
    """Why xformers' memory-efficient attention with an attention bias cannot run on ``device``, or None."""
    try:
        from xformers.ops import memory_efficient_attention

        q = torch.zeros((1, 8, 1, 8), device=device, dtype=dtype)
        memory_efficient_attention(q, q, q, torch.zeros((1, 1, 8, 8), device=device, dtype=dtype))
    except Exception as exc:  # no kernel for this device or dtype, a wheel built for another torch, ...
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


@contextmanager
def _loader_switch_held() -> Iterator[list[str]]:
    """audiocraft's ``load_lm_model_magnet`` calls ``set_efficient_attention_backend("xformers")``, a process-wide
    switch that would change the attention of every MusicGen/AudioGen of the process (it runs during the
    load, so even mid-generation in another thread). For one load, that call only records what it asked
    for. The loader imports the function by name when it runs, so the module attribute is what it calls."""
    from audiocraft.modules import transformer

    asked: list[str] = []
    with _SWITCH_LOCK:
        real = transformer.set_efficient_attention_backend
        transformer.set_efficient_attention_backend = asked.append
        try:
            yield asked
        finally:
            transformer.set_efficient_attention_backend = real
