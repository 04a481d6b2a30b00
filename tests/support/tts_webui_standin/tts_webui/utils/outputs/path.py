"""Stand-in for ``tts_webui/utils/outputs/path.py`` (TTS-WebUI 8c9046b): where a result's files go,
``<result["folder_root"]>/<result["filename"]><ext>``, the folder created on first use (remembered per folder).
Nothing left out."""

import os

_dir_cache = {}


def _get_relative_output_path(result_dict, *parts):
    folder = result_dict["folder_root"]
    if folder not in _dir_cache:
        os.makedirs(folder, exist_ok=True)
        _dir_cache[folder] = True
    return os.path.join(folder, *parts)


def get_relative_output_path_ext(result_dict, ext: str):
    return _get_relative_output_path(result_dict, result_dict["filename"] + ext)
