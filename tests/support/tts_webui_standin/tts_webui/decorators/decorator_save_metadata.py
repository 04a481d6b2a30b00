"""Stand-in for ``tts_webui/decorators/decorator_save_metadata.py`` (TTS-WebUI 8c9046b): ``result["metadata"]`` is
the call's keyword arguments (``outputs`` set to None) with the metadata versions, the result's date as text and
the SHA-256 of the audio's bytes; it is written as ``<folder_root>/<filename>.json``, values JSON cannot hold
replaced by a ``<<non-serializable: TYPE>>`` note. A generator's items each get their metadata; the file is
written once, for the last item. Nothing left out."""

import json

from tts_webui.utils.audio_array_to_sha256 import audio_array_to_sha256
from tts_webui.utils.outputs.path import get_relative_output_path_ext


def _with_metadata(result, kwargs):
    result["metadata"] = {
        "_version": "0.0.1",
        "_hash_version": "0.0.2",
        **kwargs,
        "outputs": None,
        "date": str(result["date"]),
        "hash": audio_array_to_sha256(result["audio_out"][1]),
    }
    return result


def _write_metadata(result):
    path = get_relative_output_path_ext(result, ".json")
    print("Saving metadata to", path)
    with open(path, "w") as out:
        json.dump(result["metadata"], out, indent=2, skipkeys=True,
                  default=lambda value: f"<<non-serializable: {type(value).__qualname__}>>")
    return result


def decorator_save_metadata(fn):
    def wrapper(*args, **kwargs):
        return _write_metadata(_with_metadata(fn(*args, **kwargs), kwargs))

    return wrapper


def decorator_save_metadata_generator(fn):
    def wrapper(*args, **kwargs):
        last = None
        for result in fn(*args, **kwargs):
            if result is not None:
                last = _with_metadata(result, kwargs)
                yield last
        _write_metadata(last)

    return wrapper
