"""Which host model serves a WebUI's model choice (pure: no sockets, no files read).

A WebUI names models its own way: MusicGen/AudioGen by hub id (``facebook/musicgen-small``) or local
folder, RVC voices by path relative to ``data/models/rvc/checkpoints`` without ``.pth``
(``alice``, ``singers/alice``). The host names them by catalog name and shows in ``ps`` the
``source`` each is built from. A WebUI name is resolved, in order, by:

1. the operator's map (``MODELHOST_WEBUI_MODELS="facebook/musicgen-large=musicgen-large,alice=voices/alice"``);
2. a host model of that name (the light UI offers host names);
3. a host model built from it: the same checkpoint id or folder; for a voice, a ``.pth`` whose path
   ends with the WebUI's relative path.

Nothing is guessed beyond that: a name no host model serves raises ``NotServedError`` listing what
the host does serve and how to add or map it.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

# The WebUI call kind (its ``_type``) -> the host backends that can serve it.
FAMILIES: dict[str, tuple[str, ...]] = {"musicgen": ("musicgen", "audiogen"), "rvc": ("rvc",)}


class NotServedError(LookupError):
    """No host model serves what the WebUI asked for; the message lists what the host has."""


def parse_model_map(text: str | None) -> dict[str, str]:
    """``"a=b,c=d"`` (commas or semicolons) -> ``{"a": "b", "c": "d"}``; ValueError names a bad entry."""
    mapping: dict[str, str] = {}
    for entry in (text or "").replace(";", ",").split(","):
        if not entry.strip():
            continue
        webui, sep, host = entry.partition("=")
        if not sep or not webui.strip() or not host.strip():
            raise ValueError(f"MODELHOST_WEBUI_MODELS: {entry.strip()!r} is not WEBUI_NAME=HOST_MODEL")
        mapping[webui.strip()] = host.strip()
    return mapping


def resolve(kind: str, requested: str, models: Iterable[Mapping[str, Any]], mapping: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """The ``ps`` row of the host model that serves ``requested`` for a call of ``kind``."""
    if not isinstance(requested, str) or not requested.strip():
        raise NotServedError(f"no model chosen: pick a {'voice' if kind == 'rvc' else 'model'} first")
    requested = requested.strip()
    families = FAMILIES[kind]
    candidates = [m for m in models if m.get("backend") in families]
    by_name = {m["name"]: m for m in candidates}
    if mapping and requested in mapping:
        target = mapping[requested]
        if target not in by_name:
            raise NotServedError(f"MODELHOST_WEBUI_MODELS maps {requested!r} to {target!r}, which the host does not serve "
                                 f"as {'/'.join(families)}; it serves: {describe(candidates)}")
        return by_name[target]
    if requested in by_name:
        return by_name[requested]
    matches = [m for m in candidates if _built_from(m, requested)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(m["name"] for m in matches)
        raise NotServedError(f"{requested!r} matches several host models ({names}); choose one with "
                             f"MODELHOST_WEBUI_MODELS=\"{requested}=HOST_MODEL\"")
    entry = f'model = ".../{requested}.pth"' if kind == "rvc" else f'checkpoint = "{requested}"'
    raise NotServedError(f"the host serves no {'/'.join(families)} model for {requested!r}; it serves: "
                         f"{describe(candidates)}. Add it to the host's catalog ([models.NAME] with {entry}) "
                         f"or map it: MODELHOST_WEBUI_MODELS=\"{requested}=HOST_MODEL\"")


def choices(kind: str, models: Iterable[Mapping[str, Any]]) -> list[str]:
    """Host model names that can serve a call of ``kind``, in catalog order."""
    return [m["name"] for m in models if m.get("backend") in FAMILIES[kind]]


def describe(models: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for m in models:
        source = m.get("source") or {}
        built_from = source.get("checkpoint") or source.get("model")
        parts.append(f"{m['name']} ({built_from})" if built_from else m["name"])
    return ", ".join(parts) or "nothing of that kind"


def _built_from(model: Mapping[str, Any], requested: str) -> bool:
    source = model.get("source") or {}
    if model.get("backend") == "rvc":
        path = source.get("model")
        if not path:
            return False
        stem = _norm(path)[: -len(".pth")] if path.endswith(".pth") else _norm(path)
        wanted = _norm(requested[: -len(".pth")] if requested.endswith(".pth") else requested)
        return stem == wanted or stem.endswith("/" + wanted.lstrip("/"))
    checkpoint = source.get("checkpoint")
    if not checkpoint:
        return False
    return checkpoint == requested or _norm(os.path.expanduser(checkpoint)) == _norm(os.path.expanduser(requested))


def _norm(path: str) -> str:
    return os.path.normpath(path.replace("\\", "/")).replace("\\", "/").rstrip("/")
