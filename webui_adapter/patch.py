"""Older TTS-WebUIs (early 2024, port 7860, no decorator hooks): run one with MusicGen/AudioGen/RVC on the host.

    cd tts-generation-webui && python -m webui_adapter.patch server.py [the WebUI's own arguments]

runs the WebUI's entry script unchanged, after an import hook that patches its generation modules
the moment they are imported (before their tabs are built):

* ``src.musicgen.musicgen_tab.load_model`` returns a ``HostAudiocraftModel``: an object with the
  part of audiocraft's MusicGen/AudioGen API the WebUI calls (``set_generation_params``,
  ``generate``, ``generate_with_chroma``, ``sample_rate``, ...) that generates on the host. The
  WebUI's own ``generate`` keeps its seeding, saving, history and outputs; only the model is remote.
  The seed is the one the WebUI just gave torch (``torch.initial_seed()``).
* ``src.rvc_tab.rvc_tab.run_rvc`` is replaced by a function with the same signature and return
  value, ``((sample_rate, int16 samples), metadata)``, that converts on the host.

Limits: the WebUI still imports audiocraft and rvc at start (their code, not their weights), and
that era's RVC tab fetches ``hubert_base.pt`` from the hub at import (cached after the first run);
multi-band diffusion, which that WebUI runs on the returned tokens itself, still loads in the WebUI
process; modules of other WebUI versions are left alone (the hook names the modules it patched,
and says so when it patched none).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import runpy
import sys
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np

from webui_adapter import convert
from webui_adapter.forward import Forwarder, console_progress

MUSICGEN_MODULE = "src.musicgen.musicgen_tab"
RVC_MODULE = "src.rvc_tab.rvc_tab"
SEGMENT_S = 30.0  # MusicGen's training segment; the WebUI cuts melodies to it


class HostAudiocraftModel:
    """Stands in for a loaded audiocraft MusicGen/AudioGen; generation runs on the host. Needs torch at call time."""

    def __init__(self, fwd: Forwarder, name: str) -> None:
        self._fwd = fwd
        self.name = name
        self.device = "cpu"  # where the WebUI puts the melody tensor before handing it back to us
        self.sample_rate = 32000  # replaced by the host's rate after the first generation
        self.lm = SimpleNamespace(cfg=SimpleNamespace(dataset=SimpleNamespace(segment_duration=SEGMENT_S)))
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

    def _run(self, descriptions: list[str], melody: Any, progress: bool, return_tokens: bool) -> Any:
        import torch

        kw = {**self._params, "text": descriptions[0] if descriptions else "", "melody": melody, "model_name": self.name,
              "seed": torch.initial_seed() % 2**31, "use_multi_band_diffusion": False}
        done = self._fwd.forward("musicgen", kw, progress=console_progress if progress else None)
        rate, audio = done.output["audio_out"]
        self.sample_rate = rate
        channels_first = audio[None] if audio.ndim == 1 else audio.T
        wav = torch.from_numpy(np.ascontiguousarray(channels_first))[None]  # (1, C, T), as audiocraft returns
        if not return_tokens:
            return wav
        return wav, done.output["tokens"]


def forwarding_run_rvc(fwd: Forwarder) -> Callable[..., Any]:
    """That era's ``run_rvc`` (same parameters, same return value), converting on the host."""

    def run_rvc(f0up_key: str, original_audio_path: str, index_path: str, f0method: str, model_path: str,
                index_rate: float, filter_radius: int, resample_sr: int, rms_mix_rate: float, protect: float):
        kw = convert.call_kwargs("rvc", (f0up_key, original_audio_path, index_path, f0method, model_path, index_rate,
                                          filter_radius, resample_sr, rms_mix_rate, protect), {})  # same order, older names
        done = fwd.forward("rvc", kw)
        metadata = {k: v for k, v in kw.items() if k != "pitch_collection_method"}
        metadata.update(f0up_key=f0up_key, f0method=f0method, host_model=done.model)
        return done.output["audio_out"], metadata

    return run_rvc


def patches(fwd: Forwarder) -> dict[str, Callable[[ModuleType], None]]:
    """Module name -> what to change in it once it has run."""

    def musicgen(module: ModuleType) -> None:
        module.load_model = lambda version: HostAudiocraftModel(fwd, version)

    def rvc(module: ModuleType) -> None:
        module.run_rvc = forwarding_run_rvc(fwd)

    return {MUSICGEN_MODULE: musicgen, RVC_MODULE: rvc}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patch: Callable[[ModuleType], None], done: list[str]) -> None:
        self._loader, self._patch, self._done = loader, patch, done

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)
        self._done.append(module.__name__)
        print(f"modelhost: {module.__name__} now generates on the host", file=sys.stderr, flush=True)


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the target modules on the normal path and patches each right after it runs."""

    def __init__(self, table: dict[str, Callable[[ModuleType], None]]) -> None:
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
            patch(sys.modules[name])
            hook.patched.append(name)
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
