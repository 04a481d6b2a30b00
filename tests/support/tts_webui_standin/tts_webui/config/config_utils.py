"""Stand-in for ``tts_webui/config/config_utils.py`` (TTS-WebUI 8c9046b): one setting read from, or written into,
``config`` by namespace and key; a write saves the whole file (``_save_config``, bound here at import, as
extensions see it). Nothing left out."""

from typing import Any

from tts_webui.config._save_config import _save_config
from tts_webui.config.config import config


def get_config_value(namespace: str, key: str, default: Any = None) -> Any:
    section = config.get(namespace) if isinstance(config, dict) else None
    if not isinstance(section, dict) or key not in section:
        return default
    return section[key]


def set_config_value(namespace: str, key: str, value: Any) -> None:
    config.setdefault(namespace, {})[key] = value
    _save_config(config)
