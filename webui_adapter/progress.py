"""Where the host's progress is shown: the running Gradio event's progress bar, else the console.

TTS-WebUI's call chains pass no progress callable to an inner decorator. Gradio still lets a handler
report progress without declaring a ``gr.Progress`` parameter: Gradio sets the running event in
context variables of the thread that runs the handler, and a ``gr.Progress()`` created there reports
to that event (Gradio 4.x to 6.x: ``gradio/helpers.py`` ``Progress._progress_callback`` reads
``LocalContext.blocks`` and ``LocalContext.event_id``). The client calls the progress callback in the
thread that waits for the result, which is the handler's thread, so the bar fills as the host works.
Outside a Gradio event (a script, an old Gradio without ``LocalContext``) progress goes to the
console in audiocraft's own format.

Runs in the caller's thread (a WebUI request thread).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

ProgressFn = Callable[[int, int], None]
DESCRIPTION = "generating on the modelhost host"


def console_progress(step: int, total: int) -> None:
    """Host progress on the console, as audiocraft prints it with ``progress=True``."""
    if total > 1:  # an RVC conversion has no steps to show
        print(f"\r{step: 6d} / {total: 6d}", end="\n" if step >= total else "", flush=True)


def for_call(progress: Any = None) -> ProgressFn:
    """The progress sink for a call: ``progress`` if the caller passed a ``gr.Progress``-like callable,
    else the running Gradio event's progress bar, else the console."""
    if callable(progress):
        return _to_gradio(progress)
    bar = gradio_event_progress()
    return bar if bar is not None else console_progress


def gradio_event_progress() -> ProgressFn | None:
    """A sink feeding the progress bar of the Gradio event running in this thread; None outside one."""
    gradio = sys.modules.get("gradio")  # never import Gradio here: a WebUI that runs this has it loaded
    if gradio is None:
        return None
    try:
        from gradio.context import LocalContext

        if LocalContext.event_id.get(None) is None or LocalContext.blocks.get(None) is None:
            return None
        bar = gradio.Progress()
    except Exception:  # an older Gradio without these internals: the console still shows progress
        return None
    return _to_gradio(bar)


def _to_gradio(progress: Callable[..., Any]) -> ProgressFn:
    def report(step: int, total: int) -> None:
        if total > 0:
            progress((step, total), desc=DESCRIPTION, unit="steps")

    return report
