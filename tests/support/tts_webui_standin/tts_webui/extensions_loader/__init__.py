"""Stand-in for TTS-WebUI's ``tts_webui.extensions_loader`` package (8c9046b): the decorator-extension loader and
the extension lists it reads. Left out: interface extensions (tabs), the proxy harness and proxy setup."""
