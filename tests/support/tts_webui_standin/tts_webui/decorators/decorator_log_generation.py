"""Stand-in for ``tts_webui/decorators/decorator_log_generation.py`` (TTS-WebUI 8c9046b): prints the call's
parameters (``middleware_log_generation``) before running it. Nothing left out."""

from tts_webui.utils.log_generation import middleware_log_generation


def decorator_log_generation(fn):
    def wrapper(*args, **kwargs):
        middleware_log_generation(kwargs)
        return fn(*args, **kwargs)

    return wrapper


def decorator_log_generation_generator(fn):
    def wrapper(*args, **kwargs):
        middleware_log_generation(kwargs)
        yield from fn(*args, **kwargs)

    return wrapper
