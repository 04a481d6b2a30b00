"""The README tells the truth: its two commands are the scripts CI runs, the main job really starts
a host and writes a first WAV, and its Python example runs against a real host."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import wave

from modelhost.client import Client
from tests.support.launch import ROOT, short_tmp

README = (ROOT / "README.md").read_text()


def test_the_two_commands_are_first_and_ci_runs_the_test_command() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./run.sh", "./test.sh"]
    assert "exec ./test.sh" in (ROOT / ".ci" / "run").read_text()


def test_run_sh_serves_and_writes_a_first_wav() -> None:
    folder = short_tmp()
    wav = folder / "first.wav"
    env = {**os.environ, "MODELHOST_ADDRESS": f"ipc://{folder}/host.sock", "MODELHOST_FIRST_WAV": str(wav),
           "MODELHOST_CACHE_DIR": str(folder / "cache")}  # an empty cache: the default catalog builds random weights
    env.pop("MODELHOST_CONFIG", None)
    proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "keeps serving" in line or not line:
                break
        output = "".join(lines)
        assert any("keeps serving" in line for line in lines), output
        with wave.open(str(wav)) as w:
            assert w.getnframes() == 3 * w.getframerate() == 3 * 32000, output
        assert "serving small RANDOM weights" in output and "two small RANDOM voices" in output  # it says so clearly
        with Client(env["MODELHOST_ADDRESS"]) as c:  # MusicGen, AudioGen and two voices, resident at once
            ps = {m["name"]: m["state"] for m in c.ps()}
        assert ps == {"musicgen": "ready", "audiogen": "ready", "voices/voice-a": "ready", "voices/voice-b": "ready"}
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output + rest
        assert not (folder / "host.sock").exists(), output + rest  # the host drained and removed its socket
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_python_example_runs(model_host) -> None:
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    env = {**os.environ, "MODELHOST_ADDRESS": model_host.address}
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("(1, 64000) 32000 ")
