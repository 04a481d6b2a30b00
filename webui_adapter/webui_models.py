"""The model lists a TTS-WebUI folder offers, with the host's own models added (files read, no sockets).

What the real WebUI lists (rsxdalv/TTS-WebUI 8c9046b, ``tts_webui/utils/list_dir_models.py``, and its
audiocraft and rvc extensions):

* the MusicGen/AudioGen picker: eleven ``(label, hub id)`` pairs, then one ``(folder name, absolute
  path)`` per first-level folder of ``<root>/data/models/musicgen_audiogen`` except ``cache``; the
  call carries the value (hub id or absolute path);
* RVC voices and indexes: files under ``<root>/data/models/rvc/checkpoints`` named by their path
  relative to it, ``/`` separators, without ``.pth`` / ``.index`` (``bob/bob``,
  ``bob/added_IVF13_Flat_nprobe_1_bob_v2``). The WebUI's glob finds them one folder deep only; a
  host started with ``--webui`` serves any depth, so these lists go to any depth.

Host models that serve the same kind of call are appended under their host names, so a host with a
hand-written catalog is usable from the same pickers. Runs in the light UI's Gradio worker threads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from webui_adapter import routing
from webui_adapter.webui_facts import MUSICGEN_DIR, MUSICGEN_PICKER, RVC_CHECKPOINTS_DIR, under


def musicgen_dir(root: Path) -> Path:
    return under(root, MUSICGEN_DIR)


def checkpoints_dir(root: Path) -> Path:
    return under(root, RVC_CHECKPOINTS_DIR)


def musicgen_choices(root: Path, host_models: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The WebUI's picker: its eleven hub ids, its model folders, then the host's other models."""
    folder = musicgen_dir(root)
    folders = sorted(e.name for e in _subdirs(folder) if e.name != "cache")
    pairs = [*MUSICGEN_PICKER, *((name, os.path.join(str(folder), name)) for name in folders)]
    return _with_host_models(pairs, "musicgen", host_models)


def rvc_voices(root: Path, host_models: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Voices as ``(name, name)``: the WebUI's ``.pth`` files, then the host's other voices."""
    names = _relative_stems(checkpoints_dir(root), ".pth")
    return _with_host_models([(n, n) for n in names], "rvc", host_models)


def rvc_indexes(root: Path, host_models: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Indexes as ``(name, name)``: under the WebUI's checkpoints, under each host voice's
    ``index_root``, and the stem of each host voice's own catalog index (choosing it turns that index on)."""
    rows = [m for m in host_models if m.get("backend") == "rvc"]
    names = _relative_stems(checkpoints_dir(root), ".index")
    for m in rows:
        index_root = (m.get("source") or {}).get("index_root")
        if index_root:
            names += [n for n in _relative_stems(Path(index_root), ".index") if n not in names]
    for m in rows:
        index = (m.get("source") or {}).get("index")
        stem = os.path.splitext(os.path.basename(index))[0] if index else None
        if stem and stem not in names:
            names.append(stem)
    return [(n, n) for n in names]


def _with_host_models(pairs: list[tuple[str, str]], kind: str, host_models: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    values = {v for _, v in pairs}
    extra = [(n, n) for n in routing.choices(kind, host_models) if n not in values]
    return pairs + extra


def _relative_stems(folder: Path, suffix: str) -> list[str]:
    """Files ending with ``suffix`` under ``folder`` (any depth), as relative ``/`` paths without it; sorted."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            if f.endswith(suffix):
                rel = os.path.relpath(os.path.join(dirpath, f), folder)
                found.append(rel[: -len(suffix)].replace(os.sep, "/"))
    return sorted(found)


def _subdirs(folder: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if e.is_dir()]
    except OSError:
        return []
