"""Forwards a TTS-WebUI's MusicGen, AudioGen, MAGNeT and RVC calls to the modelhost host: the decorator extension
(``main``), the patch for older WebUIs (``patch``) and the light UI (``ui``, ``python -m webui_adapter``), over one
client (``forward``). Torch-free; runs in the WebUI's Python (3.10 too)."""
