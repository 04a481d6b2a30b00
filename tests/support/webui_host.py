"""A host catalog that serves a TTS-WebUI folder's models under the WebUI's own names, for adapter tests.

The entries are exactly what ``modelhost.host.webui.WebuiCatalog`` lists for the folder (the picker's
hub ids from the WebUI's Hugging Face cache, its ``musicgen_audiogen`` folders by absolute path, its
voices by relative name with ``index_root``), written out as a TOML catalog with quoted keys, so the
adapter meets the names a host started with ``--webui`` serves. Runs in the calling thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping


def webui_catalog_toml(root: Path, environ: Mapping[str, str] | None = None, host: str = "heartbeat_s = 0.25") -> str:
    from modelhost.host.webui import WebuiCatalog

    lines = ["[host]", host, ""]
    for name, spec in WebuiCatalog(str(root), environ=dict(environ or {})).scan().items():
        lines.append(f"[models.{json.dumps(name)}]")
        lines.append(f"backend = {_toml(spec.backend)}")
        if spec.device:
            lines.append(f"device = {_toml(spec.device)}")
        lines += [f"{key} = {_toml(value)}" for key, value in spec.options.items()]
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
