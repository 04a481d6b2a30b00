"""``rvc``: RVC voice conversion through rvc-python's own loader and pipeline.

A voice is a ``.pth`` (``model``) plus an optional faiss ``.index`` (``index``); HuBERT (``hubert``,
required) and RMVPE (``rmvpe``, needed only for ``f0_method = "rmvpe"``) come from configured paths,
and nothing is downloaded. Voices on the same device share one HuBERT and one RMVPE in memory.

What this module keeps from rvc-python's quirks (see the notes in the README):
* no ``RVCInference`` (it downloads in its constructor) and no ``Config`` (a process-wide singleton
  that rewrites files in site-packages): the pipeline gets a small settings object instead;
* input audio arrives as samples, never a shared temp path; the harvest pitch cache is keyed per
  request and cleared after it, so one request's pitch never serves another and nothing grows;
* errors raise (``vc_single`` would return a traceback string): the worker replies with them;
* fairseq sets the root logger to DEBUG on import: the level is restored.

Parameters (TTS-WebUI's names): ``f0_up_key`` (semitones), ``f0_method`` (pm, harvest, crepe,
rmvpe), ``index_rate``, ``filter_radius``, ``resample_sr``, ``rms_mix_rate``, ``protect``,
``speaker_id``. Output: int16 mono at the voice's rate (or ``resample_sr``).
Catalog options: ``model``, ``index``, ``hubert``, ``rmvpe``, ``half`` (default: true on CUDA).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelhost.client.errors import BadParamsError, LoadFailedError
from modelhost.host.backends import Backend, GenerateOutput, GenerateRequest, MemoryReport, RunContext, check_options, number_param
from modelhost.host.backends.rng import GLOBAL_RNG
from modelhost.host.backends.shared import SHARED
from modelhost.host.config import ModelSpec
from modelhost.host.devices import module_bytes

_OPTIONS = {"model", "index", "hubert", "rmvpe", "half"}
F0_METHODS = ("pm", "harvest", "crepe", "rmvpe")
# f0_method defaults to rmvpe where the voice has RMVPE weights, else harvest.
_DEFAULTS: dict[str, Any] = {"f0_up_key": 0, "f0_method": "harvest", "index_rate": 0.66, "filter_radius": 3,
                             "resample_sr": 0, "rms_mix_rate": 1.0, "protect": 0.33, "speaker_id": 0}
HUBERT_RATE = 16000


@dataclass(frozen=True)
class PipelineSettings:
    """What rvc-python's Pipeline and VC read from its Config: device, precision and chunking (seconds)."""

    device: str
    is_half: bool
    x_pad: int
    x_query: int
    x_center: int
    x_max: int

    @classmethod
    def for_device(cls, device: str, is_half: bool) -> "PipelineSettings":
        # rvc-python's Config.device_config values for half and full precision on a large-memory device
        return cls(device, is_half, *((3, 10, 60, 65) if is_half else (1, 6, 38, 41)))


class RvcBackend(Backend):
    """``backend = "rvc"`` (see the module docstring)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts = check_options(spec, _OPTIONS)
        for key in ("model", "hubert"):
            if not isinstance(opts.get(key), str):
                raise ValueError(f"[models.{spec.name}]: rvc needs {key} = \"/path/to/{'voice.pth' if key == 'model' else 'hubert_base.pt'}\"")
        self.model_path = os.path.expanduser(opts["model"])
        self.index_path = os.path.expanduser(opts["index"]) if opts.get("index") else None
        self.hubert_path = os.path.expanduser(opts["hubert"])
        self.rmvpe_path = os.path.expanduser(opts["rmvpe"]) if opts.get("rmvpe") else None
        self.half_option = opts.get("half")
        if self.half_option is not None and not isinstance(self.half_option, bool):
            raise ValueError(f"[models.{spec.name}]: half must be true or false")
        self.vc: Any = None
        self.settings: PipelineSettings | None = None
        self._shared_keys: list[tuple] = []
        self.hubert: Any = None
        self.rmvpe: Any = None
        self.speakers = 1

    # ---- the backend protocol ----

    def load(self, device: str) -> None:
        for label, path in (("model", self.model_path), ("hubert", self.hubert_path), ("index", self.index_path),
                            ("rmvpe", self.rmvpe_path)):
            if path is not None and not os.path.isfile(path):
                raise LoadFailedError(f"model {self.name!r}: {label} file {path} does not exist; fix `{label}` in the catalog")
        is_half = bool(self.half_option) if self.half_option is not None else device.startswith("cuda")
        self.settings = PipelineSettings.for_device(device, is_half)
        self.hubert = self._acquire("hubert", self.hubert_path, _load_hubert)
        if self.rmvpe_path is not None:
            self.rmvpe = self._acquire("rmvpe", self.rmvpe_path, _load_rmvpe)
        from rvc_python.modules.vc.modules import VC

        version = _voice_version(self.model_path)
        vc = VC(lib_dir=os.path.dirname(self.model_path), config=self.settings)
        vc.get_vc(self.model_path, version)
        self.speakers = int(vc.cpt["config"][-3])
        vc.cpt = None  # VC keeps the whole checkpoint dict: a second copy of the weights, never used again
        vc.hubert_model = self.hubert
        if self.rmvpe is not None:
            vc.pipeline.model_rmvpe = self.rmvpe  # the pipeline's own lazy load would read lib_dir/base_model
        _record_pitch(vc.pipeline)
        self.vc = vc

    def unload(self) -> None:
        self.vc = None
        self.hubert = self.rmvpe = None
        for key in self._shared_keys:
            SHARED.release(key)
        self._shared_keys = []

    def source(self) -> dict[str, Any]:
        return {"model": self.model_path, "index": self.index_path}

    def estimate(self) -> MemoryReport:
        """The voice file's size doubled (weights are stored in half precision); HuBERT's (and RMVPE's)
        file as shared weights, which the host counts once however many voices use them."""
        own = 2 * os.path.getsize(self.model_path) if os.path.isfile(self.model_path) else 0
        shared = {_report_key(kind, path): os.path.getsize(path)
                  for kind, path in (("hubert", self.hubert_path), ("rmvpe", self.rmvpe_path))
                  if path is not None and os.path.isfile(path)}
        return MemoryReport(own, shared)

    def memory_report(self) -> MemoryReport:
        if self.vc is None:
            return MemoryReport(0)
        return MemoryReport(module_bytes(self.vc.net_g), {_report_key(k[0], k[1]): SHARED.bytes(k) for k in self._shared_keys})

    def warmup(self) -> None:
        noise = np.random.default_rng(0).uniform(-0.1, 0.1, HUBERT_RATE // 2).astype(np.float32)
        self.generate(GenerateRequest(None, {"f0_method": "pm"}, noise, HUBERT_RATE), RunContext.detached())

    def memory_bytes(self) -> int:
        """This voice's own weights plus its share of the HuBERT/RMVPE it uses with other voices."""
        if self.vc is None:
            return 0
        own = module_bytes(self.vc.net_g)
        return own + sum(SHARED.bytes(k) // max(1, SHARED.holders(k)) for k in self._shared_keys)

    def details(self) -> dict[str, Any]:
        """For ``ps``: this voice's own bytes, and each shared model's bytes and how many voices hold it."""
        if self.vc is None:
            return {}
        shared = {k[0]: {"bytes": SHARED.bytes(k), "holders": SHARED.holders(k)} for k in self._shared_keys}
        return {"own_bytes": module_bytes(self.vc.net_g), "shared": shared}

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        vc = self.vc
        assert vc is not None, "generate before load"
        p = self._check_params(request)
        audio = _to_hubert_input(request.audio, request.sample_rate)
        ctx.progress(0, 1)  # the one point where a cancel can stop it: the pipeline has no steps to report
        key = f"modelhost-{uuid.uuid4().hex}"  # the harvest pitch cache's key: never shared between requests
        from rvc_python.modules.vc import pipeline as rvc_pipeline

        try:
            with GLOBAL_RNG.unseeded():
                out = vc.pipeline.pipeline(
                    self.hubert, vc.net_g, p["speaker_id"], audio, key, [0, 0, 0], p["f0_up_key"], p["f0_method"],
                    self.index_path or "", p["index_rate"], vc.if_f0, p["filter_radius"], vc.tgt_sr, p["resample_sr"],
                    p["rms_mix_rate"], vc.version, p["protect"],
                )
        finally:
            rvc_pipeline.input_audio_path2wav.pop(key, None)
            rvc_pipeline.cache_harvest_f0.cache_clear()
        rate = p["resample_sr"] if vc.tgt_sr != p["resample_sr"] >= 16000 else vc.tgt_sr
        info = {"f0_method": p["f0_method"], "version": vc.version}
        if vc.if_f0:
            info["f0_median_hz"] = vc.pipeline.modelhost_f0_median_hz
        return GenerateOutput(audio=np.asarray(out, dtype=np.int16), sample_rate=int(rate), info=info)

    # ---- helpers ----

    def _acquire(self, kind: str, path: str, loader) -> Any:
        settings = self.settings
        key = (kind, os.path.realpath(path), settings.device, settings.is_half)
        value = SHARED.acquire(key, lambda: loader(path, settings))
        self._shared_keys.append(key)
        return value

    def _check_params(self, request: GenerateRequest) -> dict[str, Any]:
        params = request.params
        unknown = set(params) - set(_DEFAULTS)
        if unknown:
            raise BadParamsError(f"unknown parameters for an rvc voice: {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
        if request.audio is None or request.sample_rate is None:
            raise BadParamsError("an rvc voice converts audio: send audio= (samples) and sample_rate=")
        if request.audio.ndim not in (1, 2) or request.audio.size == 0 or request.audio.dtype.kind not in "iuf":
            raise BadParamsError(f"audio must be non-empty 1-D or (channels, samples) samples, got {request.audio.dtype} {request.audio.shape}")
        p = {**_DEFAULTS, "f0_method": "rmvpe" if self.rmvpe is not None else "harvest", **params}
        if p["f0_method"] not in F0_METHODS:
            raise BadParamsError(f"f0_method must be one of {', '.join(F0_METHODS)}, got {p['f0_method']!r}")
        if p["f0_method"] == "rmvpe" and self.rmvpe is None:
            raise BadParamsError(f"voice {self.name!r} has no rmvpe weights configured: use f0_method pm or harvest, "
                                 "or set rmvpe = \"/path/to/rmvpe.pt\" in the catalog")
        for key, low, high in (("f0_up_key", -48, 48), ("filter_radius", 0, 10), ("speaker_id", 0, self.speakers - 1)):
            number_param(p, key, p[key], low, high, integer=True)
        if isinstance(p["resample_sr"], bool) or not isinstance(p["resample_sr"], int) or not (p["resample_sr"] == 0 or 16000 <= p["resample_sr"] <= 96000):
            raise BadParamsError(f"resample_sr must be 0 (keep the voice's rate) or an int in [16000, 96000], got {p['resample_sr']!r}")
        for key, high in (("index_rate", 1.0), ("rms_mix_rate", 1.0), ("protect", 0.5)):
            p[key] = number_param(p, key, p[key], 0.0, high)
        return p


def _report_key(kind: str, path: str) -> tuple[str, str]:
    """How the host recognises one shared file across voices (per device: the host groups by device)."""
    return (kind, os.path.realpath(path))


def _record_pitch(pipeline: Any) -> None:
    """Keep the median pitch (Hz, after transposition) of each conversion on the pipeline, for ``info``.

    Wraps this voice's own Pipeline instance (one worker thread uses it), not the class.
    """
    get_f0 = pipeline.get_f0

    def recording_get_f0(*args: Any, **kwargs: Any):
        coarse, f0 = get_f0(*args, **kwargs)
        voiced = f0[f0 > 0]
        pipeline.modelhost_f0_median_hz = round(float(np.median(voiced)), 2) if voiced.size else 0.0
        return coarse, f0

    pipeline.get_f0 = recording_get_f0
    pipeline.modelhost_f0_median_hz = 0.0


def _to_hubert_input(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz, peak-limited as rvc-python's vc_single does."""
    x = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if sample_rate != HUBERT_RATE:
        import librosa

        x = librosa.resample(x, orig_sr=sample_rate, target_sr=HUBERT_RATE)
    peak = np.abs(x).max() / 0.95
    if peak > 1:
        x = x / peak
    return np.ascontiguousarray(x, dtype=np.float32)


def _voice_version(path: str) -> str:
    """The voice's own version ("v1"/"v2"), read without loading the weights."""
    try:
        cpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise LoadFailedError(f"{path} is not a readable RVC voice: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(cpt, dict) or "config" not in cpt or "weight" not in cpt:
        raise LoadFailedError(f"{path} is not an RVC voice (.pth with 'config' and 'weight')")
    version = cpt.get("version", "v1")
    if version not in ("v1", "v2"):
        raise LoadFailedError(f"{path}: unknown RVC voice version {version!r}")
    return version


def _load_hubert(path: str, settings: PipelineSettings) -> tuple[Any, int]:
    root = logging.getLogger()
    level = root.level
    try:
        import fairseq.data.dictionary
        from fairseq import checkpoint_utils

        torch.serialization.add_safe_globals([fairseq.data.dictionary.Dictionary])
        try:
            models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], suffix="")
        except Exception as exc:
            raise LoadFailedError(f"{path} is not a loadable fairseq HuBERT checkpoint: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0]}") from None
    finally:
        root.setLevel(level)  # fairseq sets the root logger to DEBUG on import
    model = models[0].to(settings.device)
    model = (model.half() if settings.is_half else model.float()).eval()
    return model, module_bytes(model)


def _load_rmvpe(path: str, settings: PipelineSettings) -> tuple[Any, int]:
    from rvc_python.lib.rmvpe import RMVPE

    try:
        rmvpe = RMVPE(path, is_half=settings.is_half, device=settings.device)
    except Exception as exc:
        raise LoadFailedError(f"{path} is not loadable RMVPE weights: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return rmvpe, module_bytes(rmvpe.model)
