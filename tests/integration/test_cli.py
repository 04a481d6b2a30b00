"""The `modelhost` command as a user runs it: a subprocess per call, against the shared host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from modelhost.client.wavfile import read_wav, write_wav
from tests.conftest import ROOT

SUBCOMMANDS = ["serve", "ps", "health", "load", "unload", "pin", "unpin", "generate", "doctor"]


def modelhost(*args: str, address: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if address:
        env["MODELHOST_ADDRESS"] = address
    return subprocess.run([sys.executable, "-m", "modelhost.host", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_generate_writes_a_wav_with_a_progress_bar(host, tmp_path) -> None:
    out = tmp_path / "out.wav"
    done = modelhost("generate", "slow", "a calm sine", "--param", "duration_s=1.5", "--param", "seed=3", "-o", str(out),
                     address=host.address)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "1500/1500" in done.stderr
    assert f"wrote {out}" in done.stdout
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes(), w.getsampwidth()) == (1, 32000, 48000, 2)


def test_generate_with_input_audio(host, tmp_path) -> None:
    src, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(src, np.sin(np.linspace(0, 800, 2 * 22050)).reshape(2, -1).astype(np.float32) * 0.5, 22050)
    done = modelhost("generate", "stereo", "--input", str(src), "-o", str(out), "--quiet", address=host.address)
    assert done.returncode == 0, done.stderr
    audio, rate = read_wav(out)
    assert rate == 22050 and audio.shape == (2, 22050)


def test_ps_json_and_table(host) -> None:
    done = modelhost("ps", "--json", address=host.address)
    assert done.returncode == 0
    report = json.loads(done.stdout)
    models = {m["name"]: m for m in report["models"]}
    assert models["synth"]["state"] == "ready" and models["synth"]["backend"] == "synth"
    assert models["synth"]["tier"] == "cpu" and models["broken"]["tier"] == "unloaded"
    cpu = {d["device"]: d for d in report["devices"]}["cpu"]
    assert cpu["total_bytes"] >= cpu["budget_bytes"] > 0 and cpu["used_by_models_bytes"] > 0
    table = modelhost("ps", address=host.address).stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "BACKEND", "STATE", "TIER", "DEVICE"]
    assert any(line.startswith("synth ") and " ready " in line and "forever" in line for line in table)
    assert any(line.startswith("DEVICE ") for line in table) and any(line.startswith("cpu ") for line in table)


def test_health_load_unload(host) -> None:
    assert modelhost("health", address=host.address).stdout.startswith("running")
    assert modelhost("load", "stereo", address=host.address).stdout.startswith("stereo: ready on cpu")
    assert modelhost("unload", "stereo", address=host.address).stdout.strip() == "stereo: unloaded"
    bad = modelhost("load", "nope", address=host.address)
    assert bad.returncode == 1 and "no model named 'nope'" in bad.stderr


def test_bad_param_syntax_is_a_usage_error(host, tmp_path) -> None:
    bad = modelhost("generate", "synth", "--param", "novalue", "-o", str(tmp_path / "x.wav"), address=host.address)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


@pytest.mark.parametrize("command", ["ps", "health", "load synth", "generate synth -o /tmp/never.wav"])
def test_no_host_gives_one_line_saying_how_to_start_it(command, tmp_path) -> None:
    done = modelhost(*command.split(), address=f"ipc://{tmp_path}/none.sock", timeout=30)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "start one with `modelhost serve`" in done.stderr


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command) -> None:
    done = modelhost(command, "--help")
    assert done.returncode == 0 and done.stdout.startswith(f"usage: modelhost {command}")


def test_installed_console_script() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "modelhost")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and all(c in done.stdout for c in SUBCOMMANDS)


def test_doctor_reports_every_backend() -> None:
    done = modelhost("doctor", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    for family in ("synth", "musicgen", "audiogen", "rvc"):
        assert any(line.startswith(family) and " ok " in line for line in done.stdout.splitlines()), done.stdout
    assert done.stdout.startswith("torch ") and "nvml " in done.stdout
