"""A backend for tests (by import path, ``backend = "tests.support.faulty_backend:FaultyBackend"``) that misbehaves
the way real model code does, on request.

Its healthy work is small and numpy-only (no torch: it also serves from a runner under a second Python
environment that has no torch): a seeded noise-and-tone signal made in ``steps`` steps of ``step_s``
seconds each, with progress at every step and, for a streaming request, a chunk per step. What a request
may ask for in ``params``:

* ``fault``: ``"segv"`` (a read through a null pointer in native code: SIGSEGV), ``"gil"`` (native code that
  holds the interpreter lock for ``hold_s`` seconds: libc ``sleep`` through ``ctypes.PyDLL``), ``"exit"``
  (``os._exit(3)``), ``"ignore_cancel"`` (sleeps ``hold_s`` seconds without a progress point, so a cancel
  is never seen);
* ``fault_after``: the step the fault happens at (0: before any progress or chunk);
* ``once``: a file path; the fault happens only while that file does not exist (it is created first), so a
  request that crashes its runner once succeeds when the host runs it again.

Before a fault it prints one line to stderr (``faulty backend: about to ...``), which the host keeps as the
runner's last output.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import numpy as np

from modelhost.client.protocol.errors import BadParamsError
from modelhost.host.backends import Backend, GenerateOutput, GenerateRequest, ModelSpec, RunContext, check_options

RATE = 16000


class FaultyBackend(Backend):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts = check_options(spec, {"steps", "step_s"})
        self.steps = int(opts.get("steps", 10))
        self.step_s = float(opts.get("step_s", 0.02))
        self.loaded = False

    def load(self, device: str) -> None:
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def memory_bytes(self) -> int:
        return 1024 if self.loaded else 0

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        params = dict(request.params)
        seed = int(params.pop("seed", 1))
        fault = params.pop("fault", None)
        fault_after = int(params.pop("fault_after", 0))
        hold_s = float(params.pop("hold_s", 5.0))
        once = params.pop("once", None)
        steps = int(params.pop("steps", self.steps))
        if params:
            raise BadParamsError(f"unknown parameters for a faulty model: {sorted(params)}")
        if fault is not None and once is not None:
            if os.path.exists(once):
                fault = None
            else:
                open(once, "w").close()
        rng = np.random.default_rng(seed)
        per_step = RATE // 10
        out = []
        for step in range(steps + 1):
            if fault is not None and step == fault_after:
                self._misbehave(fault, hold_s)
            if step == steps:
                break
            t = np.arange(per_step) / RATE
            piece = (0.3 * np.sin(2 * np.pi * (220 + 20 * step) * t) + 0.05 * rng.standard_normal(per_step)).astype(np.float32)
            out.append(piece)
            time.sleep(self.step_s)
            ctx.chunk(piece, RATE, step * per_step)
            ctx.progress(step + 1, steps)
        return GenerateOutput(audio=np.concatenate(out) if out else np.zeros(0, np.float32), sample_rate=RATE,
                              info={"seed": seed, "pid": os.getpid()})

    @staticmethod
    def _misbehave(fault: str, hold_s: float) -> None:
        print(f"faulty backend: about to {fault}", file=sys.stderr, flush=True)
        if fault == "segv":
            ctypes.string_at(0)  # a read through a null pointer, in C
        elif fault == "gil":
            libc = ctypes.PyDLL(None)  # PyDLL: the call keeps the interpreter lock, as a careless extension does
            libc.sleep(int(hold_s))
        elif fault == "exit":
            os._exit(3)
        elif fault == "ignore_cancel":
            time.sleep(hold_s)
        else:
            raise BadParamsError(f"unknown fault {fault!r}")
