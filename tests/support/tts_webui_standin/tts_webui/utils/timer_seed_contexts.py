"""Stand-in for ``tts_webui/utils/timer_seed_contexts.py`` (TTS-WebUI 8c9046b): ``Timer`` prints how long its block
took; ``Seed(seed)`` applies ``set_seed(seed)`` on entry and ``set_seed`` of what that returned on exit (so a
fixed seed is applied again when the block ends). Neither restores anything when its block raises, as in the
real one (plain ``contextmanager`` generators without ``try``). Nothing left out."""

import time
from contextlib import contextmanager

from tts_webui.utils.set_seed import set_seed


@contextmanager
def Timer():
    started = time.time()
    yield
    print("Generated in", f"{time.time() - started:.3f}", "seconds")


@contextmanager
def Seed(seed):
    applied = set_seed(seed)
    yield
    set_seed(applied)
