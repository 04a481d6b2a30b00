"""A backend for tests (loaded by import path, ``backend = "tests.support.oom_backend:OomBackend"``):
the synth model, but its first ``oom_times`` generations raise torch's real out-of-memory error,
as a CUDA device does when it is full."""

from __future__ import annotations

import torch

from modelhost.host.backends.synth import SynthBackend
from modelhost.host.backends import ModelSpec


class OomBackend(SynthBackend):
    def __init__(self, spec: ModelSpec) -> None:
        options = dict(spec.options)
        self.oom_left = int(options.pop("oom_times", 1))
        super().__init__(ModelSpec(name=spec.name, backend="synth", options=options))

    def generate(self, request, ctx):
        if self.oom_left > 0:
            self.oom_left -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")
        return super().generate(request, ctx)
