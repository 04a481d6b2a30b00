"""Stand-in for ``tts_webui/utils/manage_model_state.py`` (TTS-WebUI 8c9046b): how the WebUI keeps models loaded.

``@manage_model_state(namespace)`` makes a loader keep one model per namespace in ``model_states`` (namespace ->
``ModelState``), keyed by the loader's FIRST argument only (``model_name``, default ``"default"``): a call with the
name already loaded returns the kept model without calling the loader; any other name first unloads the
namespace (silently), then loads and keeps the new one. Other arguments never count. ``unload_model`` drops a
namespace's model and clears torch's memory (a message through ``show`` unless ``silent``);
``unload_all_models`` does it for every namespace, not silently. ``show`` prints and shows a Gradio toast.
Nothing left out."""

import gradio as gr

from tts_webui.utils.torch_clear_memory import torch_clear_memory


def show(message):
    print(message)
    gr.Info(message)


class ModelState:
    def __init__(self):
        self._model = None
        self._model_name = None

    def set_model(self, model, model_name):
        self._model, self._model_name = model, model_name

    def get_model(self):
        return self._model

    def is_model_loaded(self, model_name):
        return self._model is not None and self._model_name == model_name

    def get_model_name(self):
        return self._model_name

    def set_model_name(self, model_name):
        self._model_name = model_name


model_states = {}


def manage_model_state(model_namespace):
    def decorator(func):
        def wrapper(model_name="default", *args, **kwargs):
            state = model_states.setdefault(model_namespace, ModelState())
            if not state.is_model_loaded(model_name):
                show(f"Loading model '{model_name}'...")
                unload_model(model_namespace, silent=True)
                state.set_model(func(model_name, *args, **kwargs), model_name)
            return state.get_model()

        return wrapper

    return decorator


def is_model_loaded(model_namespace):
    return model_namespace in model_states and model_states[model_namespace].get_model() is not None


def unload_model(model_namespace, silent=False):
    if is_model_loaded(model_namespace):
        model_states[model_namespace].set_model(None, None)
        torch_clear_memory()
        if not silent:
            show(f"Model in namespace '{model_namespace}' has been unloaded.")
    elif not silent:
        show(f"No model loaded in namespace '{model_namespace}'.")


def unload_all_models():
    for model_namespace in list(model_states):
        unload_model(model_namespace)


def list_loaded_models_as_markdown():
    rows = [f"| {ns} | {state.get_model_name() or 'Not Loaded'} |" for ns, state in model_states.items()]
    return "\n".join(["| Model Namespace | Model Name |", "|-----------------|------------|", *rows])


def rename_model(model_namespace, new_name):
    if model_namespace in model_states:
        model_states[model_namespace].set_model_name(new_name)


def get_current_model(model_namespace):
    state = model_states.get(model_namespace)
    return state.get_model() if state is not None else None
