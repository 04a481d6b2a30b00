"""One model on Ray Serve: the replica class, and the pure rules that turn a catalog entry into a deployment.

``ModelReplica`` runs inside a Ray Serve replica process (an actor with its own asyncio loop). It holds
a ``Core`` for its one model: the same backend class, memory admission, batching, deadlines and
cancellation as a host on one machine, so nothing about a backend is implemented twice. The core's
own threads (``modelhost-core``, ``modelhost-model-NAME``) run beside the replica's event loop; its
replies come back through ``_reply`` (any thread), which hands each event to the request's queue on
that loop. ``call`` is a streaming method: it posts one request and yields its events, progress and
chunks first, then exactly one final ``result`` or ``error``. A caller that stops reading (Serve's
cancellation, or a front end gone) cancels the request in the core.

The rest of the module (names, options, fingerprints) is pure and runs in the front end
(``host.ray_front``), which deploys what these functions describe.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import re
import time
from dataclasses import asdict, replace
from typing import Any, AsyncIterator

from modelhost.client.protocol import wire
from modelhost.host import __version__
from modelhost.host.backends import INLINE, ModelSpec
from modelhost.host.config import HostConfig, RayDeployment

log = logging.getLogger("modelhost.ray")

APP_PREFIX = "modelhost-"
_PEER = b"ray-front"  # every request in a replica comes from its front ends; ids are the replica's own
_GPU_BUDGET = 0.9  # the share of a GPU a model may fill when it has the GPU alone (as host.devices)


def app_name(model: str) -> str:
    """The Serve application serving ``model``: a safe name, with a short hash when characters were replaced."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
    if safe != model:
        safe += "-" + hashlib.sha1(model.encode()).hexdigest()[:8]
    return APP_PREFIX + safe


def wants_gpu(spec: ModelSpec, cluster_gpus: float) -> bool:
    """A model asks Ray for a GPU when its device is cuda, or is unset and the cluster has GPUs."""
    if spec.device is None:
        return cluster_gpus > 0
    return spec.device.startswith("cuda")


def deployment_options(spec: ModelSpec, ray: RayDeployment, cluster_gpus: float, rows: int = 1) -> dict[str, Any]:
    """The keyword arguments of ``serve.deployment`` for one model (``[ray.models.NAME]`` over the defaults);
    ``rows``: the model's batch rows (a replica takes twice that many requests at once, so batches can fill)."""
    gpu = wants_gpu(spec, cluster_gpus)
    actor: dict[str, Any] = {
        "num_gpus": ray.num_gpus if ray.num_gpus is not None else (1.0 if gpu else 0.0),
        "num_cpus": ray.num_cpus if ray.num_cpus is not None else (0.0 if gpu else 1.0),
    }
    options: dict[str, Any] = {
        "name": "model",
        "ray_actor_options": actor,
        "max_ongoing_requests": ray.max_ongoing_requests or max(4, 2 * rows),
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 30.0,
    }
    if ray.autoscaling:
        options["autoscaling_config"] = {"min_replicas": ray.min_replicas, "max_replicas": ray.max_replicas,
                                         "target_ongoing_requests": ray.target_ongoing_requests}
    else:
        options["num_replicas"] = ray.num_replicas
    return options


def replica_budgets(budgets: dict[str, float | int], actor: dict[str, Any]) -> dict[str, float | int]:
    """The host's ``[budget]`` for a replica: with a fraction of a GPU, its share of that GPU (unless a
    budget for cuda was given in bytes, which is kept as written)."""
    share = actor.get("num_gpus") or 0.0
    out = dict(budgets)
    if 0 < share < 1 and not isinstance(budgets.get("cuda"), int):
        out["cuda"] = float(budgets.get("cuda", _GPU_BUDGET)) * share
    return out


def fingerprint(config: HostConfig, options: dict[str, Any]) -> str:
    """What a running deployment was built from (its replica config, ``replica_config``, and its Serve
    options): a front end that finds the same one keeps it warm."""
    what = {"version": __version__, "config": asdict(config), "options": options}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def replica_config(spec: ModelSpec, host: HostConfig, budgets: dict[str, float | int]) -> HostConfig:
    """The config a replica's core runs on: this one model, preloaded, and the host's run-time settings;
    no address, token, CURVE key, metrics or catalog folders (the replica serves no socket). The model runs
    inline, in the replica's process: Ray already runs each replica as a process it watches and replaces, and
    a runner inside it would be a second process and, on a GPU, a second CUDA context for nothing."""
    spec = replace(spec, runner=INLINE, python=None)
    return replace(host, models={spec.name: spec}, preload=(spec.name,), budgets=budgets, token=None, curve=None,
                   metrics=None, webui=None, ray=None, notes=(), source=f"the Ray replica of {spec.name}")


class ModelReplica:
    """See the module docstring. Serve constructs it with what ``replica_config`` built and a fingerprint."""

    def __init__(self, config: HostConfig, fingerprint: str) -> None:
        from modelhost.host.core import Core  # torch and the backend load here, in the replica process

        self._fingerprint = fingerprint
        self._model = next(iter(config.models))
        self._ids = itertools.count(1)
        self._sinks: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._replica = _replica_id()
        self._core = Core(config, reply=self._reply)
        self._core.start()
        while self._core.health()["status"] == "starting":  # warm before Serve routes anything here
            time.sleep(0.05)
        failed = self._core.health()["preload_failed"]
        if failed:
            self._core.control("stop", timeout_s=10)
            raise RuntimeError(f"{self._model} cannot load on this replica: {failed[self._model]}")
        log.info("replica %s of %s is warm (pid %d)", self._replica, self._model, os.getpid())

    # ---- Serve calls ----

    def fingerprint(self) -> str:
        return self._fingerprint

    def row(self) -> dict[str, Any]:
        """The model's ``ps`` row in this replica, with which replica and process it is."""
        rows = self._core.ps()
        row = dict(rows[0]) if rows else {"name": self._model}
        return {**row, "replica": self._replica, "pid": os.getpid(), "node": _node(), "devices": self._core.devices()}

    def check_health(self) -> None:
        """Serve's health check: a replica whose model failed or stalled is replaced by a new one."""
        health = self._core.health()
        if health["failed"] or health["stalled"]:
            raise RuntimeError(f"{self._model} is unhealthy here: {health['failed'] or health['stalled']}")

    async def call(self, kind: str, body: dict[str, Any]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Run one request (generate, load, unload, pin) in this replica's core; yield its events."""
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        events: asyncio.Queue = asyncio.Queue()
        self._sinks[request_id] = (loop, events)
        final = False
        try:
            self._core.post(_PEER, wire.Message(kind, request_id, body), time.monotonic_ns())
            while not final:
                event_kind, event_body = await events.get()
                final = event_kind in wire.FINAL_REPLY_KINDS
                if event_kind == "result" and kind == "generate":
                    event_body = {**event_body, "info": {**event_body.get("info", {}), "replica": self._replica}}
                yield event_kind, event_body
        finally:
            self._sinks.pop(request_id, None)
            if not final:  # Serve cancelled us, or the front end went away: stop the job in the core
                self._core.post(_PEER, wire.Message("cancel", next(self._ids), {"target": request_id}), time.monotonic_ns())

    def __del__(self) -> None:  # Serve is removing this replica: stop the core (its workers unload)
        core = getattr(self, "_core", None)
        if core is not None and core.thread.is_alive():
            core.control("drain", timeout_s=5)
            core.control("stop", timeout_s=10)

    # ---- the core's reply path (any thread) ----

    def _reply(self, peer: bytes, kind: str, request_id: int, body: dict) -> None:
        sink = self._sinks.get(request_id)
        if sink is not None:
            loop, events = sink
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, body))
            except RuntimeError:  # the replica's loop is closed: it is being removed, nobody reads this
                pass


def _node() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return "?"


def _replica_id() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not inside Serve (a test constructing it directly)
        return f"pid-{os.getpid()}"
