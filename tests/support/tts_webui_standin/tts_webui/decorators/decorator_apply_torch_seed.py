"""Stand-in for ``tts_webui/decorators/decorator_apply_torch_seed.py`` (TTS-WebUI 8c9046b): runs the call inside
``Seed(int(kwargs["seed"]))`` (-1 when the call has no seed). It is an outer decorator: the seed is set in the
calling process before the inner chain (and a decorator extension) runs. Nothing left out."""

from tts_webui.utils.timer_seed_contexts import Seed


def _seed_of(kwargs):
    return int(kwargs.get("seed", -1))


def decorator_apply_torch_seed(fn):
    def wrapper(*args, **kwargs):
        with Seed(_seed_of(kwargs)):
            return fn(*args, **kwargs)

    return wrapper


def decorator_apply_torch_seed_generator(fn):
    def wrapper(*args, **kwargs):
        with Seed(_seed_of(kwargs)):
            yield from fn(*args, **kwargs)

    return wrapper
