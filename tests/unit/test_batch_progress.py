"""BatchProgress: one batched pass's progress fanned out to each row; a stopped row drops out, the
pass stops only once every row has stopped."""

from __future__ import annotations

import pytest

from modelhost.client.protocol.errors import CancelledError, DeadlineExceededError
from modelhost.host.backends import BatchProgress, RunContext


def _ctx(seen: list, stop: dict, row: int) -> RunContext:
    return RunContext(emit=lambda s, t: seen.append((row, s)), is_cancelled=lambda: stop.get(row), min_interval_s=0)


def test_rows_hear_every_step_until_they_stop_and_the_pass_ends_with_the_last() -> None:
    seen: list = []
    stop: dict = {}
    progress = BatchProgress([_ctx(seen, stop, row) for row in range(3)])
    progress.progress(1, 10)
    assert seen == [(0, 1), (1, 1), (2, 1)]
    stop[1] = "cancelled"
    progress.progress(2, 10)  # row 1 drops out; the pass goes on
    assert seen[3:] == [(0, 2), (2, 2)] and isinstance(progress.stopped[1], CancelledError)
    stop[1] = None  # a dropped row stays dropped
    stop[0] = "deadline"
    progress.progress(3, 10)
    assert seen[5:] == [(2, 3)] and set(progress.stopped) == {0, 1}
    stop[2] = "deadline"
    with pytest.raises(DeadlineExceededError):
        progress.progress(4, 10)
    assert len(seen) == 6 and set(progress.stopped) == {0, 1, 2}
