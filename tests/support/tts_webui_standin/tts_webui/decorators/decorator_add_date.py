"""Stand-in for ``tts_webui/decorators/decorator_add_date.py`` (TTS-WebUI 8c9046b): sets ``result["date"]`` to the
time the result came back (a generator's items each get their own; ``None`` items are skipped). Nothing left
out."""

from datetime import datetime


def decorator_add_date(fn):
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        result["date"] = datetime.now()
        return result

    return wrapper


def decorator_add_date_generator(fn):
    def wrapper(*args, **kwargs):
        for result in fn(*args, **kwargs):
            if result is not None:
                result["date"] = datetime.now()
                yield result

    return wrapper
