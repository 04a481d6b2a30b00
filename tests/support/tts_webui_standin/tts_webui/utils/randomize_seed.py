"""Stand-in for ``tts_webui/utils/randomize_seed.py`` (TTS-WebUI 8c9046b): the tabs' seed box. ``randomize_seed``
returns a fresh seed in [0, 2**32 - 1) when asked to, else ``int(seed)``; ``randomize_seed_ui`` builds the
Textbox (default ``"-1"``) and "Randomize seed" checkbox and returns the Textbox with the click handler that
rewrites it before a generation. Nothing left out."""

import gradio as gr
import numpy as np


def randomize_seed(seed, randomize_seed):
    return np.random.randint(0, 2**32 - 1, dtype=np.uint32) if randomize_seed else int(seed)


def randomize_seed_ui():
    with gr.Accordion("Seed", open=True), gr.Group(), gr.Row(equal_height=True):
        seed_input = gr.Textbox(value="-1", show_label=False, container=False, scale=9)
        randomize = gr.Checkbox(value=True, label="Randomize seed", scale=1)
    return seed_input, {"fn": randomize_seed, "inputs": [seed_input, randomize], "outputs": [seed_input]}
