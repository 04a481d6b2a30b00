"""Stand-in for ``tts_webui/decorators/gradio_dict_decorator.py`` (TTS-WebUI 8c9046b): ``dictionarize``, how a tab's
button calls its generation function. Gradio passes the input components' values in order; the function is
called with keyword arguments only (each value under the name the tab gave its component) plus
``outputs=<the output dict>``, and its result dict is turned back into ``{component: result[key]}``. A generator
function gets a generator wrapper, each item mapped the same way; the wrapper's signature names the inputs, as
Gradio reads it. Left out: ``gradio_dict_decorator`` and ``dictionarize_wraps`` (other spellings of the same
mapping that no code here uses)."""

import inspect


def _named(inputs: dict, values) -> dict:
    return dict(zip(inputs.values(), values))


def _with_signature(fn, inputs: dict):
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in inputs.values()])
    return fn


def dictionarize(fn, inputs: dict, outputs: dict, **kwargs):
    def to_components(result: dict) -> dict:
        return {component: result[key] for key, component in outputs.items()}

    if inspect.isgeneratorfunction(fn):
        def gen_wrapper(*values):
            named = _named(inputs, values)
            print(named)
            for result in fn(**named, outputs=outputs):
                yield to_components(result)

        call = gen_wrapper
    else:
        def wrapper(*values):
            named = _named(inputs, values)
            print(named)
            return to_components(fn(**named, outputs=outputs))

        call = wrapper
    return {"fn": _with_signature(call, inputs), "inputs": list(inputs), "outputs": list(outputs.values()), **kwargs}
