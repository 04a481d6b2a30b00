"""Every model a TTS-WebUI install offers, as catalog entries under the WebUI's own names.

``WebuiCatalog(root)`` reads the WebUI's folder (never its code) the way the WebUI lists models
(checked against rsxdalv/TTS-WebUI 8c9046b and its audiocraft and rvc extensions):

* the 11 MusicGen/AudioGen hub ids of the audiocraft picker (``webui_facts.MUSICGEN_PICKER``), named by the hub id,
  loaded from the Hugging Face cache the WebUI uses; listed whether downloaded or not (a load of a
  missing one fails naming the ``huggingface-cli download`` to run);
* each first-level folder of ``data/models/musicgen_audiogen`` except ``cache``, named by its
  absolute path (``os.path.join(<abs root>/data/models/musicgen_audiogen, NAME)``, the value the
  WebUI sends); AudioGen when its name says so or its checkpoint is 16 kHz, else MusicGen;
* the 6 hub ids of the MAGNeT tab's picker (``webui_facts.MAGNET_PICKER``) and each first-level folder of
  ``data/models/magnet`` except ``cache`` (by absolute path), as the tab lists them (``model_select_ui``
  with prefix ``magnet``); all served by the ``magnet`` backend;
* every RVC voice ``*.pth`` under ``data/models/rvc/checkpoints`` at any depth (the WebUI lists one
  folder deep), named by its path relative to that folder without ``.pth`` (``bob/bob``, ``alice``);
  HuBERT from the HF cache (``hf://lj1995/VoiceConversionWebUI/hubert_base.pt``), RMVPE from
  ``$rmvpe_root/rmvpe.pt`` when present, and requests may pick any index under the checkpoints folder;
* one ``webui_call`` model per Python environment of the WebUI (``webui:main`` for ``installer_files/env``,
  ``webui:<package>`` for ``.venvs/<package>``): the WebUI's own generation functions of the tabs the host has
  no backend for, run in a WebUI runner under that environment's Python (``host.backends.webui_call``).

The WebUI's ``.env`` and ``.env.user`` (in its root) may move the HF cache (``HF_HUB_CACHE``,
``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``) and ``rmvpe_root``; relative paths there are relative to the
root, and the precedence is the WebUI's: ``.env`` < the environment < ``.env.user``.

``resolve(name)`` re-reads the disk, so a voice dropped in after start is served; it accepts other
spellings of a name (``.pth``, an absolute path, a path through a link, a trailing slash: compared by
real path) and refuses any path outside the WebUI root and the HF cache. Pure apart from reading the
file system; any thread may call it (it keeps no state beyond a cache of folder families).
"""

from __future__ import annotations

import os
import pickletools
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from modelhost.client.protocol.errors import UnknownModelError
from modelhost.host.backends import ModelSpec

from webui_adapter.webui_facts import (  # the WebUI's names, written once for the host and the adapter
    AUDIOGEN_HUB_ID,
    CALL_MODEL_PREFIX,
    HUBERT_REF,
    MAGNET_DIR,
    MAGNET_IDS as MAGNET_HUB_IDS,
    MUSICGEN_DIR,
    MUSICGEN_IDS as HUB_IDS,
    RVC_CHECKPOINTS_DIR as CHECKPOINTS_DIR,
    env_python,
    environments,
)
DEFAULT_RMVPE_ROOT = "data/models/rvc/rmvpe"
DEFAULT_KEYS = {"device", "keep_alive_s", "reserve_bytes", "pin"}
_SHOWN_NAMES = 12  # how many served names an unknown-name error lists


class WebuiCatalog:
    """The models of the TTS-WebUI at ``root`` (see the module docstring).

    ``environ``: the environment the WebUI runs with (default: this process's); ``defaults``: the
    ModelSpec fields every discovered model gets (``device``, ``keep_alive_s``, ``reserve_bytes``,
    ``pin``). Raises ValueError when ``root`` is not a folder or a default is unknown.
    """

    def __init__(self, root: str | os.PathLike, environ: Mapping[str, str] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(self.root):
            raise ValueError(f"the WebUI folder {self.root} does not exist (give the folder that holds its server.py)")
        unknown = set(defaults or {}) - DEFAULT_KEYS
        if unknown:
            raise ValueError(f"unknown WebUI model defaults {sorted(unknown)}; known: {sorted(DEFAULT_KEYS)}")
        self.defaults = dict(defaults or {})
        self.env = webui_environment(self.root, os.environ if environ is None else environ)
        self.hf_cache = hub_cache_dir(self.env, self.root)
        self.musicgen_dir = os.path.join(self.root, *MUSICGEN_DIR)
        self.magnet_dir = os.path.join(self.root, *MAGNET_DIR)
        self.checkpoints = os.path.join(self.root, *CHECKPOINTS_DIR)
        self.rmvpe = os.path.join(_in_root(self.root, self.env.get("rmvpe_root") or DEFAULT_RMVPE_ROOT), "rmvpe.pt")
        self._families: dict[tuple[str, int], str] = {}

    # ---- listing ----

    def scan(self) -> dict[str, ModelSpec]:
        """Every model the WebUI offers now, by the name the WebUI sends: hub ids, folders, voices."""
        specs = {hub_id: self._hub_spec(hub_id) for hub_id in HUB_IDS}
        specs.update((path, self._folder_spec(path)) for path in self._folders(self.musicgen_dir))
        specs.update((hub_id, self._hub_spec(hub_id)) for hub_id in MAGNET_HUB_IDS)
        specs.update((path, self._spec(path, "magnet", {"checkpoint": path})) for path in self._folders(self.magnet_dir))
        for name, pth in self._voices():
            specs.setdefault(name, self._voice_spec(name, pth))  # a voice never shadows a hub id of the picker
        for label, env in environments(self.root).items():
            specs[CALL_MODEL_PREFIX + label] = self._call_spec(label, env)
        return specs

    def resolve(self, name: str) -> ModelSpec:
        """The spec for a requested ``name`` (or another spelling of it), read from the disk now.

        Raises UnknownModelError saying why: a path outside the WebUI and the HF cache is refused;
        anything else the WebUI does not offer is unknown (the message lists what is served)."""
        if name in HUB_IDS or name in MAGNET_HUB_IDS:
            return self._hub_spec(name)
        if name.startswith(CALL_MODEL_PREFIX):
            env = environments(self.root).get(name[len(CALL_MODEL_PREFIX):])
            if env is None:
                raise UnknownModelError(f"the WebUI at {self.root} has no Python environment {name[len(CALL_MODEL_PREFIX):]!r} "
                                        f"(its environments: {', '.join(environments(self.root)) or 'none'}): a WebUI runner "
                                        "runs only under one of the WebUI's own environments")
            return self._call_spec(name[len(CALL_MODEL_PREFIX):], env)
        specs = self.scan()
        if name in specs:
            return specs[name]
        found = self._match(name, specs)
        if found is not None:
            return specs[found]
        raise UnknownModelError(self._unknown_message(name, specs))

    # ---- specs ----

    def _spec(self, name: str, backend: str, options: dict[str, Any]) -> ModelSpec:
        spec = ModelSpec(name=name, backend=backend, options=options)
        return replace(spec, **self.defaults) if self.defaults else spec

    def _hub_spec(self, hub_id: str) -> ModelSpec:
        options: dict[str, Any] = {"checkpoint": hub_id, "hf_cache": self.hf_cache}
        if hub_id == AUDIOGEN_HUB_ID:
            # The published AudioGen checkpoint needs full unpickling; the WebUI loads every file that
            # way (its torch_load_patch), and this is the one hub file it picks by name.
            options["allow_pickle"] = True
        backend = "magnet" if hub_id in MAGNET_HUB_IDS else "audiogen" if hub_id == AUDIOGEN_HUB_ID else "musicgen"
        return self._spec(hub_id, backend, options)

    def _folder_spec(self, path: str) -> ModelSpec:
        return self._spec(path, self._family(path), {"checkpoint": path})

    def _voice_spec(self, name: str, pth: str) -> ModelSpec:
        options: dict[str, Any] = {"model": pth, "hubert": HUBERT_REF, "hf_cache": self.hf_cache,
                                   "index_root": self.checkpoints}
        if os.path.isfile(self.rmvpe):
            options["rmvpe"] = self.rmvpe
        return self._spec(name, "rvc", options)

    def _call_spec(self, label: str, env: Path) -> ModelSpec:
        """The WebUI runner of one environment: its generation functions, run under its own Python (one runner per
        environment, named after it), in the WebUI's folder."""
        spec = self._spec(CALL_MODEL_PREFIX + label, "webui_call", {"root": self.root, "environment": label})
        return replace(spec, python=str(env_python(env)), runner=f"webui-{label}")

    # ---- the disk ----

    def _folders(self, top: str) -> list[str]:
        """Absolute paths of the first-level folders of ``top`` (a data/models folder), ``cache`` excepted."""
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError:
            return []
        return [os.path.join(top, e.name) for e in entries if e.is_dir() and e.name != "cache"]

    def _voices(self) -> list[tuple[str, str]]:
        """(WebUI name, absolute .pth path) of every voice under the checkpoints folder, any depth."""
        voices, seen = [], set()
        for folder, dirs, files in os.walk(self.checkpoints, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # a link loop, or a folder linked twice
                dirs[:] = []
                continue
            seen.add(real)
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".pth"):
                    pth = os.path.join(folder, f)
                    voices.append((os.path.relpath(pth, self.checkpoints)[:-4].replace(os.sep, "/"), pth))
        return voices

    def _family(self, folder: str) -> str:
        """audiogen when the folder's name says so or its checkpoint is 16 kHz (AudioGen's rate), else musicgen."""
        if "audiogen" in os.path.basename(folder).lower():
            return "audiogen"
        ckpt = os.path.join(folder, "compression_state_dict.bin")
        try:
            key = (os.path.realpath(ckpt), os.stat(ckpt).st_mtime_ns)
        except OSError:
            return "musicgen"
        if key not in self._families:
            self._families[key] = "audiogen" if checkpoint_sample_rate(ckpt) == 16000 else "musicgen"
        return self._families[key]

    # ---- other spellings ----

    def _match(self, name: str, specs: dict[str, ModelSpec]) -> str | None:
        """The served name that ``name`` spells differently, or None."""
        text = name.replace("\\", "/").rstrip("/") or name
        for candidate in (text, text[:-4] if text.endswith(".pth") else None):
            if candidate and candidate in specs:
                return candidate
        path = text if os.path.isabs(text) else os.path.join(self.checkpoints, text)
        by_real = {os.path.realpath(s.options.get("model") or s.options["checkpoint"]): n
                   for n, s in specs.items() if n not in HUB_IDS and n not in MAGNET_HUB_IDS}
        for candidate in (path, path + ".pth"):
            real = os.path.realpath(candidate)
            if real in by_real:
                return by_real[real]
        return None

    def _unknown_message(self, name: str, specs: dict[str, ModelSpec]) -> str:
        text = name.replace("\\", "/")
        path = os.path.normpath(text if os.path.isabs(text) else os.path.join(self.checkpoints, text))
        if not any(_inside(p, top) for p in (path, os.path.realpath(path)) for top in (self.root, self.hf_cache)):
            return (f"{name!r} refused: the host serves only models of the WebUI at {self.root} (and its Hugging Face "
                    f"cache {self.hf_cache}), and this path is outside both")
        served = [n for n in specs if n not in HUB_IDS and n not in MAGNET_HUB_IDS]
        shown = ", ".join(served[:_SHOWN_NAMES]) + (f" and {len(served) - _SHOWN_NAMES} more" if len(served) > _SHOWN_NAMES else "")
        return (f"the WebUI at {self.root} offers no model {name!r}. Served: the {len(HUB_IDS)} MusicGen/AudioGen hub ids "
                f"and the {len(MAGNET_HUB_IDS)} MAGNeT hub ids of its pickers, the folders in {self.musicgen_dir} and "
                f"{self.magnet_dir}, and the voices (*.pth) in {self.checkpoints}"
                f"{': ' + shown if shown else ' (none there now)'}")


# ---- where the WebUI keeps things ----

def webui_environment(root: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the WebUI's process sees: ``.env`` < ``environ`` < ``.env.user`` (its load order)."""
    return {**read_dotenv(os.path.join(root, ".env")), **environ, **read_dotenv(os.path.join(root, ".env.user"))}


def read_dotenv(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` allowed, quotes stripped, ``# comments`` ignored); {} if unreadable.

    Empty values are left out: the WebUI writes ``# HF_HOME=`` placeholders and means unset."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key or key.startswith("#"):
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            value = value[1:value.find(value[0], 1)]
        else:
            value = value.split(" #", 1)[0].strip()
        if value:
            out[key] = value
    return out


def hub_cache_dir(env: Mapping[str, str], root: str) -> str:
    """The Hugging Face hub cache of that environment, as huggingface_hub resolves it (relative to root)."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return _in_root(root, env[key])
    if env.get("HF_HOME"):
        return os.path.join(_in_root(root, env["HF_HOME"]), "hub")
    cache = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(_in_root(root, cache), "huggingface", "hub")


def checkpoint_sample_rate(path: str, max_pickle_bytes: int = 16 * 2**20) -> int | None:
    """The ``sample_rate`` an audiocraft checkpoint's ``xp.cfg`` names, read without unpickling
    (the pickle's opcodes are scanned, nothing is executed); None when it cannot tell."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next((i for i in archive.infolist() if i.filename.endswith("/data.pkl")), None)
            if entry is None or entry.file_size > max_pickle_bytes:
                return None
            data = archive.read(entry)
    except (OSError, zipfile.BadZipFile):
        return None
    # A plain dict holds 'sample_rate', 16000; an omegaconf node 'sample_rate', <node metadata>, '_val', 16000.
    last_key, ops_since_key = None, 0
    try:
        for op, arg, _ in pickletools.genops(data):
            ops_since_key += 1
            if arg == "sample_rate":
                last_key, ops_since_key = "sample_rate", 0
            elif isinstance(arg, str) and last_key is not None:
                last_key = arg if arg == "_val" else last_key
            elif (isinstance(arg, int) and op.name in ("BININT", "BININT1", "BININT2", "LONG1", "INT")
                  and last_key is not None and ops_since_key < 64):
                if last_key == "_val" or ops_since_key <= 3:  # the value itself, after at most a memo op
                    return arg
    except Exception:  # a truncated or unusual pickle: no answer, not an error
        return None
    return None


def _in_root(root: str, path: str) -> str:
    return os.path.normpath(os.path.join(root, os.path.expanduser(path)))


def _inside(path: str, top: str) -> bool:
    top = os.path.normpath(top)
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep) or (
        os.path.realpath(path).startswith(os.path.realpath(top).rstrip(os.sep) + os.sep))
