"""Stand-in for TTS-WebUI's ``tts_webui.dotenv_manager`` package (8c9046b): ``init`` and ``writer``."""
