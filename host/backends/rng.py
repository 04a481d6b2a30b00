"""Process-wide RNG discipline for backends that sample from torch's global generator.

audiocraft samples with torch's global RNG, and RVC's NSF source draws noise from it, so two models
generating at once in two worker threads would disturb each other's draws. A seeded request must
run alone to be reproducible; unseeded requests may overlap each other. ``GlobalRng`` is a
reader/writer gate: ``seeded(seed)`` is exclusive and seeds torch (all devices), numpy and random
as TTS-WebUI does; ``unseeded()`` is shared.
"""

from __future__ import annotations

import random
import secrets
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from modelhost.client.protocol.errors import BadParamsError


class GlobalRng:
    """Exclusive for seeded work, shared for unseeded work; writers are not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        with self._cond:
            self._waiting_exclusive += 1
            while self._exclusive or self._shared:
                self._cond.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            torch.manual_seed(seed)  # every device's generator
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()

    @contextmanager
    def unseeded(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting_exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    def run(self, seed: int | None):
        """``seeded(seed)`` for a fixed seed, ``unseeded()`` for None."""
        return self.seeded(seed) if seed is not None else self.unseeded()


GLOBAL_RNG = GlobalRng()


def parse_seed(value: object) -> tuple[int | None, int]:
    """TTS-WebUI's seed semantics -> (seed to set or None, seed to report).

    -1: non-deterministic (nothing is seeded; reported as -1); 0: a fresh random seed, set and
    reported so the result can be reproduced; any other int: that seed.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 2**63:
        raise BadParamsError(f"seed must be an int >= -1 (-1: non-deterministic, 0: random), got {value!r}")
    if value == -1:
        return None, -1
    if value == 0:
        value = secrets.randbelow(2**31 - 1) + 1
    return value, value
