"""A backend for tests (``backend = "tests.support.batch_oom_backend:BatchOomBackend"``): the synth model,
declared batchable (unseeded requests of one ``duration_s``), whose passes of more than one row raise
torch's real out-of-memory error, as a device does when a batch's activations do not fit; rows alone run."""

from __future__ import annotations

import torch

from modelhost.host.backends.synth import SynthBackend


class BatchOomBackend(SynthBackend):
    batch_rows = 4
    batch_ooms = 0  # passes refused so far (ps details show it)

    def batch_key(self, request):
        params = request.params
        return None if params.get("seed", -1) != -1 else ("duration_s", params.get("duration_s", 1.0))

    def generate_batch(self, requests, ctxs):
        if len(requests) > 1:
            self.batch_ooms += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory: a batch of {len(requests)} rows (test)")
        return super().generate_batch(requests, ctxs)

    def details(self):
        return {**super().details(), "batch_ooms": self.batch_ooms}
