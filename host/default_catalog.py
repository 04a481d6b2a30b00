"""The catalog a host serves when it is given none: MusicGen, AudioGen and the RVC voices of a folder.

Real weights are used where they are present: ``facebook/musicgen-small`` and
``facebook/audiogen-medium`` in the Hugging Face cache (or ``$AUDIOCRAFT_CACHE_DIR``), RVC voices
(``*.pth``, with ``hubert_base.pt`` and optionally ``rmvpe.pt``) in ``CACHE/rvc/``, served as
``voices/NAME``. For whatever is
missing, small random-weight models are built once under ``CACHE/random-weights/`` through the real
formats and loaders (they make noise, not music), and the host says so at start. CACHE is
``$MODELHOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelhost``, else ``~/.cache/modelhost``.
Runs once, in the main thread, before the host starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HUB_MODELS = {"musicgen": "facebook/musicgen-small", "audiogen": "facebook/audiogen-medium"}


def default_catalog(cache_dir: Path, audiocraft_cache: str | None) -> tuple[dict[str, Any], list[str]]:
    """The catalog as parsed TOML would be, and one line per model that uses random weights."""
    notes: list[str] = []
    models: dict[str, Any] = {}
    random_dir = cache_dir / "random-weights"
    for family, repo in HUB_MODELS.items():
        if _in_hub_cache(repo, audiocraft_cache):
            models[family] = {"backend": family, "checkpoint": repo}
        else:
            folder = random_dir / family
            if not (folder / "state_dict.bin").is_file():
                from modelhost.host.random_weights import write_audiocraft

                write_audiocraft(folder, family)
            models[family] = {"backend": family, "checkpoint": str(folder)}
            notes.append(f"{family}: {repo} is not in the Hugging Face cache; serving small RANDOM weights from {folder}")
    voices = cache_dir / "rvc"
    if not (sorted(voices.glob("*.pth")) and (voices / "hubert_base.pt").is_file()):
        voices = random_dir / "rvc"
        _random_voices(voices)
        notes.append(f"voices: no RVC voices (with hubert_base.pt) in {cache_dir / 'rvc'}; serving two small RANDOM "
                     f"voices from {voices}")
    models["voices"] = {"backend": "rvc", "folder": str(voices), "hubert": str(voices / "hubert_base.pt")}
    if (voices / "rmvpe.pt").is_file():
        models["voices"]["rmvpe"] = str(voices / "rmvpe.pt")
    return {"preload": list(models), "models": models}, notes


def _random_voices(folder: Path) -> None:
    """Two voices (one with an index) sharing one HuBERT, laid out as a user's voice folder is."""
    from modelhost.host import random_weights as weights

    files = {"voice-a.pth": lambda p: weights.write_rvc_voice(p, seed=1),
             "voice-a.index": weights.write_faiss_index,
             "voice-b.pth": lambda p: weights.write_rvc_voice(p, seed=2),
             "hubert_base.pt": weights.write_hubert}
    for name, write in files.items():
        if not (folder / name).is_file():
            write(folder / name)


def _in_hub_cache(repo: str, cache_dir: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = [try_to_load_from_cache(repo, name, cache_dir=cache_dir) for name in ("state_dict.bin", "compression_state_dict.bin")]
    return all(isinstance(f, str) for f in found)
