"""Stand-in for ``tts_webui/utils/set_seed.py`` (TTS-WebUI 8c9046b): ``set_seed(seed)`` seeds Python's ``random``,
numpy's global generator and torch (CPU and every CUDA device) and sets ``PYTHONHASHSEED``. ``-1`` turns cuDNN's
deterministic mode off (benchmark on), anything else turns it on; a seed of 0 or below is replaced by a fresh
random one in [1, 2**32 - 1). Returns the seed given, except 0, for which it returns the seed drawn (``Seed``
re-applies what it returns when its block ends). Nothing left out."""

import os
import random

import numpy as np
import torch


def set_seed(seed: int = 0):
    given = seed
    deterministic = seed != -1
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if seed <= 0:
        seed = np.random.default_rng().integers(1, 2**32 - 1)  # its own generator: untouched by np.random.seed
    seed = int(seed)
    assert 0 < seed < 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed if given == 0 else given
