"""How TTS-WebUI calls an inner decorator extension around MusicGen/AudioGen, MAGNeT and RVC: an imitation for tests.

Checked against the real code (read with ``git show`` from the mirrors, and run for real with torch
stubbed in the research for issue 11):

* rsxdalv/TTS-WebUI ``8c9046b`` (2026-05-15):
  ``tts_webui/extensions_loader/decorator_extensions.py`` (import ``{package}.main``, every ``dir()``
  name starting ``decorator_`` and not ending ``_generator``, the list reversed, applied in turn),
  ``tts_webui/decorators/gradio_dict_decorator.py`` (``dictionarize``: the UI's values by input name,
  called with keywords only plus ``outputs=``, the dict of output components),
  ``decorator_apply_torch_seed.py`` (``int(kwargs.get("seed", -1))``), ``decorator_add_model_type.py``
  (adds ``_type``), ``decorator_add_date.py`` and ``decorator_add_base_filename.py`` (date, file name
  and ``folder_root`` added to the *result* after the call), ``decorator_save_wav.py`` (scipy writes
  ``audio_out``), ``decorator_save_musicgen_npz.py`` (``tokens.cpu().numpy()``);
* rsxdalv/tts_webui_extension.audiocraft ``4271f86``: ``musicgen/musicgen_tab.py`` (``generate``'s
  decorator stack and its inputs; ``seed`` comes from a Textbox, so a string); ``magnet/magnet_tab.py``
  (the same stack with ``decorator_add_model_type("magnet")``; ``generate(model_name, text,
  decoding_steps_1..4, **kwargs)`` reached through ``dictionarize`` with its ``inputs_dict`` names, the
  seed from ``randomize_seed_ui``'s Textbox; returns ``{"audio_out": (rate, squeezed samples), "tokens"}``);
* rsxdalv/tts_webui_extension.rvc ``59d7720``: ``rvc_tab.py`` (``run_rvc_decorated``'s stack, with
  ``decorator_rvc_use_model_name_as_text`` putting ``text = model_path``; no seed input and no
  progress callable anywhere).

What the imitation keeps: the order of the steps around the inner decorator, what each passes in
and reads back. What it leaves out: the WebUI's own saving formats beyond writing the WAV with scipy
and reading the tokens as the npz step does (enough to fail where a result has the wrong shape).
The undecorated functions stand for the WebUI's in-process model calls and record that they ran,
which a forwarded call must never do. Runs in the calling thread.
"""

from __future__ import annotations

import importlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

MUSICGEN_INPUTS = ("text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef", "seed",
                   "use_multi_band_diffusion")
RVC_INPUTS = ("pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method", "model_path",
              "index_rate", "filter_radius", "resample_sr", "rms_mix_rate", "protect")
# The UI's defaults (musicgen_tab.py, rvc_tab.py): what a user who changes nothing sends.
MUSICGEN_DEFAULTS = dict(text="", melody=None, model_name="facebook/musicgen-melody", duration=10, topk=250, topp=0.0,
                         temperature=1.0, cfg_coef=3.0, seed="-1", use_multi_band_diffusion=False)
# MAGNeT: inputs_dict's names, and the UI's values when nothing is changed (gr.Number/Slider pass the JSON number).
MAGNET_INPUTS = ("model_name", "text", "seed", "use_sampling", "top_k", "top_p", "temperature", "max_cfg_coef",
                 "min_cfg_coef", "decoding_steps_1", "decoding_steps_2", "decoding_steps_3", "decoding_steps_4",
                 "span_arrangement")
MAGNET_DEFAULTS = dict(model_name="facebook/magnet-small-10secs", text="", seed="-1", use_sampling=True, top_k=0,
                       top_p=0.95, temperature=1.0, max_cfg_coef=20.0, min_cfg_coef=1.0, decoding_steps_1=80,
                       decoding_steps_2=40, decoding_steps_3=40, decoding_steps_4=20, span_arrangement="nonoverlap")
RVC_DEFAULTS = dict(pitch_up_key="0", index_path=None, pitch_collection_method="harvest", model_path=None,
                    index_rate=0.66, filter_radius=3, resample_sr=0, rms_mix_rate=1, protect=0.33)


class Component:
    """Stands for a Gradio output component in ``outputs`` (the inner decorator must not need more)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Component({self.name!r})"


MUSICGEN_OUTPUTS = {"audio_out": Component("audio_out"), "metadata": Component("metadata"), "folder_root": Component("folder_root")}
RVC_OUTPUTS = dict(MUSICGEN_OUTPUTS)


def inner_decorator(packages: tuple[str, ...] = ("webui_adapter",)) -> Callable[[Callable], Callable]:
    """``decorator_extension_inner`` as the WebUI builds it from registered inner extensions."""
    wrappers = []
    for package in packages:
        module = importlib.import_module(f"{package}.main")
        wrappers += [getattr(module, n) for n in dir(module) if n.startswith("decorator_") and not n.endswith("_generator")]
    wrappers.reverse()

    def decorator(fn: Callable) -> Callable:
        for wrapper in wrappers:
            fn = wrapper(fn)
        return fn

    return decorator


class WebUI:
    """The WebUI's MusicGen, MAGNeT and RVC chains around stand-ins for its in-process model calls.

    ``musicgen(**values)`` / ``magnet(**values)`` / ``rvc(**values)`` take the UI's values by input name
    (missing ones take the UI's defaults) and return the result dict the outer decorators see. Files land under ``root``
    (the WebUI's working directory) as ``outputs/<date>__<type>__<title>/<same>.wav`` (+ ``.npz``).
    """

    def __init__(self, root: Path, packages: tuple[str, ...] = ("webui_adapter",)) -> None:
        self.root = Path(root)
        self.local_calls: list[str] = []
        self.inner_kwargs: list[dict[str, Any]] = []  # what each call handed the inner decorator
        inner = inner_decorator(packages)
        self._generate = self._seen(inner(self._local_generate))
        self._magnet = self._seen(inner(self._local_magnet))
        self._run_rvc = self._seen(inner(self._local_run_rvc))

    # ---- the two chains ----

    def musicgen(self, **values: Any) -> dict[str, Any]:
        kwargs = {name: values.get(name, MUSICGEN_DEFAULTS[name]) for name in MUSICGEN_INPUTS}
        _seed_step(kwargs)
        result = self._generate(**kwargs, outputs=MUSICGEN_OUTPUTS, _type="musicgen")
        result = self._after(result, kwargs.get("text", ""), "musicgen")
        tokens = result["tokens"]
        if tokens is not None:  # decorator_save_musicgen_npz
            np.savez(self._path(result, ".npz"), tokens=tokens.cpu().numpy())
        return result

    def magnet(self, **values: Any) -> dict[str, Any]:
        kwargs = {name: values.get(name, MAGNET_DEFAULTS[name]) for name in MAGNET_INPUTS}
        _seed_step(kwargs)
        result = self._magnet(**kwargs, outputs=MUSICGEN_OUTPUTS, _type="magnet")
        result = self._after(result, kwargs.get("text", ""), "magnet")
        tokens = result["tokens"]  # decorator_save_musicgen_npz
        if tokens is not None:
            np.savez(self._path(result, ".npz"), tokens=tokens.cpu().numpy())
        return result

    def rvc(self, **values: Any) -> dict[str, Any]:
        kwargs = {name: values.get(name, RVC_DEFAULTS.get(name)) for name in RVC_INPUTS}
        kwargs["text"] = kwargs["model_path"]  # decorator_rvc_use_model_name_as_text
        _seed_step(kwargs)
        result = self._run_rvc(**kwargs, outputs=RVC_OUTPUTS, _type="rvc")
        return self._after(result, kwargs["text"] or "", "rvc")

    def other(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Another model's chain (``_type`` not handled by modelhost): must run untouched."""
        return inner_decorator()(fn)(**kwargs)

    # ---- the WebUI's own model calls (must not run when forwarded) ----

    def _local_generate(self, text, melody, model_name, duration, topk, topp, temperature, cfg_coef,
                        use_multi_band_diffusion, **kwargs):
        self.local_calls.append("musicgen")
        return {"audio_out": (32000, np.zeros(320, np.float32)), "tokens": None, "local": True}

    def _local_magnet(self, model_name, text, decoding_steps_1, decoding_steps_2, decoding_steps_3, decoding_steps_4,
                      **kwargs):
        self.local_calls.append("magnet")
        return {"audio_out": (32000, np.zeros(320, np.float32)), "tokens": None, "local": True}

    def _local_run_rvc(self, pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path,
                       index_rate, filter_radius, resample_sr, rms_mix_rate, protect, **kwargs):
        self.local_calls.append("rvc")
        return {"audio_out": (40000, np.zeros(400, np.int16)), "local": True}

    # ---- helpers ----

    def _seen(self, fn: Callable) -> Callable:
        def record(**kwargs: Any) -> Any:
            self.inner_kwargs.append(kwargs)
            return fn(**kwargs)

        return record

    def _after(self, result: dict[str, Any], text: str, kind: str) -> dict[str, Any]:
        """What runs on the result once the inner decorator returned: date, file name, the WAV."""
        result["date"] = datetime.now()
        result["filename"] = f"{result['date']:%Y-%m-%d_%H-%M-%S}__{_title(kind)}__{_title(text)}"
        result["folder_root"] = os.path.join("outputs", result["filename"])
        (self.root / result["folder_root"]).mkdir(parents=True, exist_ok=True)
        rate, audio = result["audio_out"]
        try:
            from scipy.io.wavfile import write
        except ImportError:  # the Python 3.10 side has no scipy: the WAV step is checked on the other
            return result
        write(self._path(result, ".wav"), rate, audio)
        return result

    def _path(self, result: dict[str, Any], ext: str) -> Path:
        return self.root / result["folder_root"] / (result["filename"] + ext)


def _seed_step(kwargs: dict[str, Any]) -> None:
    """decorator_apply_torch_seed: the seed must parse as an int (the WebUI then seeds its own torch)."""
    int(kwargs.get("seed", -1))


def _title(text: str) -> str:
    for c in " :'\"\\.,()?!/\n":
        text = text.replace(c, "_")
    return text.replace("__", "_")[:15]
