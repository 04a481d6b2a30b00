"""The light UI's "Host" tab: each device's budget drawn as a bar of the models resident there.

Pure: ``memory_html(models, devices)`` turns the host's ``ps`` rows and devices into HTML (one bar
per device and one for the warm CPU tier, a segment per model sized by the bytes it holds, the
rest free); the tab in ``ui.py`` redraws it every two seconds and offers load / unload / pin.
Runs in Gradio's worker threads.
"""

from __future__ import annotations

import html
from typing import Any

_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
_STYLE = """<style>
#host-memory .device{margin:0 0 14px 0;font-family:sans-serif}
#host-memory .bar{display:flex;height:28px;border:1px solid #888;border-radius:4px;overflow:hidden;background:#eee}
#host-memory .seg{min-width:5em;flex-shrink:1;height:100%;color:#fff;font-size:12px;line-height:28px;white-space:nowrap;overflow:hidden;padding:0 4px}
#host-memory .label{font-size:13px;margin-bottom:3px}
</style>"""


def _mib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _held(model: dict[str, Any]) -> int:
    return int(model.get("held_bytes") or model.get("memory_bytes") or 0)


def memory_html(models: list[dict[str, Any]], devices: list[dict[str, Any]]) -> str:
    """One bar per device (and the warm tier): its budget, split among the models holding bytes there."""
    out = [_STYLE]
    for device in devices:
        name = device["device"]
        here = [m for m in models if _held(m) and (m["state"] == "warm" if name == "warm"
                                                    else m["state"] != "warm" and m.get("device") == name)]
        budget = max(int(device["budget_bytes"]), 1)
        used = sum(_held(m) for m in here)
        segs = "".join(
            f'<div class="seg" data-model="{html.escape(m["name"])}" title="{html.escape(m["name"])}: {_mib(_held(m))} '
            f'({html.escape(m["state"])})" style="width:{min(100.0, 100.0 * _held(m) / budget):.2f}%;'
            f'background:{_COLOURS[i % len(_COLOURS)]}">{html.escape(m["name"])} {_mib(_held(m))}</div>'
            for i, m in enumerate(here))
        out.append(
            f'<div class="device" data-device="{html.escape(name)}"><div class="label"><b>{html.escape(name)}</b>: '
            f'{_mib(used)} held by {len(here)} model(s) of a {_mib(budget)} budget; {_mib(int(device["free_bytes"]))} '
            f'free on the device, {_mib(int(device["used_by_others_bytes"]))} used by other processes</div>'
            f'<div class="bar">{segs}</div></div>')
    queued = [f"{html.escape(m['name'])}: {m['queued']} queued, {m['running']} running" for m in models
              if m.get("queued") or m.get("running")]
    out.append(f'<div class="label">{"; ".join(queued) or "no requests waiting"}</div>')
    return "\n".join(out)
