"""A light UI instance (``python -m webui_adapter``) in a subprocess on Python 3.10, as a user starts one.

It runs in ``.venv-py310`` (Gradio at TTS-WebUI's pin, no torch), on a free port, against a given
host and WebUI folder; ``wait_ready`` returns when its page answers. Runs in the calling thread.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY310 = ROOT / ".venv-py310" / "bin" / "python"


class LightUI:
    def __init__(self, host_address: str, log_dir: Path, webui_root: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_dir) / f"ui-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own environment: the WebUI side
        args = [str(PY310), "-m", "webui_adapter", "--port", str(self.port), "--address", host_address]
        if webui_root is not None:
            args += ["--webui", str(webui_root)]
        self.started_s = time.monotonic()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"light UI exited:\n{self.log_path.read_text()}"
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started_s
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"light UI not up within {timeout_s} s:\n{self.log_path.read_text()}")

    def client(self):
        from gradio_client import Client as GradioClient

        return GradioClient(self.url, verbose=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
