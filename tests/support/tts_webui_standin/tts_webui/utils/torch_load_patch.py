"""Stand-in for ``tts_webui/utils/torch_load_patch.py`` (TTS-WebUI 8c9046b), which ``server.py`` applies at start:
``torch.load`` defaults to ``weights_only=False`` again (torch 2.6 turned it on) unless the caller says
otherwise. ``original_torch_load`` is the function found at import. Nothing left out."""

import functools
import logging

import torch

original_torch_load = torch.load


@functools.wraps(original_torch_load)
def patched_torch_load(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return original_torch_load(*args, **kwargs)


def apply_torch_load_patch():
    torch.load = patched_torch_load
    logging.info("torch.load patched: weights_only=False unless given")


def restore_original_torch_load():
    torch.load = original_torch_load
    logging.info("torch.load restored")
