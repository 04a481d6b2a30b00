"""The HTTP API's child process, seen from the daemon: bind its port, start it, restart it if it dies, stop it.

Runs in the daemon's main thread (``bind``, ``start``, ``stop``) plus one thread,
``modelhost-http-watch``, that waits on the child. The daemon binds the listening socket itself, before
its own socket: a port in use or a missing package ends the start with one line (exit 2), and a
restarted child takes over the same socket, so connections made meanwhile wait in its backlog
instead of being refused. The child is a client of the host like any other (``AsyncClient``, shared
memory on ipc://): nothing of it runs in the host's process or on its request path. It runs in its
own session (a terminal's Ctrl-C reaches only the daemon, which stops it in order) and dies with the
daemon (PR_SET_PDEATHSIG, see ``__main__``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from modelhost.host.config import ConfigError, HostConfig
from modelhost.host.http_api.settings import settings_for

log = logging.getLogger("modelhost.http")

_NEEDS = {"starlette": "starlette", "uvicorn": "uvicorn", "av": "av", "multipart": "python-multipart", "httpx": "httpx"}
_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_STABLE_AFTER_S = 60.0  # a child that ran this long restarts without backoff
_STOP_TIMEOUT_S = 10.0
_CHILD_ENV_DROPPED = ("MODELHOST_API_KEY", "MODELHOST_REGISTER_KEY", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


class HttpProcess:
    """The HTTP API's process for ``config.http``; ``bind`` (may raise ConfigError), ``start``, ``stop``."""

    def __init__(self, config: HostConfig) -> None:
        assert config.http is not None
        if config.curve is not None and config.curve.clients_dir is not None:
            raise ConfigError(f"{config.source}: the HTTP API reaches the host as a client, and [host] curve_clients lets "
                              "only listed keys in; serve it from a host on ipc://, or on tcp:// with a token and no allow-list")
        self._http = config.http
        self._settings = settings_for(config, logging.getLevelName(logging.getLogger().getEffectiveLevel()))
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a stop never races a restart: spawning checks _stopping under it
        self._watch: threading.Thread | None = None
        self.restarts = 0

    def bind(self) -> None:
        missing = sorted(pkg for module, pkg in _NEEDS.items() if importlib.util.find_spec(module) is None)
        if missing:
            raise ConfigError(f"the HTTP API needs {', '.join(missing)}, which do not import here; install them with "
                              "pip install 'modelhost[http]' (or ./setup.sh --http)")
        host, port = self._http.host, self._http.port
        try:
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=512)
        except OSError as exc:
            raise ConfigError(f"cannot serve the HTTP API at {self._http.url.replace('http://', '')}: "
                              f"{exc.strerror or exc}") from None
        sock.set_inheritable(True)
        self._sock = sock

    def start(self) -> None:
        assert self._sock is not None, "bind() first"
        self._spawn()
        self._watch = threading.Thread(target=self._supervise, name="modelhost-http-watch", daemon=True)
        self._watch.start()
        keys = "API key required" if self._http.api_keys else "no API key (loopback only)"
        where = f"; registering with {self._http.register_with}" if self._http.register_with else ""
        print(f"modelhost: HTTP API at {self._http.url} ({keys}{where})", flush=True)

    def stop(self) -> None:
        """SIGTERM the child (in-flight requests get a few seconds), SIGKILL if it overruns; safe to call twice."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._watch is not None:
            self._watch.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self._proc = self._popen()

    def _popen(self) -> subprocess.Popen:
        fd = self._sock.fileno()
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROPPED}
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelhost.host.http_api", "--fd", str(fd), "--parent", str(os.getpid())],
            stdin=subprocess.PIPE, pass_fds=(fd,), env=env, start_new_session=True, text=True)
        proc.stdin.write(self._settings.to_json() + "\n")
        proc.stdin.close()
        return proc

    def _supervise(self) -> None:
        """Wait on the child; one that exits while the host runs is started again (with a growing pause if it
        keeps dying), its exit logged."""
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - started > _STABLE_AFTER_S else failures + 1
            pause_s = _RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S)) - 1] if failures else 0.0
            log.error("the HTTP API process exited with %s; starting it again in %.0f s", code, pause_s)
            if self._stopping.wait(pause_s):
                return
            self.restarts += 1
            self._spawn()
