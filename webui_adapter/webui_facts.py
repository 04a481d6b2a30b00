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
# The WebUI's Python environments: its main one and one per proxied extension (``.venvs/<package_name>``,
# setup_proxy_extension.py); each runs decorated calls the host serves as the model ``webui:<label>``.
MAIN_ENV_DIR = ("installer_files", "env")
PROXY_ENVS_DIR = (".venvs",)
MAIN_ENV_LABEL = "main"
CALL_MODEL_PREFIX = "webui:"  # + label: the host model that runs an environment's calls in a WebUI runner
MODEL_MAP_ENV = "MODELHOST_WEBUI_MODELS"  # WEBUI_NAME=HOST_MODEL,... where a hand-written catalog names a model otherwise


def under(root: str | Path, parts: tuple[str, ...]) -> Path:
    """A WebUI folder (``MUSICGEN_DIR``, ...) under ``root``, absolute, as the WebUI's own paths are."""
    return Path(root).absolute().joinpath(*parts)


def env_python(env_dir: str | Path) -> Path | None:
    """The environment's python as the WebUI spells it (bin/python; on Windows python.exe or Scripts/python.exe), or
    None. Not resolved: a venv's python links to its base interpreter."""
    env = Path(env_dir)
    return next((c for c in (env / "bin" / "python", env / "python.exe", env / "Scripts" / "python.exe") if c.is_file()),
                None)


def environments(root: str | Path) -> dict[str, Path]:
    """label -> environment folder of every Python environment of the WebUI at ``root``: ``main`` for its
    ``installer_files/env``, the package name for each ``.venvs/<package>`` (only those holding a python)."""
    found: dict[str, Path] = {}
    main = under(root, MAIN_ENV_DIR)
    if env_python(main) is not None:
        found[MAIN_ENV_LABEL] = main
    proxies = under(root, PROXY_ENVS_DIR)
    try:
        names = sorted(p.name for p in proxies.iterdir() if p.is_dir())
    except OSError:
        names = []
    for name in names:
        if name != MAIN_ENV_LABEL and env_python(proxies / name) is not None:
            found[name] = proxies / name
    return found
