"""Stand-in for ``tts_webui/decorators/log_function_time.py`` (TTS-WebUI 8c9046b): the innermost decorator of every
generation function, timing the call (``Timer`` prints it). Kept on purpose: the wrapper does NOT use
``functools.wraps``, so its ``__qualname__`` is ``log_function_time.<locals>.wrapper`` and the decorated
function is reachable only through its closure, which is what an inner decorator extension receives (and what
modelhost's ``client.webui_call.call_key`` unwraps). Nothing left out."""

from tts_webui.utils.timer_seed_contexts import Timer


def log_function_time(fn):
    def wrapper(*args, **kwargs):
        with Timer():
            return fn(*args, **kwargs)

    return wrapper


def log_generator_time(generator):
    def wrapper(*args, **kwargs):
        with Timer():
            yield from generator(*args, **kwargs)

    return wrapper
