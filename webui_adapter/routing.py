"""Which host model a WebUI's model choice goes to (pure: no sockets, no files read).

A WebUI names models its own way: MusicGen/AudioGen by hub id (``facebook/musicgen-small``) or by the
absolute path of a folder under ``data/models/musicgen_audiogen``; MAGNeT likewise
(``facebook/magnet-small-10secs``, a folder under ``data/models/magnet``); RVC voices by their path
relative to ``data/models/rvc/checkpoints`` without ``.pth`` (``singers/alice``; ``singers\\alice`` on
Windows). A host started with ``--webui DIR`` serves them under exactly those names; a host with a
hand-written catalog names them its own way and shows in ``ps`` the ``source`` each is built from.
``resolve`` picks, in order:

1. the operator's map, if one is set (``MODELHOST_WEBUI_MODELS="facebook/musicgen-large=big"``;
   never required);
2. a host model of that exact name;
3. a host model built from it: the same checkpoint id or folder; for a voice, a ``.pth`` whose path
   ends with the WebUI's relative path;
4. otherwise the WebUI's name itself: the host resolves it, or answers ``unknown_model`` with its
   own message (the caller turns that into ``NotServedError``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from webui_adapter.webui_facts import MODEL_MAP_ENV

# The WebUI call kind (its ``_type``) -> the host backends that can serve it.
FAMILIES: dict[str, tuple[str, ...]] = {"musicgen": ("musicgen", "audiogen"), "magnet": ("magnet",), "rvc": ("rvc",)}


class NotServedError(LookupError):
    """No host model can serve what the WebUI asked for; the message says what to change."""


class NoChoiceError(ValueError):
    """The WebUI sent no model at all (an empty picker)."""


@dataclass(frozen=True)
class Route:
    """The host model a call goes to: its name, and its ``ps`` row where the host lists it."""

    name: str
    row: Mapping[str, Any] | None

    @property
    def backend(self) -> str | None:
        return self.row.get("backend") if self.row else None

    @property
    def source(self) -> Mapping[str, Any]:
        return (self.row or {}).get("source") or {}


def parse_model_map(text: str | None) -> dict[str, str]:
    """``"a=b,c=d"`` (commas or semicolons) -> ``{"a": "b", "c": "d"}``; ValueError names a bad entry."""
    mapping: dict[str, str] = {}
    for entry in (text or "").replace(";", ",").split(","):
        if not entry.strip():
            continue
        webui, sep, host = entry.partition("=")
        if not sep or not webui.strip() or not host.strip():
            raise ValueError(f"{MODEL_MAP_ENV}: {entry.strip()!r} is not WEBUI_NAME=HOST_MODEL")
        mapping[webui.strip()] = host.strip()
    return mapping


def webui_name(kind: str, requested: Any) -> str:
    """The WebUI's choice as the host names it: a voice with ``/`` separators and no ``.pth``."""
    if not isinstance(requested, str) or not requested.strip():
        raise NoChoiceError(f"no model chosen: pick a {'voice' if kind == 'rvc' else 'model'} first")
    name = requested.strip()
    if kind == "rvc":
        name = name.replace("\\", "/")
        name = name[: -len(".pth")] if name.endswith(".pth") else name
    return name


def resolve(kind: str, requested: Any, models: Iterable[Mapping[str, Any]],
            mapping: Mapping[str, str] | None = None) -> Route:
    """The host model that serves the WebUI's ``requested`` choice for a call of ``kind``."""
    name = webui_name(kind, requested)
    families = FAMILIES[kind]
    rows = list(models)
    if mapping and (requested.strip() in mapping or name in mapping):
        name = mapping.get(requested.strip()) or mapping[name]
    exact = next((m for m in rows if m.get("name") == name), None)
    if exact is not None:
        if exact.get("backend") not in families:
            raise NotServedError(f"the host's model {name!r} is a {exact.get('backend')} model, not "
                                 f"{'/'.join(families)}; choose another")
        return Route(name, exact)
    matches = [m for m in rows if m.get("backend") in families and _built_from(m, name)]
    if len(matches) > 1:
        names = ", ".join(m["name"] for m in matches)
        raise NotServedError(f"{name!r} matches several host models ({names}); choose one with "
                             f"MODELHOST_WEBUI_MODELS=\"{name}=HOST_MODEL\"")
    if matches:
        return Route(matches[0]["name"], matches[0])
    return Route(name, None)


def not_served_message(kind: str, name: str, host_message: str, models: Iterable[Mapping[str, Any]]) -> str:
    """What to tell the user when the host answered ``unknown_model`` for ``name``."""
    families = FAMILIES[kind]
    served = describe(m for m in models if m.get("backend") in families)
    return (f"the host serves no {'/'.join(families)} model {name!r} ({host_message}). It serves: {served}. "
            "Start it with `modelhost serve --webui YOUR_WEBUI_DIR` to serve every model this WebUI offers, "
            f"or map the name: MODELHOST_WEBUI_MODELS=\"{name}=HOST_MODEL\"")


def choices(kind: str, models: Iterable[Mapping[str, Any]]) -> list[str]:
    """Host model names that can serve a call of ``kind``, in catalog order."""
    return [m["name"] for m in models if m.get("backend") in FAMILIES[kind]]


def describe(models: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for m in models:
        source = m.get("source") or {}
        built_from = source.get("checkpoint") or source.get("model")
        parts.append(f"{m['name']} ({built_from})" if built_from and built_from != m["name"] else m["name"])
    return ", ".join(parts) or "nothing of that kind"


def _built_from(model: Mapping[str, Any], requested: str) -> bool:
    source = model.get("source") or {}
    if model.get("backend") == "rvc":
        path = source.get("model")
        if not path:
            return False
        stem = _norm(path)[: -len(".pth")] if path.endswith(".pth") else _norm(path)
        wanted = _norm(requested)
        return stem == wanted or stem.endswith("/" + wanted.lstrip("/"))
    checkpoint = source.get("checkpoint")
    if not checkpoint:
        return False
    return checkpoint == requested or _norm(os.path.expanduser(checkpoint)) == _norm(os.path.expanduser(requested))


def _norm(path: str) -> str:
    return os.path.normpath(path.replace("\\", "/")).replace("\\", "/").rstrip("/")
