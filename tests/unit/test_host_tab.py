"""The Host tab's picture: each device's budget as a bar of the models holding bytes there."""

from __future__ import annotations

import re

from webui_adapter.host_tab import memory_html

MIB = 2**20


def _model(name, state, device, held):
    return {"name": name, "state": state, "device": device, "held_bytes": held, "memory_bytes": held,
            "queued": 0, "running": 0}


def test_each_device_bar_holds_its_models_sized_by_their_bytes() -> None:
    models = [_model("musicgen", "ready", "cuda:0", 600 * MIB), _model("voice", "ready", "cuda:0", 200 * MIB),
              _model("audiogen", "warm", "cuda:0", 300 * MIB), _model("idle", "unloaded", "auto", 0)]
    devices = [{"device": "cuda:0", "budget_bytes": 1000 * MIB, "free_bytes": 100 * MIB, "used_by_others_bytes": 5 * MIB},
               {"device": "warm", "budget_bytes": 600 * MIB, "free_bytes": 0, "used_by_others_bytes": 0}]
    page = memory_html(models, devices)
    bars = dict(re.findall(r'data-device="([^"]+)".*?<div class="bar">(.*?)</div></div>', page, re.S))
    widths = {d: dict(re.findall(r'data-model="([^"]+)"[^>]*width:([0-9.]+)%', bar)) for d, bar in bars.items()}
    assert widths == {"cuda:0": {"musicgen": "60.00", "voice": "20.00"}, "warm": {"audiogen": "50.00"}}
    assert "800.0 MiB held by 2 model(s) of a 1000.0 MiB budget" in page and "idle" not in page


def test_names_are_escaped() -> None:
    page = memory_html([_model("<b>x</b>", "ready", "cpu", MIB)],
                       [{"device": "cpu", "budget_bytes": 10 * MIB, "free_bytes": 0, "used_by_others_bytes": 0}])
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
