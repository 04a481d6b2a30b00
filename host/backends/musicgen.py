"""``musicgen`` and ``audiogen``: audiocraft's text-to-music and text-to-sound models.

Loading goes through audiocraft's own ``MusicGen.get_pretrained`` / ``AudioGen.get_pretrained``, so
``checkpoint`` is what audiocraft accepts: a hub id (``facebook/musicgen-small``, ``-medium``,
``-large``, ``-melody``, stereo variants, ``facebook/audiogen-medium``), found in the Hugging Face
cache or ``$AUDIOCRAFT_CACHE_DIR``, or a local folder with ``state_dict.bin`` and
``compression_state_dict.bin``. Parameters follow TTS-WebUI: ``duration`` (s), ``top_k``, ``top_p``,
``temperature``, ``cfg_coef``, ``seed`` (-1 non-deterministic, 0 random, else fixed),
``return_tokens``, ``use_multi_band_diffusion``; melody models also take input ``audio`` (the
melody) with its ``sample_rate``. The same seed and parameters give the same samples as calling
audiocraft in-process on the same device.

A hub id is looked up in the Hugging Face cache (``hf_cache``, else ``$AUDIOCRAFT_CACHE_DIR``, else
the standard cache) and loaded from its cached snapshot, so no request goes to the hub when it is
there; with ``hf_cache`` set (a TTS-WebUI's cache) a missing download is a load error that names the
command to fetch it, and the load also looks for audiocraft's text encoder (T5) in that cache.

Catalog options: ``checkpoint`` (required), ``max_duration_s`` (default 360, TTS-WebUI's maximum),
``stream_interval_s`` (default 2: seconds of audio between a streaming request's chunks),
``allow_pickle`` (default false: checkpoints load weights-only; set true only for files you trust
that need full unpickling, such as some AudioGen releases), ``hf_cache`` (a hub cache folder).

Batching: unseeded text-only requests with the same sampling parameters (duration, top_k, top_p,
temperature, cfg_coef, return_tokens) share one audiocraft call, ``descriptions=[...]``, one row
per request (up to 8 rows unless the catalog's ``max_batch_size`` says). A seeded request, a
streaming one, a melody or multi-band diffusion runs alone: its audio is exactly what it would be
with nothing else queued.

``AudiocraftCheckpoint`` (the checkpoint options, loading, the warm tier and the memory count) is what
MusicGen, AudioGen and MAGNeT (``magnet.py``) share.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import threading
from contextlib import contextmanager, nullcontext
from typing import Any, Hashable, Iterator, Sequence

import numpy as np
import torch

from modelhost.client.protocol.errors import BadParamsError, LoadFailedError, RequestError
from modelhost.host.backends import (
    Backend,
    BatchProgress,
    GenerateOutput,
    GenerateRequest,
    ModelSpec,
    RunContext,
    check_options,
    number_param,
)
from modelhost.host.backends.params import audio_input, check_known
from modelhost.host.backends.rng import GLOBAL_RNG, parse_seed
from modelhost.host.devices import module_bytes, offload_module, restore_module

_LOAD_OPTIONS = frozenset({"checkpoint", "allow_pickle", "hf_cache"})  # what every audiocraft checkpoint backend takes
_OPTIONS = _LOAD_OPTIONS | {"max_duration_s", "stream_interval_s"}
STREAM_INTERVAL_S = 2.0  # seconds of audio between a stream's chunks unless the catalog or the request says
# Frames (of 50 per s) held back at a decoded prefix's right edge: the EnCodec decoder's non-causal convolutions
# see a few frames ahead (padding stands in for them at the edge), so the last samples of a prefix decode
# change once later frames exist; samples further back than this margin do not (to float rounding; measured
# in tests/integration/test_stream.py).
STREAM_MARGIN_FRAMES = 8
_PARAMS = {"duration", "top_k", "top_p", "temperature", "cfg_coef", "seed", "return_tokens", "use_multi_band_diffusion"}
# what rows of one batched pass must agree on, with the defaults a request that omits one gets
_SHARED_DEFAULTS = {"duration": 10.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0, "cfg_coef": 3.0, "return_tokens": False}
CHECKPOINT_FILES = ("state_dict.bin", "compression_state_dict.bin")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD and huggingface_hub's default cache are process-wide: one such load at a time
_PROCESS_LOCK = threading.Lock()


class AudiocraftCheckpoint(Backend):
    """What every audiocraft model family shares: its checkpoint (a folder, or a hub id read from the Hugging
    Face cache), loading through the family's own ``get_pretrained``, the warm tier and the memory count.
    Subclasses name the audiocraft class (``_get_pretrained``) and generate; MAGNeT's backend is one too."""

    family = ""
    example_checkpoint = ""  # a hub id for the catalog error message (default: facebook/FAMILY-small)
    options: frozenset[str] = _LOAD_OPTIONS  # the catalog options a subclass accepts
    can_offload = True
    requires = ("torch", "torchaudio", "audiocraft.models")

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts = check_options(spec, set(self.options))
        checkpoint = opts.get("checkpoint")
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ValueError(f"[models.{spec.name}]: {self.family} needs checkpoint = a hub id like "
                             f"\"{self.example_checkpoint or f'facebook/{self.family}-small'}\" or a folder with state_dict.bin")
        self.checkpoint = checkpoint
        self.allow_pickle = bool(opts.get("allow_pickle", False))
        hf_cache = opts.get("hf_cache")
        if hf_cache is not None and (not isinstance(hf_cache, str) or not hf_cache):
            raise ValueError(f"[models.{spec.name}]: hf_cache must be a folder path (a Hugging Face hub cache)")
        self.hf_cache = os.path.abspath(os.path.expanduser(hf_cache)) if hf_cache else None
        self.model: Any = None

    # ---- the backend protocol ----

    def load(self, device: str) -> None:
        if os.path.isdir(os.path.expanduser(self.checkpoint)):
            folder = os.path.expanduser(self.checkpoint)
            missing = [f for f in CHECKPOINT_FILES if not os.path.isfile(os.path.join(folder, f))]
            if missing:
                raise LoadFailedError(f"model {self.name!r}: {folder} lacks {', '.join(missing)}; an audiocraft checkpoint "
                                      "folder holds state_dict.bin and compression_state_dict.bin")
            name = folder
        else:
            name = self._hub_snapshot() or self._hub_fallback()
        try:
            with _process_settings(self.allow_pickle, self.hf_cache):
                self.model = self._get_pretrained(name, device)
        except Exception as exc:
            raise LoadFailedError(self._load_error(exc)) from None

    def unload(self) -> None:
        self.model = None

    def offload(self) -> None:
        self._move(lambda m: offload_module(m))

    def restore(self, device: str) -> None:
        self._move(lambda m: restore_module(m, device))

    def _move(self, move) -> None:
        model = self.model
        model.lm = move(model.lm)
        model.compression_model = move(model.compression_model)
        model.device = next(iter(model.lm.parameters())).device  # audiocraft reads it to place inputs

    def source(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, **({"hf_cache": self.hf_cache} if self.hf_cache else {})}

    def estimate_bytes(self) -> int:
        """The checkpoint files' size: a local folder's, or a hub id's cached snapshot's (0 when not cached)."""
        folder = os.path.expanduser(self.checkpoint)
        if not os.path.isdir(folder):
            folder = self._hub_snapshot()
            if folder is None:
                return 0
        files = [os.path.join(folder, f) for f in CHECKPOINT_FILES]
        return sum(os.path.getsize(f) for f in files if os.path.isfile(f))

    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        return module_bytes(self.model.lm) + module_bytes(self.model.compression_model)

    def _get_pretrained(self, name: str, device: str) -> Any:
        raise NotImplementedError

    def _hub_snapshot(self) -> str | None:
        """The cached snapshot folder holding both checkpoint files of a hub id (refs/main), or None.

        Reads the cache only (never the network); safe from any thread."""
        if not _HUB_ID.fullmatch(self.checkpoint):
            return None
        from huggingface_hub import try_to_load_from_cache

        cache = self.hf_cache or os.environ.get("AUDIOCRAFT_CACHE_DIR") or None  # where audiocraft itself would look
        found = [try_to_load_from_cache(self.checkpoint, f, cache_dir=cache) for f in CHECKPOINT_FILES]
        if not all(isinstance(f, str) for f in found):
            return None
        return os.path.dirname(found[0])  # both resolved through refs/main: one snapshot folder

    def _hub_fallback(self) -> str:
        """Without a cached snapshot: a named cache means the download is missing (say which); otherwise
        audiocraft resolves the id itself (as before: from its cache, or the hub where reachable)."""
        if self.hf_cache is None:
            return self.checkpoint
        if not _HUB_ID.fullmatch(self.checkpoint):
            raise LoadFailedError(f"model {self.name!r}: {self.checkpoint} is neither a checkpoint folder nor a hub id")
        raise LoadFailedError(
            f"model {self.name!r}: {self.checkpoint} is not downloaded (not in the Hugging Face cache {self.hf_cache}); "
            f"download it once where the hub is reachable: huggingface-cli download {self.checkpoint} "
            f"{' '.join(CHECKPOINT_FILES)} --cache-dir {self.hf_cache}")

    def _load_error(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if "Weights only load failed" in str(exc):
            return (f"model {self.name!r}: {self.checkpoint} needs full unpickling to load; if you trust this file, "
                    f"set allow_pickle = true in [models.{self.name}]")
        if any(s in str(exc) for s in ("offline", "LocalEntryNotFoundError", "couldn't connect", "Cannot find the requested files")):
            return (f"model {self.name!r}: {self.checkpoint} is not in the Hugging Face cache and the hub cannot be reached; "
                    "download it once (or set AUDIOCRAFT_CACHE_DIR), or point checkpoint at a local folder")
        return f"model {self.name!r}: cannot load {self.checkpoint}: {text}"


class _AudiocraftBackend(AudiocraftCheckpoint):
    """What MusicGen and AudioGen share; subclasses name the audiocraft class."""

    options = _OPTIONS
    batch_rows = 8

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.max_duration_s = float(spec.options.get("max_duration_s", 360.0))
        self.stream_interval_s = float(spec.options.get("stream_interval_s", STREAM_INTERVAL_S))
        if not 0.1 <= self.stream_interval_s <= 60:
            raise ValueError(f"[models.{spec.name}]: stream_interval_s must be between 0.1 and 60 (seconds of audio)")
        self.mbd: Any = None

    def unload(self) -> None:
        super().unload()
        self.mbd = None

    def warmup(self) -> None:
        self.generate(GenerateRequest("warm-up", {"duration": 0.5, "seed": 1}), RunContext.detached())

    def memory_bytes(self) -> int:
        total = super().memory_bytes()
        return total + (module_bytes(self.mbd) if isinstance(self.mbd, torch.nn.Module) else 0)

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        model = self.model
        assert model is not None, "generate before load"
        params = self._check_params(request)
        seed, reported_seed = parse_seed(params.pop("seed", -1))
        return_tokens = bool(params.pop("return_tokens", False))
        use_mbd = bool(params.pop("use_multi_band_diffusion", False))
        mbd = self._multi_band_diffusion() if use_mbd else None
        model.set_generation_params(**params)
        stream = self._stream(ctx, params["duration"], use_mbd)
        model.set_custom_progress_callback(stream.progress if stream is not None else ctx.progress)
        descriptions = [request.prompt or ""]
        with GLOBAL_RNG.run(seed), (stream.attached() if stream is not None else nullcontext()):
            if request.audio is not None:
                melody = torch.as_tensor(_float_audio(request.audio)).to(model.device)
                wav, tokens = model.generate_with_chroma(descriptions, melody[None], request.sample_rate,
                                                         progress=True, return_tokens=True)
            else:
                wav, tokens = model.generate(descriptions, progress=True, return_tokens=True)
            if mbd is not None:
                wav = mbd.tokens_to_wav(tokens)
        if stream is not None:
            stream.finish(wav)
        info: dict[str, Any] = {"seed": reported_seed}
        if return_tokens:
            info["tokens"] = tokens[0].cpu().numpy().astype(np.int32)
        return GenerateOutput(audio=wav[0].float().cpu().numpy(), sample_rate=int(model.sample_rate), info=info)

    def batch_key(self, request: GenerateRequest) -> Hashable | None:
        """Unseeded text-only requests with equal sampling parameters share a pass; the rest run alone."""
        params = request.params
        if request.audio is not None or set(params) - _PARAMS or params.get("use_multi_band_diffusion"):
            return None
        seed = params.get("seed", -1)
        if isinstance(seed, bool) or seed != -1:  # seeded (or 0: a fresh seed, reported to reproduce it)
            return None
        key = []
        for name, default in _SHARED_DEFAULTS.items():
            value = params.get(name, default)
            if not isinstance(value, (int, float, bool)):
                return None  # a bad value: alone, where its own error names it
            key.append(value)
        return tuple(key)

    def audio_seconds(self, request: GenerateRequest) -> float | None:
        duration = request.params.get("duration", _SHARED_DEFAULTS["duration"])
        return float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None

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
            return_tokens = bool(params.pop("return_tokens", False))
            params.pop("seed", None)
            params.pop("use_multi_band_diffusion", None)
            model.set_generation_params(**params)
            progress = BatchProgress([ctxs[i] for i in rows])
            model.set_custom_progress_callback(progress.progress)
            with GLOBAL_RNG.unseeded():
                wav, tokens = model.generate([requests[i].prompt or "" for i in rows], progress=True, return_tokens=True)
            for n, i in enumerate(rows):
                info: dict[str, Any] = {"seed": -1}
                if return_tokens:
                    info["tokens"] = tokens[n].cpu().numpy().astype(np.int32)
                out[i] = progress.stopped.get(n) or GenerateOutput(
                    audio=wav[n].float().cpu().numpy(), sample_rate=int(model.sample_rate), info=info)
        return [o for o in out if o is not None]  # every row was filled

    # ---- helpers ----

    def _stream(self, ctx: RunContext, duration_s: float, use_mbd: bool) -> "_PrefixStream | None":
        """The streamer of a streaming request (None for a whole-result one)."""
        if not ctx.streaming:
            return None
        interval_s = ctx.stream_interval_s if ctx.stream_interval_s is not None else self.stream_interval_s
        if not 0.1 <= interval_s <= 60:
            raise BadParamsError(f"stream_interval_s must be between 0.1 and 60 (seconds of audio), got {interval_s:g}")
        # one LM pass of the whole duration only: beyond max_duration audiocraft generates in overlapping
        # windows (prefixes are rewritten), and multi-band diffusion decodes the whole at once: both stream as
        # a single chunk at the end
        incremental = duration_s <= self.model.max_duration and not use_mbd
        return _PrefixStream(self.model, ctx, duration_s, interval_s, incremental)

    def _multi_band_diffusion(self) -> Any:
        if self.mbd is None:
            from audiocraft.models import MultiBandDiffusion

            try:
                self.mbd = MultiBandDiffusion.get_mbd_musicgen(device=self.model.device)
            except Exception as exc:
                raise LoadFailedError(f"multi-band diffusion weights cannot be loaded ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0]}); generate without use_multi_band_diffusion") from None
        return self.mbd

    def _check_params(self, request: GenerateRequest) -> dict[str, Any]:
        params = dict(request.params)
        check_known(params, _PARAMS, f"a {self.family} model")
        out: dict[str, Any] = {
            "duration": number_param(params, "duration", 10.0, 0.0, self.max_duration_s, open_low=True),
            "top_k": number_param(params, "top_k", 250, 0, int(self.model.lm.card), integer=True),  # the model's vocabulary
            "top_p": number_param(params, "top_p", 0.0, 0.0, 1.0),
            "temperature": number_param(params, "temperature", 1.0, 0.0, 100.0, open_low=True),
            "cfg_coef": number_param(params, "cfg_coef", 3.0, 0.0, 100.0),
        }
        for key in ("seed", "return_tokens", "use_multi_band_diffusion"):
            if key in params:
                out[key] = params[key]
        if request.audio is not None:
            if not self._has_melody():
                raise BadParamsError(f"model {self.name!r} takes no melody: send audio only to melody models "
                                     "(facebook/musicgen-melody, musicgen-melody-large, stereo-melody)")
            audio_input(request.audio, request.sample_rate, "melody")
        return out

    def _has_melody(self) -> bool:
        return "self_wav" in self.model.lm.condition_provider.conditioners


class MusicGenBackend(_AudiocraftBackend):
    """``backend = "musicgen"``."""

    family = "musicgen"

    def _get_pretrained(self, name: str, device: str) -> Any:
        from audiocraft.models import MusicGen

        return MusicGen.get_pretrained(name, device=device)


class AudioGenBackend(_AudiocraftBackend):
    """``backend = "audiogen"``."""

    family = "audiogen"

    def _get_pretrained(self, name: str, device: str) -> Any:
        from audiocraft.models import AudioGen

        return AudioGen.get_pretrained(name, device=device)

    def _has_melody(self) -> bool:
        return False


class _PrefixStream:
    """A streaming request's audio while audiocraft's LM samples it (runs in the model's worker thread).

    audiocraft has no streaming API; its LM loop keeps the token sequence in a local variable and reports
    only counts. So ``attached`` wraps one internal, ``lm._sample_next_token``, on this model object for
    this call: it records each step's token (the loop masks it in place right after), and ``progress``
    (audiocraft's public progress callback, run after each step) writes that step's codes into the
    (timestep, codebook) cells audiocraft's own pattern layout says the step fills, so the timesteps
    complete in every codebook are known despite the delay pattern (read once per request from the
    layout: O(codebooks) per step). Each ``interval_s`` of newly
    complete audio the complete prefix is decoded with the model's own ``generate_audio`` and the samples up
    to ``STREAM_MARGIN_FRAMES`` before its right edge that were not sent yet go out as one chunk;
    ``finish`` sends the rest of the final audio. Nothing changes what is computed or the random stream: the
    result is the non-streamed one, bit for bit.
    """

    def __init__(self, model: Any, ctx: RunContext, duration_s: float, interval_s: float, incremental: bool) -> None:
        self.model = model
        self.ctx = ctx
        self.sample_rate = int(model.sample_rate)
        self.hop = self.sample_rate / model.frame_rate  # samples per token frame
        self.interval_samples = int(interval_s * self.sample_rate)
        self.incremental = incremental
        self.sent = 0  # samples already sent
        self.sampled = 0  # tokens sampled so far
        self.token: torch.Tensor | None = None  # the last one
        self.frames = int(duration_s * model.frame_rate)
        self.done_frames = 0

    @contextmanager
    def attached(self) -> Iterator[None]:
        lm = self.model.lm
        if not self.incremental:
            yield
            return
        pattern = lm.pattern_provider.get_pattern(self.frames)
        self.codes = torch.zeros((1, lm.num_codebooks, self.frames), dtype=torch.long)
        # Read once from audiocraft's own pattern: which (timestep, codebook) cells each sequence step fills,
        # and after which step every timestep up to t is filled in every codebook (the delay pattern).
        self.layout = pattern.layout
        filled_at = [0] * self.frames
        for step, cells in enumerate(self.layout):
            for cell in cells:
                if cell.t < self.frames:
                    filled_at[cell.t] = max(filled_at[cell.t], step)
        self.prefix_filled_at = list(itertools.accumulate(filled_at, max))  # nondecreasing: bisect finds the prefix
        self.first_step = pattern.get_first_step_with_timesteps(0)
        sample = lm._sample_next_token

        def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
            token = sample(*args, **kwargs)
            self.sampled += 1
            self.token = token
            return token

        lm._sample_next_token = recording  # an instance attribute over the class's method, for this call only
        try:
            yield
        finally:
            del lm._sample_next_token

    def progress(self, step: int, total: int) -> None:
        self.ctx.progress(step, total)
        if not self.incremental or self.token is None:
            return
        position = self.first_step + self.sampled - 1  # the sequence step this token filled
        token = self.token[0, :, 0].cpu()  # masked in place by the loop before this callback
        for cell in self.layout[position]:  # O(codebooks) per step: no re-reverting of the whole pattern
            if cell.t < self.frames:
                self.codes[0, cell.q, cell.t] = token[cell.q]
        self.done_frames = bisect.bisect_right(self.prefix_filled_at, position)  # timesteps complete in every codebook
        ready = int((self.done_frames - STREAM_MARGIN_FRAMES) * self.hop)
        if ready - self.sent >= self.interval_samples:
            wav = self.model.generate_audio(self.codes[..., :self.done_frames].to(self.model.device))
            self._send(wav, ready)

    def finish(self, wav: torch.Tensor) -> None:
        """The final audio's samples not sent yet."""
        self._send(wav, wav.shape[-1])

    def _send(self, wav: torch.Tensor, end: int) -> None:
        end = min(end, wav.shape[-1])
        if end > self.sent:
            self.ctx.chunk(wav[0, :, self.sent:end].float().cpu().numpy(), self.sample_rate, self.sent)
            self.sent = end


@contextmanager
def _process_settings(allow_pickle: bool, hf_cache: str | None) -> Iterator[None]:
    """The process-wide settings one load needs, held for that load only (one such load at a time):
    full unpickling (``allow_pickle``), and huggingface_hub's default cache pointed at ``hf_cache``,
    where transformers then finds audiocraft's T5 text encoder (audiocraft passes it no cache_dir)."""
    if not allow_pickle and hf_cache is None:
        yield
        return
    from huggingface_hub import constants

    with _PROCESS_LOCK:
        old_env = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        old_cache = constants.HF_HUB_CACHE
        if allow_pickle:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        if hf_cache is not None:
            constants.HF_HUB_CACHE = hf_cache
        try:
            yield
        finally:
            constants.HF_HUB_CACHE = old_cache
            if old_env is None:
                os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = old_env


def _float_audio(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1] from int or float samples, 1-D or 2-D."""
    x = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    return x[None, :] if x.ndim == 1 else x
