"""A backend for tests (loaded by import path, ``backend = "tests.support.stuck_backend:StuckBackend"``):
the synth model, but a generation first hangs ``stuck_s`` seconds without any progress, as a
generate path wedged in a library call does."""

from __future__ import annotations

import time

from modelhost.host.backends.synth import SynthBackend
from modelhost.host.backends import ModelSpec


class StuckBackend(SynthBackend):
    def __init__(self, spec: ModelSpec) -> None:
        options = dict(spec.options)
        self.stuck_s = float(options.pop("stuck_s", 5.0))
        super().__init__(ModelSpec(name=spec.name, backend="synth", options=options))

    def generate(self, request, ctx):
        time.sleep(self.stuck_s)
        return super().generate(request, ctx)
