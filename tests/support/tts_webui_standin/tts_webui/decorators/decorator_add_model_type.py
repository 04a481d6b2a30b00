"""Stand-in for ``tts_webui/decorators/decorator_add_model_type.py`` (TTS-WebUI 8c9046b): calls the decorated
function with ``_type=<model type>`` added to its keyword arguments (what an inner decorator extension reads to
tell the tabs apart). Nothing left out."""


def decorator_add_model_type(model_type):
    def decorate(fn):
        def inner(*args, **kwargs):
            return fn(*args, _type=model_type, **kwargs)

        return inner

    return decorate


def decorator_add_model_type_generator(model_type):
    def decorate(fn):
        def inner(*args, **kwargs):
            yield from fn(*args, _type=model_type, **kwargs)

        return inner

    return decorate
