"""Stand-in for ``tts_webui/config/_save_config.py`` (TTS-WebUI 8c9046b): ``_save_config`` rewrites the whole
``config.json`` in the working directory. Nothing left out (the real ``_save_json`` helper is folded in)."""

import json


def _save_config(data: dict):
    with open("config.json", "w") as out:
        json.dump(data, out, indent=2)
