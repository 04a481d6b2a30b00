"""``rvc``: RVC voice conversion through rvc-python's own loader and pipeline.

A voice is a ``.pth`` (``model``) plus an optional faiss ``.index`` (``index``); HuBERT (``hubert``,
required) and RMVPE (``rmvpe``, needed only for ``f0_method = "rmvpe"``) come from configured paths,
and nothing is downloaded. ``hubert`` may also name a file in the Hugging Face cache as
``hf://ORG/NAME/FILE`` (where TTS-WebUI keeps it), looked up at load in ``hf_cache`` (default: the
standard cache). Voices on the same device share one HuBERT, one RMVPE and one FCPE in memory.

Per-request index: with ``index_root`` (a folder), a request may carry ``index``, TTS-WebUI's index
value (``bob/added_IVF13_Flat_nprobe_1_bob_v2``: relative to ``index_root``, ``.index`` optional, or
an absolute path under it; ``""`` = none). Indexes are read once and kept in a small LRU keyed by
real path and mtime (rvc-python would re-read the file on every request).

What this module keeps from rvc-python's quirks (see the notes in the README):
* no ``RVCInference`` (it downloads in its constructor) and no ``Config`` (a process-wide singleton
  that rewrites files in site-packages): the pipeline gets a small settings object instead;
* input audio arrives as samples, never a shared temp path; the harvest pitch cache is keyed per
  request and cleared after it, so one request's pitch never serves another and nothing grows;
* errors raise (``vc_single`` would return a traceback string): the worker replies with them;
* fairseq sets the root logger to DEBUG on import: the level is restored.

Parameters (TTS-WebUI's names): ``f0_up_key`` (semitones), ``f0_method`` (pm, harvest, crepe,
rmvpe, fcpe), ``index_rate``, ``filter_radius``, ``resample_sr``, ``rms_mix_rate``, ``protect``,
``speaker_id``, and ``index`` where ``index_root`` is set. ``fcpe`` runs torchfcpe's bundled model
(no download), as the ``rvc`` library TTS-WebUI uses does. Output: int16 mono at the voice's rate
(or ``resample_sr``); ``info`` has ``f0_method``, ``version``, ``index`` (the file used, or "") and
``f0_median_hz``.
Catalog options: ``model``, ``index``, ``index_root``, ``hubert``, ``hf_cache``, ``rmvpe``, ``half``
(default: true on CUDA).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelhost.client.protocol.errors import BadParamsError, LoadFailedError
from modelhost.host.backends import (
    Backend,
    GenerateOutput,
    GenerateRequest,
    MemoryReport,
    ModelSpec,
    RunContext,
    check_options,
    number_param,
)
from modelhost.host.backends.params import audio_input, check_known, choice_param
from modelhost.host.backends.rng import GLOBAL_RNG
from modelhost.host.backends.shared import SHARED
from modelhost.host.devices import module_bytes

_OPTIONS = {"model", "index", "index_root", "hubert", "hf_cache", "rmvpe", "half"}
F0_METHODS = ("pm", "harvest", "crepe", "rmvpe", "fcpe")
# f0_method defaults to rmvpe where the voice has RMVPE weights, else harvest.
_DEFAULTS: dict[str, Any] = {"f0_up_key": 0, "f0_method": "harvest", "index_rate": 0.66, "filter_radius": 3,
                             "resample_sr": 0, "rms_mix_rate": 1.0, "protect": 0.33, "speaker_id": 0}
HUBERT_RATE = 16000
HUB_PREFIX = "hf://"  # hubert = "hf://lj1995/VoiceConversionWebUI/hubert_base.pt": a file in the HF cache
F0_MIN_HZ, F0_MAX_HZ = 50.0, 1100.0  # rvc's pitch range (Pipeline.get_f0)


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

    requires = ("torch", "fairseq", "faiss", "rvc_python.modules.vc.modules", "rvc_python.modules.vc.pipeline")

    @classmethod
    def expand(cls, name: str, options: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``folder = ...``: one model ``NAME/STEM`` per ``STEM.pth`` there, with its ``.index``: ``STEM.index`` if
        present, else the one index whose name contains STEM (RVC's training writes ``added_IVF..._STEM_v2.index``);
        the table's other keys apply to every voice."""
        if "folder" not in options:
            return [(name, options)]
        options = dict(options)
        folder = Path(str(options.pop("folder"))).expanduser()
        voices = sorted(folder.glob("*.pth"))
        if not voices:
            raise ValueError(f"folder {folder} holds no .pth voices")
        indexes = sorted(p for p in folder.glob("*.index") if "trained" not in p.name)
        out = []
        for pth in voices:
            exact = folder / f"{pth.stem}.index"
            matches = [exact] if exact in indexes else [p for p in indexes if pth.stem in p.stem]
            voice = {**options, "model": str(pth)}
            if len(matches) == 1:
                voice["index"] = str(matches[0])
            out.append((f"{name}/{pth.stem}", voice))
        return out

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts = check_options(spec, _OPTIONS)
        for key in ("model", "hubert"):
            if not isinstance(opts.get(key), str):
                raise ValueError(f"[models.{spec.name}]: rvc needs {key} = \"/path/to/{'voice.pth' if key == 'model' else 'hubert_base.pt'}\"")
        self.model_path = os.path.expanduser(opts["model"])
        self.index_path = os.path.expanduser(opts["index"]) if opts.get("index") else None
        self.index_root = _folder_option(spec.name, opts, "index_root")
        self.hf_cache = _folder_option(spec.name, opts, "hf_cache")
        self.hubert_ref = opts["hubert"] if opts["hubert"].startswith(HUB_PREFIX) else os.path.expanduser(opts["hubert"])
        if self.hubert_ref.startswith(HUB_PREFIX):
            try:
                _hub_parts(self.hubert_ref)  # a malformed reference fails at start, naming the expected form
            except ValueError as exc:
                raise ValueError(f"[models.{spec.name}]: hubert {exc}") from None
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

    @property
    def hubert_path(self) -> str | None:
        """HuBERT's file; for an ``hf://`` reference the cached file, or None while it is not downloaded."""
        if not self.hubert_ref.startswith(HUB_PREFIX):
            return self.hubert_ref
        repo, filename = _hub_parts(self.hubert_ref)
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename, cache_dir=self.hf_cache)
        return found if isinstance(found, str) else None

    # ---- the backend protocol ----

    def load(self, device: str) -> None:
        for label, path in (("model", self.model_path), ("index", self.index_path), ("rmvpe", self.rmvpe_path)):
            if path is not None and not os.path.isfile(path):
                raise LoadFailedError(f"model {self.name!r}: {label} file {path} does not exist; fix `{label}` in the catalog")
        hubert_path = self._hubert_file()
        is_half = bool(self.half_option) if self.half_option is not None else device.startswith("cuda")
        self.settings = PipelineSettings.for_device(device, is_half)
        self.hubert = self._acquire("hubert", hubert_path, _load_hubert)
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
        _hook_pipeline(vc.pipeline)
        self.vc = vc

    def unload(self) -> None:
        self.vc = None
        self.hubert = self.rmvpe = None
        for key in self._shared_keys:
            SHARED.release(key)
        self._shared_keys = []

    def source(self) -> dict[str, Any]:
        """The voice and its catalog index; ``index_root`` too where requests may choose an index."""
        out: dict[str, Any] = {"model": self.model_path, "index": self.index_path}
        if self.index_root is not None:
            out["index_root"] = self.index_root
        return out

    def estimate(self) -> MemoryReport:
        """The voice file's size doubled (weights are stored in half precision); HuBERT's (and RMVPE's)
        file as shared weights, which the host counts once however many voices use them."""
        own = 2 * os.path.getsize(self.model_path) if os.path.isfile(self.model_path) else 0
        hubert_path = self.hubert_path
        shared = {_report_key(kind, path): os.path.getsize(path)
                  for kind, path in (("hubert", hubert_path), ("rmvpe", self.rmvpe_path))
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
        """This voice's own weights plus its share of the HuBERT/RMVPE/FCPE it uses with other voices."""
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
        index_file = self._request_index(p.pop("index", None))
        audio = _to_hubert_input(request.audio, request.sample_rate)
        ctx.progress(0, 1)  # the one point where a cancel can stop it: the pipeline has no steps to report
        pipeline = vc.pipeline
        pipeline.modelhost_index = INDEXES.get(index_file) if index_file and p["index_rate"] != 0 else (None, None)
        if p["f0_method"] == "fcpe":
            pipeline.modelhost_fcpe = self._fcpe()
        key = f"modelhost-{uuid.uuid4().hex}"  # the harvest pitch cache's key: never shared between requests
        from rvc_python.modules.vc import pipeline as rvc_pipeline

        try:
            with GLOBAL_RNG.unseeded():
                out = pipeline.pipeline(  # file_index "": the index comes from INDEXES through the vc hook
                    self.hubert, vc.net_g, p["speaker_id"], audio, key, [0, 0, 0], p["f0_up_key"], p["f0_method"],
                    "", p["index_rate"], vc.if_f0, p["filter_radius"], vc.tgt_sr, p["resample_sr"],
                    p["rms_mix_rate"], vc.version, p["protect"],
                )
        finally:
            pipeline.modelhost_index = (None, None)
            rvc_pipeline.input_audio_path2wav.pop(key, None)
            rvc_pipeline.cache_harvest_f0.cache_clear()
        rate = p["resample_sr"] if vc.tgt_sr != p["resample_sr"] >= 16000 else vc.tgt_sr
        info = {"f0_method": p["f0_method"], "version": vc.version, "index": index_file or ""}
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

    def _hubert_file(self) -> str:
        """HuBERT's path, or LoadFailedError saying what to fix (or what to download, for an hf:// reference)."""
        path = self.hubert_path
        if path is not None and os.path.isfile(path):
            return path
        if self.hubert_ref.startswith(HUB_PREFIX):
            repo, filename = _hub_parts(self.hubert_ref)
            cache = f" --cache-dir {self.hf_cache}" if self.hf_cache else ""
            raise LoadFailedError(f"model {self.name!r}: {filename} is not in the Hugging Face cache "
                                  f"{self.hf_cache or '(default)'}; download it once: "
                                  f"huggingface-cli download {repo} {filename}{cache}")
        raise LoadFailedError(f"model {self.name!r}: hubert file {path} does not exist; fix `hubert` in the catalog")

    def _fcpe(self) -> Any:
        """The shared FCPE pitch model on this voice's device, loaded on the first fcpe request (as rvc does)."""
        if self.vc.pipeline.modelhost_fcpe is None:
            settings = self.settings
            key = ("fcpe", "torchfcpe-bundled", settings.device, False)
            self.vc.pipeline.modelhost_fcpe = SHARED.acquire(key, lambda: _load_fcpe(settings.device))
            self._shared_keys.append(key)
        return self.vc.pipeline.modelhost_fcpe

    def _request_index(self, value: Any) -> str | None:
        """The index file for this request: the request's ``index`` (under index_root), else the catalog's."""
        if value is None:
            return self.index_path
        if not isinstance(value, str):
            raise BadParamsError(f"index must be a string (an index under {self.index_root}, or \"\" for none), got {value!r}")
        if value == "":
            return None
        value = value.replace("\\", "/") if os.sep == "/" else value  # a value listed by a WebUI on Windows
        path = _under(self.index_root, value if value.endswith(".index") else value + ".index")
        if path is None:
            raise BadParamsError(f"index {value!r} refused: it is not under this voice's index folder {self.index_root}")
        if not os.path.isfile(path):
            raise BadParamsError(f"index {value!r}: {path} does not exist (indexes are looked up under {self.index_root})")
        return path

    def _check_params(self, request: GenerateRequest) -> dict[str, Any]:
        params = request.params
        known = set(_DEFAULTS) | ({"index"} if self.index_root is not None else set())
        check_known(params, known, "an rvc voice")
        audio_input(request.audio, request.sample_rate)
        p = {**_DEFAULTS, **params}
        p["f0_method"] = choice_param(params, "f0_method", "rmvpe" if self.rmvpe is not None else "harvest", F0_METHODS)
        if p["f0_method"] == "rmvpe" and self.rmvpe is None:
            raise BadParamsError(f"voice {self.name!r} has no rmvpe weights configured: use f0_method pm, harvest or fcpe, "
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


def _hook_pipeline(pipeline: Any) -> None:
    """Wrap this voice's own Pipeline instance (one worker thread uses it), never the class:

    * ``get_f0``: adds ``fcpe`` (rvc-python has no such method) and keeps the median pitch (Hz,
      after transposition) of each conversion on the pipeline, for ``info``;
    * ``vc``: uses the index the request chose (``pipeline.modelhost_index``, from INDEXES) instead of
      the one rvc-python would read from a file on every call.
    """
    get_f0, vc = pipeline.get_f0, pipeline.vc

    def hooked_get_f0(input_audio_path, x, p_len, f0_up_key, f0_method, *rest):
        if f0_method == "fcpe":
            coarse, f0 = _fcpe_pitch(pipeline.modelhost_fcpe, x, p_len, f0_up_key)
        else:
            coarse, f0 = get_f0(input_audio_path, x, p_len, f0_up_key, f0_method, *rest)
        voiced = f0[f0 > 0]
        pipeline.modelhost_f0_median_hz = round(float(np.median(voiced)), 2) if voiced.size else 0.0
        return coarse, f0

    def hooked_vc(model, net_g, sid, audio0, pitch, pitchf, times, _index, _big_npy, *rest):
        index, big_npy = pipeline.modelhost_index
        return vc(model, net_g, sid, audio0, pitch, pitchf, times, index, big_npy, *rest)

    pipeline.get_f0, pipeline.vc = hooked_get_f0, hooked_vc
    pipeline.modelhost_f0_median_hz = 0.0
    pipeline.modelhost_index = (None, None)
    pipeline.modelhost_fcpe = None


def _fcpe_pitch(model: Any, x: np.ndarray, p_len: int, f0_up_key: int) -> tuple[np.ndarray, np.ndarray]:
    """FCPE's pitch for 16 kHz audio, with the settings and post-processing rvc applies to every method:
    transposed by ``f0_up_key`` semitones, and quantised to the 1..255 mel bins the voice takes."""
    with torch.no_grad():
        f0 = model.infer(torch.from_numpy(np.ascontiguousarray(x)).to(model.tensor_device_marker.device).unsqueeze(0).float(),
                         sr=HUBERT_RATE, decoder_mode="local_argmax", threshold=0.006)
    f0 = f0.squeeze(0).squeeze(-1).float().cpu().numpy()  # float32, as rvc keeps it
    if f0.size < p_len:  # one frame per 160 samples: FCPE gives p_len + 1; pad defensively as rvc pads pm
        f0 = np.pad(f0, (0, p_len - f0.size))
    f0 = f0 * pow(2, f0_up_key / 12)
    return _coarse_pitch(f0), f0


def _coarse_pitch(f0_hz: np.ndarray) -> np.ndarray:
    """rvc's pitch quantisation: Hz -> mel, scaled into bins 1..255 over [F0_MIN_HZ, F0_MAX_HZ] (0 Hz -> bin 1)."""
    mel_min, mel_max = (1127 * np.log(1 + f / 700) for f in (F0_MIN_HZ, F0_MAX_HZ))
    mel = 1127 * np.log(1 + f0_hz / 700)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - mel_min) * 254 / (mel_max - mel_min) + 1
    return np.rint(np.clip(mel, 1, 255)).astype(np.int32)


class IndexCache:
    """Loaded faiss indexes with their vectors, keyed by (real path, mtime, size): a small LRU shared by
    every voice (any worker thread; one lock, held while a missing index loads)."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[Any, np.ndarray]] = OrderedDict()
        self.loads = 0  # how many times a file was read (for ps and tests)

    def get(self, path: str) -> tuple[Any, np.ndarray]:
        """(faiss index, its vectors) for ``path``; BadParamsError when it is not a readable index."""
        real = os.path.realpath(path)
        try:
            stat = os.stat(real)
        except OSError as exc:
            raise BadParamsError(f"index {path} cannot be read: {exc.strerror}") from None
        key = (real, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = _read_index(real)
            self.loads += 1
            self._entries[key] = value
            for old in [k for k in self._entries if k[0] == real and k != key]:
                del self._entries[old]  # the file changed: its old contents are never asked for again
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return value

    def paths(self) -> list[str]:
        with self._lock:
            return [k[0] for k in self._entries]


INDEXES = IndexCache()


def _read_index(path: str) -> tuple[Any, np.ndarray]:
    import faiss

    try:
        index = faiss.read_index(path)
        return index, index.reconstruct_n(0, index.ntotal)  # the vectors rvc blends features with
    except Exception as exc:
        raise BadParamsError(f"{path} is not a readable faiss index: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _under(root: str | None, name: str) -> str | None:
    """``name`` (relative to ``root``, or absolute) as a path inside ``root``; None when it leads outside.

    Inside means inside by its spelling (no ``..`` escapes) or by its real path (a link into root)."""
    if root is None:
        return None
    path = os.path.normpath(os.path.join(root, name))
    if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
        return path
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return path if real.startswith(real_root.rstrip(os.sep) + os.sep) else None


def _folder_option(model: str, opts: dict[str, Any], key: str) -> str | None:
    value = opts.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"[models.{model}]: {key} must be a folder path")
    return os.path.abspath(os.path.expanduser(value))


def _hub_parts(ref: str) -> tuple[str, str]:
    """``hf://ORG/NAME/FILE`` -> (``ORG/NAME``, ``FILE``)."""
    parts = ref[len(HUB_PREFIX):].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{ref!r} is not a Hugging Face file reference like hf://lj1995/VoiceConversionWebUI/hubert_base.pt")
    return f"{parts[0]}/{parts[1]}", parts[2]


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


def _load_fcpe(device: str) -> tuple[Any, int]:
    try:
        from torchfcpe import spawn_bundled_infer_model
    except ImportError:
        raise BadParamsError("f0_method fcpe needs the torchfcpe package on the host (pip install torchfcpe); "
                             "use rmvpe, harvest, pm or crepe meanwhile") from None
    model = spawn_bundled_infer_model(device).eval()
    return model, module_bytes(model)


def _load_rmvpe(path: str, settings: PipelineSettings) -> tuple[Any, int]:
    from rvc_python.lib.rmvpe import RMVPE

    try:
        rmvpe = RMVPE(path, is_half=settings.is_half, device=settings.device)
    except Exception as exc:
        raise LoadFailedError(f"{path} is not loadable RMVPE weights: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return rmvpe, module_bytes(rmvpe.model)
