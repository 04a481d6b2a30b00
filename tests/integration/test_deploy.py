"""The systemd units start the daemon at boot and restart it on failure; they verify with systemd's
own checker and their ExecStart lines parse with modelhost's CLI."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from modelhost.host.cli import build_parser
from modelhost.host.config import load_config
from tests.support.launch import ROOT

UNITS = {"modelhost.service": "/opt/modelhost/.venv/bin/modelhost", "modelhost-user.service": "%h/modelhost/.venv/bin/modelhost"}


def _keys(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_restarts_on_failure_and_runs_modelhost_serve(unit) -> None:
    keys = _keys((ROOT / "deploy" / unit).read_text())
    assert keys["Restart"] == "on-failure" and keys["KillSignal"] == "SIGTERM"
    argv = shlex.split(keys["ExecStart"])
    assert argv[0] == UNITS[unit]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.config


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian's systemd package)")
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_verifies_with_systemd(unit, tmp_path) -> None:
    modelhost = os.path.join(os.path.dirname(sys.executable), "modelhost")
    text = (ROOT / "deploy" / unit).read_text().replace(UNITS[unit], modelhost)
    path = tmp_path / unit
    path.write_text(text)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    extra = ["--user"] if unit.endswith("-user.service") else []
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *extra, str(path)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert done.returncode == 0, done.stderr


def test_system_catalog_is_valid_and_shares_the_socket_with_its_group() -> None:
    config = load_config(str(ROOT / "deploy" / "catalog-system.toml"), address="ipc:///run/modelhost/host.sock")
    assert config.socket_mode == 0o660 and config.preload == ("musicgen",)
