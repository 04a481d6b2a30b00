"""TTS-WebUI's OpenAI-compatible API extension (rsxdalv/tts_webui_extension.openai_tts_api, the release pinned in
setup.sh), run as the WebUI runs it: its own FastAPI app under uvicorn, for the registration tests.

``python -m tests.support.tts_webui_api PORT`` serves it on 127.0.0.1:PORT (its key from $OPENAI_API_KEY, as
in the WebUI). The extension is a plugin of the WebUI and reads the WebUI's settings through
``tts_webui.config.config_utils.get_config_value``; the WebUI itself is not installed here, so
``stand_in_for_the_webui_config`` provides that one function, answering every setting with its default
(no saved settings), before the extension is imported. Everything else is the extension's own code.
"""

from __future__ import annotations

import sys
import types


def stand_in_for_the_webui_config() -> None:
    """``tts_webui.config.config_utils.get_config_value`` as a WebUI with no saved settings answers it."""
    if "tts_webui.config.config_utils" in sys.modules:
        return
    config_utils = types.ModuleType("tts_webui.config.config_utils")
    config_utils.get_config_value = lambda section, key, default=None: default
    for name in ("tts_webui", "tts_webui.config"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tts_webui.config"].config_utils = config_utils
    sys.modules["tts_webui.config.config_utils"] = config_utils


def main() -> None:
    stand_in_for_the_webui_config()
    import uvicorn

    from tts_webui_extension.openai_tts_api.router import app

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")


if __name__ == "__main__":
    main()
