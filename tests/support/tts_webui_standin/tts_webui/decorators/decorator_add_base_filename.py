"""Stand-in for ``tts_webui/decorators/decorator_add_base_filename.py`` (TTS-WebUI 8c9046b): names the result
``<date>__<_type>__<title of the text>`` (``result["filename"]``), sets ``result["folder_root"]`` to
``outputs/<that name>`` and creates that folder. Reads ``kwargs["_type"]``, ``kwargs["text"]`` and the
``result["date"]`` the date decorator below it added. Left out: the ``_generator_accumulated`` variant."""

import os
from datetime import datetime

from tts_webui.utils.prompt_to_title import prompt_to_title

output_path = "outputs"


def format_filename(title, model, date):
    return f"{date}__{model}__{title}"


def format_date_for_file(date: datetime):
    return date.strftime("%Y-%m-%d_%H-%M-%S")


def _named(kwargs, result):
    title = prompt_to_title(kwargs.get("text", "")) + ("_long" if result.get("long", False) else "")
    name = format_filename(title=title, model=prompt_to_title(kwargs["_type"]),
                           date=format_date_for_file(result["date"]))
    result["filename"] = name
    result["folder_root"] = os.path.join(output_path, name)
    os.makedirs(result["folder_root"], exist_ok=True)
    return result


def decorator_add_base_filename(fn):
    def wrapper(*args, **kwargs):
        return _named(kwargs, fn(*args, **kwargs))

    return wrapper


def decorator_add_base_filename_generator(fn):
    def wrapper(*args, **kwargs):
        for result in fn(*args, **kwargs):
            if result is not None:
                yield _named(kwargs, result)

    return wrapper
