"""The `modelhost` command as a user runs it: a subprocess per call, against the shared host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

from modelhost.client.wavfile import read_wav, write_wav
from tests.conftest import ROOT

SUBCOMMANDS = ["serve", "ps", "health", "load", "unload", "pin", "unpin", "generate", "keys", "doctor"]
TOKEN = "cli-test-token-0123456789"


def modelhost(*args: str, address: str | None = None, timeout: float = 60,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    if address:
        env["MODELHOST_ADDRESS"] = address
    return subprocess.run([sys.executable, "-m", "modelhost.host", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_usage_error(done: subprocess.CompletedProcess, needle: str) -> None:
    """Exit 2 and exactly one line on stderr that says what is wrong: never a traceback."""
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stderr}"
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert needle in done.stderr, done.stderr


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
    assert table[0].split()[:8] == ["NAME", "BACKEND", "STATE", "RUNNER", "PID", "RESTARTS", "TIER", "DEVICE"]
    synth = next(line.split() for line in table if line.startswith("synth "))
    assert synth[2:6] == ["ready", "synth", str(models["synth"]["pid"]), "0"] and "forever" in synth
    assert models["synth"]["pid"] != host.proc.pid  # it runs in its runner process
    assert any(line.startswith("DEVICE ") for line in table) and any(line.startswith("cpu ") for line in table)


def test_health_load_unload(host) -> None:
    health = modelhost("health", address=host.address).stdout
    assert health.startswith("running") and "shared memory:" in health  # the host's segments, on an ipc:// host
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


def test_doctor_checks_each_runners_python(model_files, tmp_path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f"""
[models.synth]
backend = "synth"
[models.musicgen]
backend = "musicgen"
checkpoint = "{model_files['musicgen']}"
[models.audiogen]
backend = "audiogen"
checkpoint = "{model_files['audiogen']}"
[models.voices]
backend = "rvc"
folder = "{model_files['voices']}"
hubert = "{model_files['hubert']}"
[models.elsewhere]
backend = "synth"
python = "{tmp_path}/no-such-venv/bin/python"
""")
    done = modelhost("doctor", "--config", str(catalog), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # one runner's Python does not exist
    lines = done.stdout.splitlines()
    assert lines[0].startswith("torch ") and any(line.startswith("nvml ") for line in lines)
    runners = {line.split()[1]: line for line in lines if line.startswith("runner ")}
    assert runners["synth"].endswith(": ok") and "synth" in runners["synth"]
    assert runners["audiocraft"].endswith(": ok") and "musicgen, audiogen" in runners["audiocraft"]
    assert runners["rvc"].endswith(": ok") and "voices/alice, voices/bob" in runners["rvc"]
    assert "CANNOT START" in runners["synth@no-such-venv"] and "elsewhere" not in runners["synth"]


def _listening_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("case, catalog, args, needle", [
    ("backend that does not import", '[models.x]\nbackend = "nowhere.at_all:Thing"\n', [],
     "[models.x] backend 'nowhere.at_all:Thing': cannot import nowhere.at_all"),
    ("max_message_bytes a list", '[host]\nmax_message_bytes = [1]\n[models.x]\nbackend = "synth"\n', [],
     "max_message_bytes must be a positive whole number, got [1]"),
    ("max_message_bytes negative", '[host]\nmax_message_bytes = -5\n[models.x]\nbackend = "synth"\n', [],
     "max_message_bytes must be a positive whole number"),
    ("heartbeat nan", '[host]\nheartbeat_s = nan\n[models.x]\nbackend = "synth"\n', [], "heartbeat_s must be a positive"),
    ("drain timeout inf", '[host]\ndrain_timeout_s = inf\n[models.x]\nbackend = "synth"\n', [], "drain_timeout_s must be a positive"),
    ("keep_alive negative", '[models.x]\nbackend = "synth"\nkeep_alive = -3\n', [], "keep_alive must be seconds"),
    ("address a number", '[host]\naddress = 5\n[models.x]\nbackend = "synth"\n', ["--no-address"], "got 5 (int)"),
    ("ipc path too long", '[models.x]\nbackend = "synth"\n', ["--address", "ipc:///tmp/" + "p" * 120 + "/host.sock"],
     "over the 107-byte limit"),
    ("device beyond the count", '[models.x]\nbackend = "synth"\ndevice = "cuda:7"\n', [], "[models.x] device 'cuda:7'"),
    ("device that is no device", '[models.x]\nbackend = "synth"\ndevice = "gpu"\n', [], "device 'gpu' is not a torch device"),
    ("bad TOML", '[models.x\n', [], "is not valid TOML"),
    ("ray settings for a model not in the catalog", '[models.x]\nbackend = "synth"\n[ray.models.y]\nnum_replicas = 2\n', [],
     "[ray.models.y] names no [models.y] table"),
    ("ray replicas both fixed and autoscaled", '[models.x]\nbackend = "synth"\n[ray.models.x]\nnum_replicas = 2\n'
     'max_replicas = 4\nmin_replicas = 1\n', [], "give num_replicas (a fixed count) or min_replicas/max_replicas"),
    ("a WebUI on ray", '[models.x]\nbackend = "synth"\n', ["--webui", "/", "--ray"], "cannot run on Ray"),
    ("a ray head nobody runs", '[models.x]\nbackend = "synth"\n', ["--ray", "127.0.0.1:9"],
     "cannot start or reach Ray at 127.0.0.1:9: nothing answers at 127.0.0.1:9"),
])
def test_serve_refuses_a_bad_start_in_one_line(case, catalog, args, needle, tmp_path) -> None:
    config = tmp_path / "catalog.toml"
    config.write_text(catalog)
    address = [] if args == ["--no-address"] else args if "--address" in args else [*args, "--address", f"ipc://{tmp_path}/h.sock"]
    done = modelhost("serve", "--config", str(config), *address, env={"MODELHOST_ADDRESS": ""})
    assert_one_line_usage_error(done, needle)


def test_serve_refuses_cuda_on_a_machine_without_it(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device = \"cuda\" is valid here")
    config = tmp_path / "catalog.toml"
    config.write_text('[models.x]\nbackend = "synth"\ndevice = "cuda"\n')
    done = modelhost("serve", "--config", str(config), "--address", f"ipc://{tmp_path}/h.sock")
    assert_one_line_usage_error(done, "this machine has no CUDA device")


@pytest.mark.parametrize("where", ["--address", "catalog"])
def test_serve_on_a_tcp_port_in_use_is_one_line(where, tmp_path) -> None:
    with _listening_port() as taken:
        url = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "catalog.toml"
        host_table = f'[host]\naddress = "{url}"\n' if where == "catalog" else ""
        config.write_text(host_table + '[models.x]\nbackend = "synth"\n')
        args = ["--address", url] if where == "--address" else []
        done = modelhost("serve", "--config", str(config), *args, env={"MODELHOST_TOKEN": TOKEN, "MODELHOST_ADDRESS": ""})
    assert_one_line_usage_error(done, "is already in use")


@pytest.mark.parametrize("command", ["health", "generate synth -o {tmp}/x.wav"])
@pytest.mark.parametrize("timeout", ["inf", "nan", "-1", "0", "soon", "1e308"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_one_line(command, timeout, tmp_path) -> None:
    done = modelhost(*command.format(tmp=tmp_path).split(), "--timeout", timeout, address=f"ipc://{tmp_path}/none.sock")
    assert_one_line_usage_error(done, "--timeout: must be a number of seconds above 0 and at most 2.592e+06")


@pytest.mark.parametrize("args, needle", [
    ("ps --watch 1e308", "--watch: must be a number of seconds above 0 and at most 86400"),
    ("ps --watch -2", "--watch: must be a number of seconds above 0"),
    ("generate synth -o {tmp}/x.wav --stream --stream-interval 1e308", "--stream-interval: must be a number of seconds from 0.1"),
    ("generate synth -o {tmp}/x.wav --stream --stream-interval nan", "--stream-interval: must be a number of seconds from 0.1"),
])
def test_every_number_an_option_takes_is_checked_in_one_line(args, needle, tmp_path) -> None:
    done = modelhost(*args.format(tmp=tmp_path).split(), address=f"ipc://{tmp_path}/none.sock")
    assert_one_line_usage_error(done, needle)


def test_generate_checks_its_files_before_sending_anything(tmp_path) -> None:
    """No host listens here: a check done after connecting would exit 3 (no host), not 2."""
    nowhere = f"ipc://{tmp_path}/none.sock"
    out = str(tmp_path / "out.wav")
    done = modelhost("generate", "stereo", "--input", str(tmp_path / "not.wav"), "-o", out, address=nowhere)
    assert_one_line_usage_error(done, "--input {}: no such file".format(tmp_path / "not.wav"))
    (tmp_path / "text.wav").write_text("not audio at all, just text that is long enough to have a header\n")
    done = modelhost("generate", "stereo", "--input", str(tmp_path / "text.wav"), "-o", out, address=nowhere)
    assert_one_line_usage_error(done, "is not a WAV file this client reads")
    done = modelhost("generate", "stereo", "--input", str(tmp_path), "-o", out, address=nowhere)
    assert_one_line_usage_error(done, "cannot read it")
    done = modelhost("generate", "synth", "-o", str(tmp_path / "missing" / "out.wav"), address=nowhere)
    assert_one_line_usage_error(done, f"the folder {tmp_path / 'missing'} does not exist")
    done = modelhost("generate", "synth", "-o", str(tmp_path), address=nowhere)
    assert_one_line_usage_error(done, "is a folder")
    done = modelhost("generate", "synth", "-o", out, address=nowhere)
    assert done.returncode == 3  # with good files, the missing host is what it reports


def test_generate_into_a_missing_folder_fails_before_the_host_works(host, tmp_path) -> None:
    started = time.monotonic()
    done = modelhost("generate", "slow", "--param", "duration_s=200", "-o", str(tmp_path / "gone" / "out.wav"),
                     address=host.address)
    assert_one_line_usage_error(done, "does not exist; create it first")
    assert time.monotonic() - started < 20  # a 200 s generation was never started


def test_a_usage_error_is_one_line() -> None:
    done = modelhost("generate")
    assert_one_line_usage_error(done, "the following arguments are required: model, -o/--output")


def test_serve_ray_without_ray_installed_says_how_to_install_it(tmp_path) -> None:
    """As on a machine without the ``ray`` extra: ``import ray`` fails (a None entry in sys.modules)."""
    config = tmp_path / "catalog.toml"
    config.write_text('[models.x]\nbackend = "synth"\n')
    code = ("import sys; sys.modules['ray'] = None; from modelhost.host.cli import main; "
            f"sys.exit(main(['serve', '--config', {str(config)!r}, '--address', 'ipc://{tmp_path}/h.sock', '--ray']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert_one_line_usage_error(done, "pip install 'modelhost[ray]'")

