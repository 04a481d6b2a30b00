"""Prometheus metrics of the host, through prometheus_client: what is counted, and the /metrics server.

Events (requests finished, loads, swap-ins, evictions, first progress) are recorded where they
happen: the core thread (and a worker's or the runners thread's first-progress callback) updates the families
(prometheus_client's
metrics are thread-safe). Levels (bytes per model, device memory, queue depths, clients) are read
at scrape time from the core's published rows, in the HTTP server's thread, never from a backend.

``[host] metrics = "127.0.0.1:9464"`` turns the server on (loopback only unless ``metrics_public``).
The families and their labels are listed in the README ("Metrics").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from modelhost.client.protocol import wire
from modelhost.host import __version__

if TYPE_CHECKING:
    from modelhost.host.front import Front

log = logging.getLogger("modelhost.metrics")

# seconds: from a tenth of a millisecond (ping-sized work) to an hour (a long generation)
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """The host's metric families in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("modelhost_requests", "Requests finished, by model, kind and outcome (result or the error code)",
                                ["model", "kind", "outcome"], registry=r)
        self.duration = Histogram("modelhost_request_duration_seconds", "Time from a request's arrival to its final reply",
                                  ["model", "kind", "outcome"], buckets=_BUCKETS, registry=r)
        self.queue = Histogram("modelhost_queue_seconds", "Time a generation waited before its model started it",
                               ["model"], buckets=_BUCKETS, registry=r)
        self.first_progress = Histogram("modelhost_first_progress_seconds",
                                        "Time from a generation's arrival to its first progress event", ["model"],
                                        buckets=_BUCKETS, registry=r)
        self.load = Histogram("modelhost_load_seconds", "Model load time (from files to ready)", ["model"],
                              buckets=_BUCKETS, registry=r)
        self.swap_in = Histogram("modelhost_swap_in_seconds", "Time to bring a model back from the warm CPU tier",
                                 ["model"], buckets=_BUCKETS, registry=r)
        self.evictions = Counter("modelhost_evictions", "Models moved off their device, by reason (evicted, keep_alive, "
                                 "requested, out_of_memory)", ["model", "reason"], registry=r)
        self.swap_ins = Counter("modelhost_swap_ins", "Models brought back from the warm CPU tier", ["model"], registry=r)

    def record_done(self, model: str, kind: str, outcome: str, seconds: float) -> None:
        self.requests.labels(model, kind, outcome).inc()
        self.duration.labels(model, kind, outcome).observe(seconds)

    def watch(self, core: "Front", clients: Callable[[], int]) -> None:
        """Levels read at scrape time: the core's rows and devices, and the I/O thread's client count."""
        self.registry.register(_Levels(core, clients))

    def serve(self, host: str, port: int) -> None:
        """The /metrics HTTP server, in its own daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics at http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)


class _Levels(Collector):
    def __init__(self, core: "Front", clients: Callable[[], int]) -> None:
        self._core = core
        self._clients = clients

    def describe(self) -> list[Any]:
        return []  # collected on scrape only: the families depend on the models served

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("modelhost_build", "The host's version and wire protocol")
        info.add_metric([], {"version": __version__, "protocol": str(wire.PROTOCOL_VERSION)})
        yield info
        rows = self._core.ps()
        bytes_ = GaugeMetricFamily("modelhost_model_bytes", "Bytes a model holds, by device and tier (0 when unloaded)",
                                   labels=["model", "device", "tier"])
        queued = GaugeMetricFamily("modelhost_model_queued_requests", "Requests waiting for a model", labels=["model"])
        running = GaugeMetricFamily("modelhost_model_running_requests", "Requests a model is running", labels=["model"])
        loaded = GaugeMetricFamily("modelhost_model_loaded", "1 while a model is resident (GPU or CPU tier, or warm)",
                                   labels=["model", "state"])
        for row in rows:
            name = row["name"]
            bytes_.add_metric([name, str(row["device"]), row["tier"]], row["held_bytes"] or row["memory_bytes"])
            queued.add_metric([name], row["queued"])
            running.add_metric([name], row["running"])
            loaded.add_metric([name, row["state"]], 1.0 if row["state"] in ("ready", "warm") else 0.0)
        yield from (bytes_, queued, running, loaded)
        families = {key: GaugeMetricFamily(f"modelhost_device_{key}", help_, labels=["device"]) for key, help_ in (
            ("total_bytes", "A device's memory"), ("budget_bytes", "What the host may use of a device"),
            ("used_by_models_bytes", "Bytes the host's models hold on a device"),
            ("used_by_others_bytes", "Bytes in use on a device by anything else"),
            ("free_bytes", "A device's free memory"))}
        for device in self._core.devices():
            for key, family in families.items():
                family.add_metric([device["device"]], device[key])
        yield from families.values()
        clients = GaugeMetricFamily("modelhost_connected_clients", "Clients heard from within the liveness window")
        clients.add_metric([], self._clients())
        yield clients
