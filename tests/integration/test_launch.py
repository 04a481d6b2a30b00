"""host.launch.start_host, the helper tests, benchmarks and supervisors start hosts with."""

from __future__ import annotations

import pytest

from tests.support.launch import short_tmp, start_host


def test_a_host_that_never_becomes_ready_is_not_left_running():
    folder = short_tmp()
    # a preload that fails keeps health at ready=false forever
    catalog = 'preload = ["broken"]\n[models.broken]\nbackend = "synth"\ncheckpoint = "/nonexistent/x.pt"\n'
    with pytest.raises(RuntimeError, match="not ready within"):
        start_host(catalog, folder=folder, timeout_s=8)
    leftover = [p for p in (folder / "run").glob("*")] if (folder / "run").exists() else []
    assert leftover == [], f"the host's socket is still there: {leftover}"
