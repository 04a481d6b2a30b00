"""What the real TTS-WebUI offers and how it names things, written once for the host's WebUI catalog
(``host.webui_catalog``) and the adapter (``routing``, ``forward``, ``patch``, ``webui_models``).

Read in rsxdalv/TTS-WebUI 8c9046b and its extensions tts_webui_extension.audiocraft 4271f86
(``musicgen_audiogen`` and ``magnet/magnet_tab.py``) and tts_webui_extension.rvc 59d7720. Pure data and
path arithmetic: no I/O, any thread, torch-free (the adapter runs in the WebUI's Python 3.10).
"""

from __future__ import annotations

from pathlib import Path

# The audiocraft extension's MusicGen/AudioGen picker, in its order: (label, hub id).
MUSICGEN_PICKER: tuple[tuple[str, str], ...] = (
    ("Melody", "facebook/musicgen-melody"), ("Medium", "facebook/musicgen-medium"),
    ("Small", "facebook/musicgen-small"), ("Large", "facebook/musicgen-large"),
    ("Audiogen", "facebook/audiogen-medium"), ("Melody Large", "facebook/musicgen-melody-large"),
    ("Stereo Small", "facebook/musicgen-stereo-small"), ("Stereo Medium", "facebook/musicgen-stereo-medium"),
    ("Stereo Melody", "facebook/musicgen-stereo-melody"), ("Stereo Large", "facebook/musicgen-stereo-large"),
    ("Stereo Melody Large", "facebook/musicgen-stereo-melody-large"),
)
MUSICGEN_IDS = tuple(hub_id for _, hub_id in MUSICGEN_PICKER)
AUDIOGEN_HUB_ID = "facebook/audiogen-medium"  # the WebUI loads AudioGen for exactly this name, MusicGen otherwise
# The MAGNeT tab's picker, in its order: (label, hub id).
MAGNET_PICKER: tuple[tuple[str, str], ...] = (
    ("Magnet, 10s, Small", "facebook/magnet-small-10secs"), ("Magnet, 10s, Medium", "facebook/magnet-medium-10secs"),
    ("Magnet, 30s, Small", "facebook/magnet-small-30secs"), ("Magnet, 30s, Medium", "facebook/magnet-medium-30secs"),
    ("Audio, Magnet, Small", "facebook/audio-magnet-small"), ("Audio, Magnet, Medium", "facebook/audio-magnet-medium"),
)
MAGNET_IDS = tuple(hub_id for _, hub_id in MAGNET_PICKER)
HUBERT_REF = "hf://lj1995/VoiceConversionWebUI/hubert_base.pt"  # where the WebUI's RVC tab downloads HuBERT
# Folders under the WebUI root (the first level of the first two holds one model each, except "cache").
MUSICGEN_DIR = ("data", "models", "musicgen_audiogen")
MAGNET_DIR = ("data", "models", "magnet")
RVC_CHECKPOINTS_DIR = ("data", "models", "rvc", "checkpoints")  # voices (.pth) and indexes (.index), one folder deep
MODEL_MAP_ENV = "MODELHOST_WEBUI_MODELS"  # WEBUI_NAME=HOST_MODEL,... where a hand-written catalog names a model otherwise


def under(root: str | Path, parts: tuple[str, ...]) -> Path:
    """A WebUI folder (``MUSICGEN_DIR``, ...) under ``root``, absolute, as the WebUI's own paths are."""
    return Path(root).absolute().joinpath(*parts)
