"""Stand-in for ``tts_webui/utils/list_dir_models.py`` (TTS-WebUI 8c9046b): ``unload_model_button(prefix)``, a tab's
"Unload Model" button, whose click calls this module's ``unload_model(model_namespace=prefix)`` (the name bound
here at import, from ``manage_model_state``), under the API name ``<prefix>_unload_model``. Left out: the model
pickers (``model_select_ui``, ``_list_dir_models``, ``_get_models``: an icon-button package and folder
listings), and the button's cosmetic relabelling while it unloads."""

import gradio as gr

from tts_webui.utils.manage_model_state import unload_model


def unload_model_button(prefix: str):
    button = gr.Button(value="Unload Model", variant="stop")
    button.click(fn=lambda: unload_model(model_namespace=prefix), api_name=f"{prefix}_unload_model")
    return button
