"""Stand-in for ``tts_webui/config/config.py`` (TTS-WebUI 8c9046b): ``config``, the settings read once when this
module is first imported (``load_config``: which writes ``config.json`` when it is missing). Nothing left out."""

from tts_webui.config.load_config import load_config

config = load_config()
