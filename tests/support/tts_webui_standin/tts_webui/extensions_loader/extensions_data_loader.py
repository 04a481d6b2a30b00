"""Stand-in for ``tts_webui/extensions_loader/extensions_data_loader.py`` (TTS-WebUI 8c9046b): the registered
decorator extensions. Three lists are read from the working directory (the WebUI's folder): ``extensions.json``
(shipped with the WebUI), ``data/extensions-catalog/lib/extensions.json`` (the synced catalog) and
``extensions.external.json`` (the user's, where ``modelhost webui install`` registers the adapter); their
``decorators`` are joined external first, then catalog, then base, keeping the first entry of each
``package_name``. A file that cannot be read counts as empty (the real one prints why). Left out: interface
extensions (``tabs``, ``tabsInGroups``), the other keys' merge, the example entry and creating an empty
external file."""

import json
import os
from typing import Any, Dict, List

DEFAULT_EXTENSIONS_FILE = "extensions.json"
EXTERNAL_EXTENSIONS_FILE = "extensions.external.json"
CATALOG_EXTENSIONS_FILE = os.path.join("data", "extensions-catalog", "lib", "extensions.json")


def load_json_file(file_path: str) -> Dict[str, Any]:
    try:
        with open(file_path) as source:
            return json.load(source)
    except Exception as exc:
        print(f"\n! Failed to load {file_path}: {exc}")
        return {}


def _decorators_in(file_path: str, quiet_if_missing: bool) -> List[Any]:
    if quiet_if_missing and not os.path.exists(file_path):
        return []
    data = load_json_file(file_path)
    found = data.get("decorators", []) if isinstance(data, dict) else []
    return found if isinstance(found, list) else []


def _first_of_each_package(entries: List[Any]) -> List[Any]:
    kept, seen = [], set()
    for entry in entries:
        name = entry.get("package_name") if isinstance(entry, dict) else None
        if name and name in seen:
            continue
        if name:
            seen.add(name)
        kept.append(entry)
    return kept


def get_decorator_extensions() -> List[Dict[str, Any]]:
    return _first_of_each_package([
        *_decorators_in(EXTERNAL_EXTENSIONS_FILE, quiet_if_missing=True),
        *_decorators_in(CATALOG_EXTENSIONS_FILE, quiet_if_missing=True),
        *_decorators_in(DEFAULT_EXTENSIONS_FILE, quiet_if_missing=False),
    ])


def get_decorator_extensions_by_class(class_name: str) -> List[Dict[str, Any]]:
    return [x for x in get_decorator_extensions()
            if x.get("extension_type") == "decorator" and x.get("extension_class") == class_name]
