"""Older TTS-WebUIs (2024, no decorator hooks): run one with MusicGen/AudioGen/RVC on the host.

    cd tts-generation-webui && python -m webui_adapter.patch server.py [the WebUI's own arguments]

runs the WebUI's entry script unchanged, after an import hook that patches its generation modules
the moment they are imported (before their tabs are built). Checked against rsxdalv/TTS-WebUI at
``0c6bb54`` (2024-04-06, the early-2024 code, same since ``c716b30``) and ``a9571a7`` (2024-08-20,
the mid-2024 code, same since ``5ced340``):

* ``src.musicgen.musicgen_tab.load_model`` returns a ``HostAudiocraftModel``: the part of
  audiocraft's MusicGen/AudioGen API that the WebUI's ``generate(params, melody_in)`` uses
  (``name``, ``device``, ``sample_rate``, ``lm.cfg.dataset.segment_duration``, ``compression_model``,
  ``set_generation_params``, ``generate``, ``generate_with_chroma``), generating on the host. The
  WebUI's own ``generate`` keeps its seeding, saving and history; the seed is the one it just gave
  torch (``torch.initial_seed()``). With multi-band diffusion on, the host runs it too: ``generate``
  is wrapped to see the choice, and while it runs audiocraft's ``MultiBandDiffusion.get_mbd_musicgen``
  hands the WebUI the host's result instead of loading the diffusion weights in the WebUI.
* ``src.rvc_tab.rvc_tab.run_rvc`` is replaced by a function with the same signature and return value,
  converting on the host: the early-2024 one (12 arguments, with ``device`` and ``is_half``, which the
  host decides for itself) or the mid-2024 one (10 arguments), whichever the module defines. Before
  ``c716b30`` (2024-04-04) the voice and index were uploaded files: that ``run_rvc`` is left alone.

Limits: the WebUI still imports audiocraft and rvc at start (their code, not their weights), and the
mid-2024 RVC tab fetches ``hubert_base.pt`` from the hub at import (cached after the first run).
Other versions' modules are left alone (the hook names what it patched, and says so when nothing).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import os
import runpy
import sys
import threading
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np

from webui_adapter import convert, progress
from webui_adapter.forward import ForwardError, Forwarder, HostDownError, as_ui_error
from webui_adapter.webui_facts import AUDIOGEN_HUB_ID

MUSICGEN_MODULE = "src.musicgen.musicgen_tab"
RVC_MODULE = "src.rvc_tab.rvc_tab"
MBD_MODULE = "audiocraft.models.multibanddiffusion"
SEGMENT_S = 30.0  # MusicGen's training segment; the WebUI cuts melodies to it


class _CallState(threading.local):
    """Per WebUI request thread: whether this generation wants multi-band diffusion, and its result."""

    mbd = False
    mbd_wav: Any = None


_STATE = _CallState()


class HostAudiocraftModel:
    """Stands in for a loaded audiocraft MusicGen/AudioGen; generation runs on the host. Needs torch at call time."""

    def __init__(self, fwd: Forwarder, name: str) -> None:
        self._fwd = fwd
        self.name = name
        self.device = "cpu"  # where the WebUI puts the melody tensor before handing it back to us
        self.sample_rate = 16000 if name == AUDIOGEN_HUB_ID else 32000  # replaced by the host's rate after each generation
        self.lm = SimpleNamespace(cfg=SimpleNamespace(dataset=SimpleNamespace(segment_duration=SEGMENT_S)))
        # the WebUI asks isinstance(compression_model, InterleaveStereoCompressionModel) before diffusion:
        # never, here, since the host returns diffusion audio already laid out per channel
        self.compression_model = SimpleNamespace(sample_rate=self.sample_rate)
        self._params: dict[str, Any] = {"duration": 30.0, "topk": 250, "topp": 0.0, "temperature": 1.0, "cfg_coef": 3.0}

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 30.0, cfg_coef: float = 3.0, **_: Any) -> None:
        self._params = {"duration": duration, "topk": top_k, "topp": top_p, "temperature": temperature, "cfg_coef": cfg_coef}

    def generate(self, descriptions: list[str], progress: bool = False, return_tokens: bool = False) -> Any:
        return self._run(descriptions, None, progress, return_tokens)

    def generate_with_chroma(self, descriptions: list[str], melody_wavs: Any, melody_sample_rate: int,
                             progress: bool = False, return_tokens: bool = False) -> Any:
        melody = np.asarray(melody_wavs.detach().cpu().float().numpy())
        melody = melody[0] if melody.ndim == 3 else melody  # (B, C, T) -> (C, T)
        return self._run(descriptions, (int(melody_sample_rate), melody.T), progress, return_tokens)

    def _run(self, descriptions: list[str], melody: Any, show_progress: bool, return_tokens: bool) -> Any:
        import torch

        kw = {**self._params, "text": descriptions[0] if descriptions else "", "melody": melody, "model_name": self.name,
              "seed": torch.initial_seed(),  # what the WebUI's set_seed just gave torch.manual_seed
              "use_multi_band_diffusion": _STATE.mbd}
        try:
            done = self._fwd.forward("musicgen", kw, progress=progress.for_call() if show_progress else None)
        except (HostDownError, ForwardError) as exc:
            raise as_ui_error(exc) from exc
        rate, audio = done.audio_out
        self.sample_rate = self.compression_model.sample_rate = rate
        channels_first = audio[None] if audio.ndim == 1 else audio.T
        wav = torch.from_numpy(np.ascontiguousarray(channels_first))[None]  # (1, C, T), as audiocraft returns
        _STATE.mbd_wav = wav if _STATE.mbd else None
        if not return_tokens:
            return wav
        return wav, done.webui_output("musicgen")["tokens"]


class HostDiffusion:
    """What ``MultiBandDiffusion.get_mbd_musicgen()`` gives the WebUI while a host generation ran it."""

    def __init__(self, wav: Any) -> None:
        self._wav = wav

    def tokens_to_wav(self, tokens: Any, n_bands: int = 32) -> Any:
        return self._wav


def wrap_generate(generate: Callable[..., Any]) -> Callable[..., Any]:
    """The era's ``generate(params, melody_in)``, noting whether this call wants multi-band diffusion."""

    def host_generate(params: Any, melody_in: Any) -> Any:
        _STATE.mbd = bool(params.get("use_multi_band_diffusion")) and params.get("model") != AUDIOGEN_HUB_ID
        _STATE.mbd_wav = None
        try:
            return generate(params, melody_in)
        finally:
            _STATE.mbd, _STATE.mbd_wav = False, None

    host_generate.__wrapped__ = generate  # type: ignore[attr-defined]
    return host_generate


def patch_diffusion() -> None:
    """While a host generation ran diffusion, ``get_mbd_musicgen`` returns its result; otherwise the real one."""
    module = sys.modules.get(MBD_MODULE)
    if module is None:
        try:
            module = __import__(MBD_MODULE, fromlist=["MultiBandDiffusion"])
        except ImportError:
            return  # no audiocraft: the WebUI cannot ask for diffusion either
    cls = module.MultiBandDiffusion
    original = cls.get_mbd_musicgen
    if getattr(original, "_modelhost", False):
        return

    def get_mbd_musicgen(*args: Any, **kwargs: Any) -> Any:
        if _STATE.mbd_wav is not None:
            return HostDiffusion(_STATE.mbd_wav)
        return original(*args, **kwargs)

    get_mbd_musicgen._modelhost = True  # type: ignore[attr-defined]
    cls.get_mbd_musicgen = staticmethod(get_mbd_musicgen)


def forwarding_run_rvc(fwd: Forwarder, original: Callable[..., Any]) -> Callable[..., Any] | None:
    """A ``run_rvc`` with the signature and return value of the one the module defines, converting on the
    host; None for the versions before ``c716b30`` (2024-04-04), whose voice and index were uploaded
    files (``tempfile._TemporaryFileWrapper``): a host serves voices it can name, not temporary uploads."""
    params = inspect.signature(original).parameters
    if "model_path" in params and "TemporaryFileWrapper" in str(params["model_path"].annotation):
        return None
    if "is_half" in params:
        return _run_rvc_early_2024(fwd)
    return _run_rvc_mid_2024(fwd)


def _run_rvc_early_2024(fwd: Forwarder) -> Callable[..., Any]:
    def run_rvc(f0up_key: str, original_audio_path: str, index_path: str, f0method: str, model_path: str,
                index_rate: float, device: str, is_half: bool, filter_radius: int, resample_sr: int,
                rms_mix_rate: float, protect: float):
        audio_out = _convert(fwd, f0up_key, original_audio_path, index_path, f0method, model_path, index_rate,
                             filter_radius, resample_sr, rms_mix_rate, protect)
        # that era's infer_rvc metadata: file names with extensions, the key as an int
        return audio_out, {"original_audio_path": original_audio_path, "index_path": f"{index_path}.index",
                           "model_path": f"{model_path}.pth", "f0method": f0method, "f0up_key": int(f0up_key),
                           "index_rate": index_rate, "device": device, "is_half": is_half,
                           "filter_radius": filter_radius, "resample_sr": resample_sr, "rms_mix_rate": rms_mix_rate,
                           "protect": protect}

    return run_rvc


def _run_rvc_mid_2024(fwd: Forwarder) -> Callable[..., Any]:
    def run_rvc(f0up_key: str, original_audio_path: str, index_path: str, f0method: str, model_path: str,
                index_rate: float, filter_radius: int, resample_sr: int, rms_mix_rate: float, protect: float):
        audio_out = _convert(fwd, f0up_key, original_audio_path, index_path, f0method, model_path, index_rate,
                             filter_radius, resample_sr, rms_mix_rate, protect)
        return audio_out, {"original_audio_path": original_audio_path, "index_path": index_path,
                           "model_path": model_path, "f0method": f0method, "f0up_key": f0up_key,
                           "index_rate": index_rate, "filter_radius": filter_radius, "resample_sr": resample_sr,
                           "rms_mix_rate": rms_mix_rate, "protect": protect}

    return run_rvc


def _convert(fwd: Forwarder, *args: Any) -> tuple[int, np.ndarray]:
    kw = convert.call_kwargs("rvc", args, {})  # the same order as today's run_rvc; older names
    try:
        return fwd.forward("rvc", kw).audio_out
    except (HostDownError, ForwardError) as exc:
        raise as_ui_error(exc) from exc


Patch = Callable[[ModuleType], bool]  # True: the module now generates on the host


def patches(fwd: Forwarder) -> dict[str, Patch]:
    """Module name -> what to change in it once it has run."""

    def musicgen(module: ModuleType) -> bool:
        if not callable(getattr(module, "load_model", None)):
            return False
        module.load_model = lambda version: HostAudiocraftModel(fwd, version)
        if callable(getattr(module, "generate", None)):
            module.generate = wrap_generate(module.generate)
        patch_diffusion()
        return True

    def rvc(module: ModuleType) -> bool:
        replacement = forwarding_run_rvc(fwd, module.run_rvc) if callable(getattr(module, "run_rvc", None)) else None
        if replacement is None:
            return False
        module.run_rvc = replacement
        return True

    return {MUSICGEN_MODULE: musicgen, RVC_MODULE: rvc}


def _apply(patch: Patch, module: ModuleType, done: list[str]) -> None:
    if patch(module):
        done.append(module.__name__)
        print(f"modelhost: {module.__name__} now generates on the host", file=sys.stderr, flush=True)
    else:
        print(f"modelhost: {module.__name__} is from a WebUI version this patch does not know; it runs in the "
              "WebUI as before", file=sys.stderr, flush=True)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patch: Patch, done: list[str]) -> None:
        self._loader, self._patch, self._done = loader, patch, done

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _apply(self._patch, module, self._done)


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the target modules on the normal path and patches each right after it runs."""

    def __init__(self, table: dict[str, Patch]) -> None:
        self._table = table
        self.patched: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patch = self._table.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch, self.patched)
        return spec


def install(fwd: Forwarder | None = None) -> PatchOnImport:
    """Patch the target modules now if imported, else when they are; returns the hook."""
    hook = PatchOnImport(patches(fwd or Forwarder()))
    for name, patch in hook._table.items():
        if name in sys.modules:
            _apply(patch, sys.modules[name], hook.patched)
    sys.meta_path.insert(0, hook)
    return hook


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    script = os.path.abspath(args[0])
    hook = install()
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(script))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        if not hook.patched:
            print(f"modelhost: no known generation module was imported ({MUSICGEN_MODULE}, {RVC_MODULE}); "
                  "this WebUI version is not patched: use the decorator extension (webui_adapter.main)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
