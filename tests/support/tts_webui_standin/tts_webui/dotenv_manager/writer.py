"""Stand-in for ``tts_webui/dotenv_manager/writer.py`` (TTS-WebUI 8c9046b): the default ``.env`` (the RVC folders
under ``data/models/rvc`` and the model caches this process was started with, commented out where unset) and
writing it. Left out: the JSON env store (``env_store.json``, ``update_dotenv``, ``delete_namespace``)."""

import os

RVC_DEFAULTS = {
    "weight_root": "data/models/rvc/checkpoints",
    "weight_uvr5_root": "data/models/rvc/uvr5_weights",
    "index_root": "data/models/rvc/checkpoints",
    "outside_index_root": "data/models/rvc/checkpoints",
    "rmvpe_root": "data/models/rvc/rmvpe",
}
CACHES = ("HUGGINGFACE_HUB_CACHE", "HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME")


def env_entry(name, value, comment, null_if_empty=True):
    disabled = "# " if null_if_empty and not value else ""
    return f"# {comment}\n{disabled}{name}={value}\n"


def generate_env(*, model_location_hf_env_var: str = "", model_location_hf_env_var2: str = "",
                 model_location_th_home: str = "", model_location_th_xdg: str = ""):
    given = dict(zip(CACHES, (model_location_hf_env_var, model_location_hf_env_var2, model_location_th_home,
                              model_location_th_xdg)))
    lines = ["", "# Written by the WebUI; put your own variables in .env.user, which wins", "",
             "USE_TF=0", ""]
    lines += [f"{name}={value}" for name, value in RVC_DEFAULTS.items()]
    text = "\n".join(lines) + "\n\n"
    for name in CACHES:
        text += env_entry(name, given[name] or os.environ.get(name, ""), f"model cache ({name})")
    return text + "\n"


def write_env(text: str):
    with open(".env", "w") as out:
        out.write(text)
