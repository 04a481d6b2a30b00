"""A TTS-WebUI-shaped folder and a Hugging Face cache in the hub's own layout, with random weights.

For tests of ``--webui`` serving, the WebUI adapter and ``modelhost webui``: everything a real
TTS-WebUI install keeps where the real one keeps it (checked against rsxdalv/TTS-WebUI 8c9046b and
its audiocraft/rvc extensions), built offline through ``modelhost.host.random_weights`` (the libraries'
own classes, saved in the real formats). ``build_webui_tree(base)`` writes::

    BASE/webui/                                     the WebUI root (its working directory)
      .env                                          as the WebUI writes it at first start, HF_HOME set
      data/models/musicgen_audiogen/
        myft/{state_dict.bin,compression_state_dict.bin}       a MusicGen fine-tune (32 kHz)
        my-sfx/{...}                                           an AudioGen checkpoint (16 kHz)
        cache/                                                 skipped by the WebUI's list
      data/models/magnet/
        my-magnet/{state_dict.bin,compression_state_dict.bin}  a MAGNeT (32 kHz, 2 s segments)
        cache/                                                 skipped by the WebUI's list
      data/models/rvc/checkpoints/
        bob/bob.pth, bob/added_IVF8_Flat_nprobe_1_bob_v2.index  one folder deep: in the WebUI's list
        alice.pth                                               top level: not in the WebUI's list
        singers/deep/carol.pth, singers/deep/added_IVF8_Flat_nprobe_1_carol_v2.index
      data/models/rvc/rmvpe/rmvpe.pt                only with rmvpe=True (90 M parameters: slow)
    BASE/hf/hub/                                    HF_HOME/hub: blobs/, snapshots/REV/ links, refs/main
      models--facebook--musicgen-small/             a tiny random MusicGen under a picker hub id
      models--facebook--audiogen-medium/            a tiny random AudioGen
      models--lj1995--VoiceConversionWebUI/         hubert_base.pt (a tiny fairseq HuBERT)
      models--facebook--magnet-{small,medium}-{10,30}secs/   the MAGNeT tab's six picker ids: a tiny random
      models--facebook--audio-magnet-{small,medium}/         MAGNeT (32 kHz) and audio-MAGNeT (16 kHz)

The other nine MusicGen picker hub ids are absent (a load must name the missing download). Weights
are written once and hard-linked (the same bytes for both musicgen copies, for the MAGNeT ids of one
kind, and for the voices of one seed), so a whole tree costs a few seconds. Runs in the calling
thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MUSICGEN_HUB = "facebook/musicgen-small"
AUDIOGEN_HUB = "facebook/audiogen-medium"
HUBERT_REPO = "lj1995/VoiceConversionWebUI"
MAGNET_HUB = {"facebook/magnet-small-10secs": "magnet", "facebook/magnet-medium-10secs": "magnet",
              "facebook/magnet-small-30secs": "magnet", "facebook/magnet-medium-30secs": "magnet",
              "facebook/audio-magnet-small": "audio-magnet", "facebook/audio-magnet-medium": "audio-magnet"}
MAGNET_SEGMENT_S = 2  # every tiny MAGNeT here makes 2 s (the real ones 10 or 30)


@dataclass(frozen=True)
class WebuiTree:
    """Where everything of one built tree is. Names are the values the WebUI sends."""

    root: Path                       # the WebUI root
    hf_home: Path                    # HF_HOME as the tree's .env sets it
    hf_cache: Path                   # HF_HOME/hub: the hub cache
    hub_ids: tuple[str, ...]         # picker hub ids present in the cache
    folders: dict[str, Path]         # WebUI model_name (absolute folder path) -> folder
    voices: dict[str, Path]          # WebUI voice name ("bob/bob", "alice", "singers/deep/carol") -> .pth
    indexes: dict[str, Path]         # WebUI index value ("bob/added_IVF8_Flat_nprobe_1_bob_v2") -> .index
    hubert: Path                     # the cached hubert_base.pt (a snapshot link)
    rmvpe: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # what the WebUI's process has (HF_HOME)
    magnet_hub_ids: tuple[str, ...] = ()  # the MAGNeT tab's picker ids, all present in the cache
    magnet_folders: dict[str, Path] = field(default_factory=dict)  # MAGNeT model_name (absolute path) -> folder

    @property
    def checkpoints(self) -> Path:
        return self.root / "data" / "models" / "rvc" / "checkpoints"

    @property
    def musicgen_dir(self) -> Path:
        return self.root / "data" / "models" / "musicgen_audiogen"


def build_webui_tree(base: Path, *, rmvpe: bool = False) -> WebuiTree:
    """Write the tree described in the module docstring under ``base`` (a fresh folder)."""
    from modelhost.host import random_weights as weights

    base = Path(base).absolute()
    root, hf_home = base / "webui", base / "hf"
    stage = base / "stage"  # each checkpoint written once, then linked where it belongs
    musicgen = weights.write_audiocraft(stage / "musicgen", "musicgen", seed=1)
    audiogen = weights.write_audiocraft(stage / "audiogen", "audiogen", seed=2)
    hubert = weights.write_hubert(stage / "hubert_base.pt")
    voice_a = weights.write_rvc_voice(stage / "voice-a.pth", seed=3)
    voice_b = weights.write_rvc_voice(stage / "voice-b.pth", seed=4)
    index = weights.write_faiss_index(stage / "voice.index")
    magnets = {kind: weights.write_magnet(stage / kind, kind, seed=6 + n, segment_duration_s=MAGNET_SEGMENT_S)
               for n, kind in enumerate(("magnet", "audio-magnet"))}

    cache = hf_home / "hub"
    audiocraft_files = ("state_dict.bin", "compression_state_dict.bin")
    write_hub_snapshot(cache, MUSICGEN_HUB, {f: musicgen / f for f in audiocraft_files})
    write_hub_snapshot(cache, AUDIOGEN_HUB, {f: audiogen / f for f in audiocraft_files})
    cached_hubert = write_hub_snapshot(cache, HUBERT_REPO, {"hubert_base.pt": hubert})["hubert_base.pt"]
    for hub_id, kind in MAGNET_HUB.items():
        write_hub_snapshot(cache, hub_id, {f: magnets[kind] / f for f in audiocraft_files})

    models = root / "data" / "models"
    folders = {}
    for name, src in (("myft", musicgen), ("my-sfx", audiogen)):
        for f in audiocraft_files:
            _link(src / f, models / "musicgen_audiogen" / name / f)
        folders[os.path.join(str(models / "musicgen_audiogen"), name)] = models / "musicgen_audiogen" / name
    (models / "musicgen_audiogen" / "cache").mkdir(parents=True, exist_ok=True)
    magnet_folder = models / "magnet" / "my-magnet"
    for f in audiocraft_files:
        _link(magnets["magnet"] / f, magnet_folder / f)
    (models / "magnet" / "cache").mkdir(parents=True, exist_ok=True)

    checkpoints = models / "rvc" / "checkpoints"
    voices = {"bob/bob": voice_a, "alice": voice_b, "singers/deep/carol": voice_b}
    for name, src in voices.items():
        _link(src, checkpoints / f"{name}.pth")
    indexes = {"bob/added_IVF8_Flat_nprobe_1_bob_v2": index, "singers/deep/added_IVF8_Flat_nprobe_1_carol_v2": index}
    for name, src in indexes.items():
        _link(src, checkpoints / f"{name}.index")
    rmvpe_path = weights.write_rmvpe(models / "rvc" / "rmvpe" / "rmvpe.pt") if rmvpe else None

    write_dotenv(root, {"HF_HOME": str(hf_home)})
    return WebuiTree(
        root=root, hf_home=hf_home, hf_cache=cache, hub_ids=(MUSICGEN_HUB, AUDIOGEN_HUB), folders=folders,
        voices={n: checkpoints / f"{n}.pth" for n in voices}, indexes={n: checkpoints / f"{n}.index" for n in indexes},
        hubert=Path(cached_hubert), rmvpe=rmvpe_path, env={"HF_HOME": str(hf_home)},
        magnet_hub_ids=tuple(MAGNET_HUB), magnet_folders={os.path.join(str(models / "magnet"), "my-magnet"): magnet_folder},
    )


def catalog_toml(specs: dict, device: str = "cpu") -> str:
    """ModelSpecs (``WebuiCatalog.scan()``) as catalog tables, so a host started with ``start_host`` serves
    exactly what ``--webui`` would, without depending on that flag's wiring."""
    import json

    tables = []
    for spec in specs.values():
        lines = [f"[models.{json.dumps(spec.name)}]", f"backend = {json.dumps(spec.backend)}",
                 f"device = {json.dumps(spec.device or device)}"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in spec.options.items()]
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def write_hub_snapshot(cache: Path, repo_id: str, files: dict[str, Path], revision: str | None = None) -> dict[str, str]:
    """Put ``files`` (name -> source file) into a hub cache as ``huggingface_hub`` leaves a download:
    ``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<rev>/<name>`` relative links to the blobs, and
    ``refs/main`` holding the revision. Returns name -> snapshot path."""
    repo_dir = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    revision = revision or hashlib.sha1(repo_id.encode()).hexdigest()
    out = {}
    for name, src in files.items():
        digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        _link(Path(src), blob)
        snap = repo_dir / "snapshots" / revision / name
        snap.parent.mkdir(parents=True, exist_ok=True)
        if not snap.is_symlink():
            snap.symlink_to(os.path.relpath(blob, snap.parent))
        out[name] = str(snap)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return out


def write_dotenv(root: Path, extra: dict[str, str]) -> Path:
    """The ``.env`` TTS-WebUI writes into its root at first start (relative RVC roots with inline
    comments, cache variables commented out unless set), plus ``extra`` assignments."""
    lines = [
        "# Environment variables, generated by TTS-WebUI",
        "USE_TF=0",
        "weight_root=data/models/rvc/checkpoints # RVC voices",
        "weight_uvr5_root=data/models/rvc/uvr5_weights",
        "index_root=data/models/rvc/checkpoints",
        "outside_index_root=data/models/rvc/checkpoints",
        "rmvpe_root=data/models/rvc/rmvpe",
        *(f"# {k}=" for k in ("HUGGINGFACE_HUB_CACHE", "TORCH_HOME", "XDG_CACHE_HOME") if k not in extra),
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    path = Path(root) / ".env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _link(src: Path, dst: Path) -> None:
    """A hard link (same bytes, no copy); a copy across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
