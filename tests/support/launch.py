"""Start a host daemon (or a one-node Ray cluster) in a subprocess and wait until it answers: for tests and benchmarks.

Runs in the caller's thread; needs only the client (no torch in the calling process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HostProcess:
    """A running `modelhost serve` subprocess."""

    proc: subprocess.Popen
    address: str
    socket_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for the drain; SIGKILL if it overruns. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def short_tmp(prefix: str = "mh-") -> Path:
    """A fresh temp folder with a short path: ipc:// paths are limited to ~107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def start_host(catalog: str, *, folder: Path | None = None, address: str | None = None,
               env: dict[str, str] | None = None, wait_ready: bool = True, timeout_s: float = 120.0,
               args: tuple[str, ...] = ()) -> HostProcess:
    """Run `python -m modelhost.host serve` on ``catalog`` (TOML text) in ``folder``, with ``args`` (``--webui DIR``);
    wait until it is ready."""
    folder = folder or short_tmp()
    config = folder / "catalog.toml"
    config.write_text(textwrap.dedent(catalog))
    socket_path = folder / "run" / "host.sock"
    address = address or f"ipc://{socket_path}"
    log_path = folder / "host.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelhost.host", "serve", "--config", str(config), "--address", address, *args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    host = HostProcess(proc=proc, address=address, socket_path=socket_path, log_path=log_path)
    if wait_ready:
        try:
            wait_until_ready(host, timeout_s=timeout_s, token=(env or {}).get("MODELHOST_TOKEN"))
        except BaseException:
            host.stop(timeout_s=10)  # a host that never became ready is not left running behind the caller
            raise
    return host


def wait_until_ready(host: HostProcess, timeout_s: float = 120.0, token: str | None = None) -> dict:
    """Poll ``health`` until the host says ready; raise with its log if it exits or takes too long."""
    from modelhost.client import Client, HostUnavailableError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if host.proc.poll() is not None:
            raise RuntimeError(f"host exited with {host.proc.returncode}:\n{host.log()}")
        try:
            with Client(host.address, token=token, liveness_s=2.0) as c:
                health = c.health(timeout_s=5)
            if health["ready"]:
                return health
        except HostUnavailableError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"host not ready within {timeout_s} s:\n{host.log()}")


@dataclass
class RayCluster:
    """A one-node Ray cluster started with `ray start --head` (for tests and benchmarks of ``serve --ray``)."""

    address: str
    temp_dir: Path

    def stop(self) -> None:
        """Stop every process of this cluster (found by its temp folder), SIGTERM then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _pids_with(str(self.temp_dir))
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while pids and time.monotonic() < deadline:
                time.sleep(0.2)
                pids = _pids_with(str(self.temp_dir))
            if not pids:
                return


def start_ray_cluster(num_cpus: int = 4, env: dict[str, str] | None = None) -> RayCluster:
    """`ray start --head` on a free loopback port with its own temp folder; the caller stops it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp_dir = short_tmp("mhray-")
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), "start", "--head", f"--port={port}", f"--num-cpus={num_cpus}",
                    "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                   check=True, capture_output=True, timeout=120, env={**os.environ, **(env or {})})
    return RayCluster(address=f"127.0.0.1:{port}", temp_dir=temp_dir)


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(entry))
            except OSError:
                pass
    return out
