"""Stand-in for ``tts_webui/utils/torch_clear_memory.py`` (TTS-WebUI 8c9046b): empties torch's CUDA cache (where
CUDA is there; any error ignored) and runs the garbage collector. Nothing left out."""

import gc

import torch


def torch_clear_memory():
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
    gc.collect()
