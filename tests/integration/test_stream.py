"""Streaming generation through a real host: chunks arrive before the end, join into the exact result."""

from __future__ import annotations

import numpy as np

from modelhost.client import Client


def test_seeded_stream_joins_into_the_non_streamed_result(model_host):
    with Client(model_host.address) as c:
        params = {"duration": 3, "seed": 11}
        job = c.stream("musicgen", "drums", params=params, interval_s=0.5)
        chunks = list(job)
        streamed = job.result()
        plain = c.generate("musicgen", "drums", params=params)
    assert len(chunks) >= 3
    assert [ch.seq for ch in chunks] == list(range(len(chunks)))
    assert chunks[0].offset == 0
    for a, b in zip(chunks, chunks[1:]):
        assert b.offset == a.offset + a.audio.shape[-1]
    assert np.array_equal(streamed.audio, plain.audio)
    joined = np.concatenate([ch.audio for ch in chunks], axis=-1)
    assert joined.shape == plain.audio.shape
    assert np.abs(joined - plain.audio).max() < 1e-5
