"""Saving a light-UI generation the way TTS-WebUI saves one, so its History and Favorites show it.

TTS-WebUI (rsxdalv/TTS-WebUI 8c9046b, ``tts_webui/decorators/``, with the audiocraft extension's
``musicgen_tab.py`` and the rvc extension's ``rvc_tab.py``) writes each generation into
``outputs/<date>__<type>__<title>/<same>`` with ``.wav`` (float32 for MusicGen/AudioGen, int16 for
RVC), ``.json`` (the metadata, keys in the WebUI's order) and, for MusicGen, ``.npz`` (the tokens and
the metadata); its Save Ogg decorator adds ``.ogg``, which is what the React UI's History plays. The
date is taken when the generation returns; ``<title>`` is the prompt (MusicGen) or the voice (RVC)
made file-safe and cut to 15 characters; a name already taken (same second, same title) gets
``_2``, ``_3``, ... where the WebUI would overwrite. The returned ``folder_root`` is relative to the WebUI root
(``outputs/<name>``), as the WebUI returns it.

Runs in the light UI's Gradio worker threads; writes only under the given WebUI root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile

from webui_adapter.forward import Forwarded

OUTPUTS = "outputs"
FAVORITES = "favorites"
_UNSAFE = str.maketrans({c: "_" for c in " :'\"\\.,()?!/\n"})  # what the WebUI's prompt_to_title replaces


def title(text: str) -> str:
    """A prompt or voice name as the WebUI puts it into a folder name."""
    return text.translate(_UNSAFE).replace("__", "_")[:15]


def folder_name(kind: str, text: str, date: datetime) -> str:
    return f"{date:%Y-%m-%d_%H-%M-%S}__{title(kind)}__{title(text)}"


def save_favorite(root: Path, folder_root: str) -> str:
    """React's Favorite button: copy one saved result (``outputs/NAME``, as its metadata names it) to
    ``favorites/NAME``, where React's Favorites page reads, as the WebUI's save_to_favorites does.
    Only folders under the WebUI's ``outputs`` are accepted. Returns the new folder, relative to ``root``."""
    outputs_dir = (Path(root) / OUTPUTS).resolve()
    source = (Path(root) / str(folder_root)).resolve()
    if source.parent != outputs_dir or not source.is_dir():
        raise ValueError(f"{folder_root!r} is not a saved result under {OUTPUTS}/ of {root}")
    target = Path(root) / FAVORITES / source.name
    shutil.copytree(source, target, dirs_exist_ok=True)
    return f"{FAVORITES}/{source.name}"


def save_musicgen(root: Path, kw: Mapping[str, Any], done: Forwarded, date: datetime | None = None) -> tuple[dict[str, Any], str]:
    """Write a MusicGen/AudioGen generation; returns (metadata, folder_root)."""
    date = date or datetime.now()
    rate, audio = done.audio_out
    metadata = {
        "_version": "0.0.1",
        "_hash_version": "0.0.3",
        "_audiocraft_version": done.info.get("audiocraft_version"),
        **{k: kw.get(k) for k in ("text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef")},
        # the seed the host used: the one sent, or the fresh one it drew for "0" (so the result can be reproduced)
        "seed": str(done.info.get("seed", kw.get("seed"))),
        "use_multi_band_diffusion": kw.get("use_multi_band_diffusion"),
        "outputs": None,
        "models": {},
        "hash": hashlib.sha256(audio.tobytes()).hexdigest(),
        "date": str(date),
    }
    metadata["melody"] = _melody_hash(kw.get("melody"))
    folder, name = _folder(root, "musicgen", str(kw.get("text") or ""), date)
    base = folder / name
    soundfile.write(f"{base}.wav", audio, rate, subtype="FLOAT")
    _write_json(f"{base}.json", metadata)
    if done.tokens is not None:  # the WebUI's npz: tokens as audiocraft returns them, (1, K, T) int64
        tokens = np.asarray(done.tokens, dtype=np.int64)[None]
        np.savez(f"{base}.npz", tokens=tokens, metadata=np.array(json.dumps(metadata)))
    _write_ogg(f"{base}.ogg", audio, rate)
    return metadata, f"{OUTPUTS}/{name}"


def save_rvc(root: Path, kw: Mapping[str, Any], done: Forwarded, date: datetime | None = None) -> tuple[dict[str, Any], str]:
    """Write an RVC conversion; returns (metadata, folder_root)."""
    date = date or datetime.now()
    rate, audio = done.audio_out
    metadata = {
        "_version": "0.0.1",
        "_hash_version": "0.0.2",
        **{k: kw.get(k) for k in ("pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method",
                                   "model_path", "index_rate", "filter_radius", "resample_sr", "rms_mix_rate", "protect")},
        "outputs": None,
        "text": kw.get("model_path"),  # the WebUI's RVC chain names the folder after the voice
        "date": str(date),
        "hash": hashlib.sha256(audio.tobytes()).hexdigest(),
    }
    folder, name = _folder(root, "rvc", str(kw.get("model_path") or ""), date)
    base = folder / name
    soundfile.write(f"{base}.wav", audio, rate, subtype="PCM_16")
    _write_json(f"{base}.json", metadata)
    _write_ogg(f"{base}.ogg", audio, rate)
    return metadata, f"{OUTPUTS}/{name}"


def _folder(root: Path, kind: str, text: str, date: datetime) -> tuple[Path, str]:
    """A new folder for this generation. The WebUI overwrites a folder of the same second and title;
    here several UIs share one root, so a taken name gets ``_2``, ``_3``, ... (mkdir decides, race-free)."""
    base = folder_name(kind, text, date)
    (Path(root) / OUTPUTS).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}_{n}"
        folder = Path(root) / OUTPUTS / name
        try:
            folder.mkdir()
            return folder, name
        except FileExistsError:
            continue
    raise RuntimeError(f"{root / OUTPUTS}: 999 generations named {base}; clear some out")


def _write_json(path: str, metadata: Mapping[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(metadata, f, indent=2, default=lambda o: f"<<non-serializable: {type(o).__qualname__}>>")
    os.replace(tmp, path)  # React's History parses every D/D.json: never leave half a file


def _write_ogg(path: str, audio: np.ndarray, rate: int) -> None:
    """Ogg Vorbis, what React's History plays. int16 is scaled to [-1, 1] first (the WebUI's own Save
    Ogg pipes int16 RVC audio as float32 bytes, which turns it into noise)."""
    data = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio
    soundfile.write(path, data, rate, format="OGG", subtype="VORBIS")


def _melody_hash(melody: Any) -> str | None:
    if melody is None:
        return None
    return hashlib.sha256(np.asarray(melody[1]).tobytes()).hexdigest()
