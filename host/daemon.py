"""The composition root: config -> catalog + server + core (or, on Ray, its front end), start order, signals, drain and shutdown.

Runs in the main thread. Start order: bind the socket (so clients can ask ``health`` while models
preload), start the core (its workers and the preload), start the I/O thread, wait for a signal. Shutdown is
a state machine, safe to enter twice: SIGTERM/SIGINT -> draining (new work refused, in-flight work
finishes within ``drain_timeout_s``; a second signal cuts the wait short) -> remaining jobs
cancelled with an error reply each -> workers stopped, models unloaded -> socket closed and its
file removed -> exit 0.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import time
from typing import Callable

from modelhost.host.catalog import Catalog
from modelhost.host.config import ConfigError, HostConfig
from modelhost.host.metrics import Metrics
from modelhost.host.core import Core
from modelhost.host.front import Front
from modelhost.host.server import Server

log = logging.getLogger("modelhost.daemon")

_CANCEL_GRACE_S = 10.0  # how long cancelled running jobs get to reach their next progress point
_SIGNAL_POLL_S = 0.1  # how often the main thread looks at the signal count


def serve(config: HostConfig) -> int:
    """Run the host until SIGTERM/SIGINT; returns the process exit code."""
    server = Server(config)
    metrics = Metrics()
    if config.ray is not None:  # the models run on Ray Serve; the front end stands where the core stands
        from modelhost.host.ray_front import RayFront

        core: Front = RayFront(config, reply=server.send, metrics=metrics)  # checks every entry's options
        core.connect()  # here, in the main thread, before our signal handlers (ray.init installs its own)
    else:
        core = Core(config, reply=server, catalog=catalog_for(config), metrics=metrics)  # checks every entry's options
        server.forget_holder = core.forget_segments
    if config.metrics is not None:  # before the socket binds: a port in use ends the start with one line
        metrics.watch(core, lambda: server.clients)
        try:
            metrics.serve(*config.metrics)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics at {config.metrics[0]}:{config.metrics[1]}: {exc.strerror or exc}") from None
    http = None
    if config.http is not None:  # the HTTP API's child process; its port is bound here, so a port in use ends the start
        from modelhost.host.http_api.process import HttpProcess

        http = HttpProcess(config)
        http.bind()
    server.bind()
    core.start()
    server.start(core)
    if http is not None:
        http.start()
    names = list(core.rows)  # the catalog's models and, with --webui, every model the WebUI offers now
    log.info("modelhost serving %d model(s) at %s (catalog: %s)", len(names), config.address.url, config.source)
    for note in config.notes:
        log.warning("%s", note)
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    print(f"modelhost: serving {shown or 'no models'} at {config.address.url}", flush=True)

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
    signals = _SignalLatch()
    try:
        while signals.count == 0:
            if not server.thread.is_alive():
                log.critical("the I/O thread died; shutting down")
                break
            time.sleep(_SIGNAL_POLL_S)
        log.info("draining: no new work, waiting up to %.0f s for %s", config.drain_timeout_s, core.health()["jobs"])
        core.control("drain")
        _wait_unless(lambda: signals.count >= 2, lambda: core.wait_idle(0.2), config.drain_timeout_s)
        core.control("cancel_all")
        core.wait_idle(_CANCEL_GRACE_S)
        core.control("stop")  # what still runs ends with shutting_down; the workers unload and exit
        core.join(_CANCEL_GRACE_S)  # every reply is in the outbox now: server.stop sends it before closing
    finally:
        if http is not None:
            http.stop()  # after the drain: its in-flight requests got their replies
        server.stop()
        signals.restore()
    log.info("modelhost stopped")
    return 0


def catalog_for(config: HostConfig) -> Catalog:
    """The catalog's models, plus every model of the TTS-WebUI it names (``--webui``, ``[webui]``)."""
    webui = getattr(config, "webui", None)
    if webui is None:
        return Catalog(config.models)
    from modelhost.host.webui_catalog import WebuiCatalog

    return Catalog(config.models, WebuiCatalog(webui.root, defaults=webui.defaults))


def _wait_unless(abort: Callable[[], bool], done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not abort():
        if done():
            return


class _SignalLatch:
    """Counts SIGTERM/SIGINT; the previous handlers come back on ``restore``.

    The handler only increments an int. It must take no lock: a handler runs on the main thread
    between bytecodes, so a second signal arriving while the first handler sat inside
    ``threading.Event.set()`` re-entered it and deadlocked on the Event's own lock (seen when a
    process group and a shell trap each sent SIGTERM).
    """

    def __init__(self) -> None:
        self.count = 0
        self._old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, frame: object) -> None:
        self.count += 1

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
