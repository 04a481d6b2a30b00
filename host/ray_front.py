"""The front end of a host on Ray Serve: it stands where ``Core`` stands and forwards each request to its model's deployment.

Runs in the thread ``modelhost-ray-front``: an asyncio loop, the one owner of the deployments' state
and of the requests in flight. Blocking Ray calls (connecting, deploying, ``serve.status``) run in
the loop's executor threads and come back to the loop. The I/O thread (``host.server``) posts
decoded requests and dead peers here exactly as it does to a ``Core``; the main thread posts
controls (drain, cancel all, stop). Each request becomes one task that streams its events from a
replica (``host.ray_deploy.ModelReplica.call``) through a Serve handle and sends them on; its final
reply goes out once, through ``_finish``, whoever ends it (the replica, a cancel, the peer gone,
shutdown, a deadline, the replica's death).

A replica that dies mid-request: a request that has streamed no audio yet is sent once more (Serve
routes it to a live replica, or waits for the replacement); otherwise the client gets
``replica_lost``. Deployments found running with the same fingerprint are kept (a restarted front
end finds its models warm); others are (re)deployed. A local Ray (no address) lives and dies with
this process; on a cluster the deployments outlive it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from modelhost.client.protocol import wire
from modelhost.client.protocol.errors import (
    BadRequestError,
    DeadlineExceededError,
    DuplicateIdError,
    InternalError,
    LoadFailedError,
    ReplicaLostError,
    RequestError,
    ShuttingDownError,
    UnknownModelError,
)
from modelhost.host import __version__
from modelhost.host.backends import create_backend, stop_error
from modelhost.host.backends import ModelSpec
from modelhost.host.config import HostConfig
from modelhost.host.metrics import Metrics
from modelhost.host.model import FAILED, LOADING, UNLOADED, Model
from modelhost.host.ray_deploy import (
    ModelReplica,
    app_name,
    deployment_options,
    fingerprint,
    replica_budgets,
    replica_config,
)
from modelhost.host.front import DEFAULT_TIMEOUT_S, Reply, wait_idle

log = logging.getLogger("modelhost.ray")

_DEADLINE_GRACE_S = 30.0  # past a request's own timeout_s (the replica's core ends it then), the front end gives up
_STATUS_S = 1.0  # how often deployments' status and rows are read
_ROW_TIMEOUT_S = 5.0
_FINGERPRINT_TIMEOUT_S = 20.0


@dataclass
class _Deployment:
    """One model's deployment, as the loop thread knows it."""

    spec: ModelSpec
    model: Model  # the catalog entry's backend (options checked, nothing loaded): the row before a replica answers
    app: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set when running, or when it failed (error)
    handle: Any = None
    error: str | None = None
    status: str = "NOT_STARTED"
    replica_states: dict[str, int] = field(default_factory=dict)
    row: dict[str, Any] | None = None  # the last row a replica gave


@dataclass
class _Forward:
    """A request in flight: its task, and the Serve response it is reading (to cancel it)."""

    peer: bytes
    msg: wire.Message
    model: str
    received_ns: int
    task: asyncio.Task | None = None
    response: Any = None
    ended: bool = False  # the front end ended it (cancel, client gone, shutdown, a failed deployment)
    replica_final: bool = False  # the replica sent its final reply: nothing left to cancel there


class RayFront:
    """See the module docstring. Public methods are safe from any thread; the rest runs on the loop thread."""

    def __init__(self, config: HostConfig, reply: Reply, metrics: Metrics | None = None) -> None:
        assert config.ray is not None
        self.config = config
        self.metrics = metrics or Metrics()
        self._send = reply
        self._ray = config.ray
        self._loop = asyncio.new_event_loop()
        self._deployments: dict[str, _Deployment] = {}
        for name, spec in config.models.items():  # every backend's options are checked here, before the host serves
            model = Model(spec, create_backend(spec))
            model.state = LOADING
            self._deployments[name] = _Deployment(spec, model, app_name(name))
        self._inflight: dict[tuple[bytes, int], _Forward] = {}
        self._state = "starting"
        self._started_s = time.monotonic()
        self._cluster: dict[str, Any] = {"address": self._ray.address or "local", "connected": False}
        self._stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="modelhost-ray-front", daemon=True)
        # published for other threads: replaced, never mutated
        self.rows: dict[str, dict[str, Any]] = {name: self._row(d) for name, d in self._deployments.items()}
        self.busy_peers: frozenset[bytes] = frozenset()
        self.jobs = (0, 0)  # (queued, running): every request in flight counts as running

    # ---- any thread ----

    def connect(self) -> None:
        """Start or reach Ray and Serve (blocking; the main thread, before the host serves). A cluster that
        cannot be reached is a ConfigError: one line, exit 2."""
        from modelhost.host.config import ConfigError

        try:
            self._connect()
        except Exception as exc:
            where = self._ray.address or "a local Ray"
            raise ConfigError(f"cannot start or reach Ray at {where}: {_one_line(exc)}") from None

    def start(self) -> None:
        self.thread.start()

    def post(self, peer: bytes, msg: wire.Message, received_ns: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_request, peer, msg, received_ns)
        except RuntimeError:  # the loop has ended: the host is stopping
            self._send(peer, "error", msg.id, wire.error_body(ShuttingDownError(
                "the host is shutting down and takes no new work; retry once it is back")))

    def peer_gone(self, peer: bytes) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_peer_gone, peer)
        except RuntimeError:  # the loop has ended: nothing of that peer's is in flight
            pass

    def control(self, op: str, timeout_s: float = 30.0) -> bool:
        """``drain``, ``cancel_all`` or ``stop``, done on the loop thread; False if it took longer than ``timeout_s``."""
        if not self.thread.is_alive():
            return True
        future = asyncio.run_coroutine_threadsafe(self._control(op), self._loop)
        try:
            future.result(timeout_s)
        except TimeoutError:
            return False
        if op == "stop":
            self.thread.join(timeout_s)
        return True

    def join(self, timeout_s: float) -> None:
        """Nothing to wait for here: the models' threads live in the replicas."""

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if ``timeout_s`` passed first."""
        return wait_idle(self, timeout_s)

    def health(self) -> dict[str, Any]:
        rows, state = self.rows, self._state
        failed = {name: row["error"] for name, row in rows.items() if row["state"] == FAILED}
        pending = [name for name, row in rows.items() if row["state"] == LOADING]
        ready = state == "running" and not pending and not failed
        return {
            "status": state,
            "ready": ready,
            "ok": ready,
            "stalled": {},
            "failed": failed,
            "last_ok": {name: row["last_ok"] for name, row in rows.items() if row.get("last_ok") is not None},
            "version": __version__,
            "protocol": wire.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started_s, 3),
            "models": {name: row["state"] for name, row in rows.items()},
            "preload_pending": pending,
            "preload_failed": failed,
            "jobs": {"queued": self.jobs[0], "running": self.jobs[1]},
            "ray": {**self._cluster, "deployments": {name: row["ray"] for name, row in rows.items()}},
        }

    def ps(self) -> list[dict[str, Any]]:
        return list(self.rows.values())

    def devices(self) -> list[dict[str, Any]]:
        """The devices the replicas last reported, one entry per node and device (``DEVICE@NODE``)."""
        seen: dict[str, dict[str, Any]] = {}
        for row in self.rows.values():
            for device in row.get("devices", ()):
                name = f"{device['device']}@{row.get('node', '?')}"
                seen.setdefault(name, {**device, "device": name})
        return list(seen.values())

    # ---- the loop ----

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception:
            log.critical("the Ray front end failed", exc_info=True)
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._state = "running"
        try:
            await asyncio.to_thread(self._deploy)
        except Exception as exc:
            log.error("deploying on Ray failed: %s", exc, exc_info=True)
            for dep in self._deployments.values():
                if not dep.ready.is_set():
                    self._fail(dep, f"deploying on Ray failed: {exc}")
        while not self._stop.is_set():
            try:
                await self._refresh()
            except Exception:  # a Ray or front-end hiccup must not end the loop that owns the requests
                log.error("refreshing the deployments' status failed", exc_info=True)
            try:
                await asyncio.wait_for(self._stop.wait(), _STATUS_S)
            except TimeoutError:
                pass
        await asyncio.to_thread(self._disconnect)

    # ---- Ray (executor threads: blocking calls only, no state but what they return) ----

    def _connect(self) -> None:
        import ray
        from ray import serve

        kwargs: dict[str, Any] = {"log_to_driver": False, "namespace": "modelhost"}
        if self._ray.address is None:  # a local Ray for this host: enough CPUs for what the catalog asks
            wanted = sum(self._options(d)["ray_actor_options"]["num_cpus"] * self._replicas(d)
                         for d in self._deployments.values())
            kwargs.update(address="local", include_dashboard=False, num_cpus=max(os.cpu_count() or 1, math.ceil(wanted)))
        else:
            _probe(self._ray.address)
            kwargs["address"] = self._ray.address
        context = ray.init(**kwargs)
        serve.start(proxy_location="Disabled")  # no HTTP: this front end is the way in
        self._cluster = {"address": self._ray.address or "local", "connected": True,
                         "gcs_address": getattr(context, "address_info", {}).get("gcs_address"),
                         "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}}

    def _gpus(self) -> float:
        return float(self._cluster.get("resources", {}).get("GPU", 0.0))

    def _options(self, dep: _Deployment) -> dict[str, Any]:
        return deployment_options(dep.spec, self._ray.deployment(dep.spec.name), self._gpus(), dep.model.max_rows)

    def _replicas(self, dep: _Deployment) -> int:
        ray = self._ray.deployment(dep.spec.name)
        return ray.min_replicas or 1 if ray.autoscaling else ray.num_replicas

    def _deploy(self) -> None:
        """Keep each deployment already running with this fingerprint; (re)deploy the others in one call.
        Readiness is then read by ``_refresh``."""
        from ray import serve

        targets = []
        for dep in self._deployments.values():
            options = self._options(dep)
            budgets = replica_budgets(self.config.budgets, options["ray_actor_options"])
            config = replica_config(dep.spec, self.config, budgets)
            mark = fingerprint(config, options)
            if self._running_fingerprint(dep.app) == mark:
                log.info("%s: keeping the running deployment %s (same catalog entry)", dep.spec.name, dep.app)
                continue
            app = serve.deployment(ModelReplica, **options).bind(config, mark)
            targets.append(serve.RunTarget(app, name=dep.app, route_prefix=None))
            log.info("%s: deploying %s (%s)", dep.spec.name, dep.app, options)
        if targets:
            serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)

    def _running_fingerprint(self, app: str) -> str | None:
        from ray import serve

        try:
            if serve.status().applications[app].status != "RUNNING":
                return None
            return serve.get_app_handle(app).fingerprint.remote().result(timeout_s=_FINGERPRINT_TIMEOUT_S)
        except Exception:  # not deployed, or not answering: deploy it
            return None

    def _status(self) -> dict[str, tuple[str, str, dict[str, int]]]:
        """app -> (application status, message, replica states)."""
        from ray import serve

        out = {}
        for name, app in serve.status().applications.items():
            deployment = app.deployments.get("model")
            states = dict(deployment.replica_states) if deployment is not None else {}
            message = (deployment.message if deployment is not None else "") or app.message  # the replica's own error
            out[name] = (str(app.status.value if hasattr(app.status, "value") else app.status), message, states)
        return out

    @staticmethod
    def _handle(app: str) -> Any:
        from ray import serve

        return serve.get_app_handle(app)

    def _disconnect(self) -> None:
        import ray

        ray.shutdown()  # a local Ray ends here, its replicas with it; a cluster keeps its deployments

    # ---- status and rows (loop thread) ----

    async def _refresh(self) -> None:
        try:
            status = await asyncio.to_thread(self._status)
        except Exception as exc:
            log.warning("reading Ray Serve's status failed: %s", exc)
            return
        for dep in self._deployments.values():
            app_status, message, dep.replica_states = status.get(dep.app, ("NOT_STARTED", "", {}))
            dep.status = app_status
            if app_status == "RUNNING":
                if dep.handle is None:
                    dep.handle = await asyncio.to_thread(self._handle, dep.app)
                    log.info("%s: running on Ray (%s)", dep.spec.name, dep.replica_states)
                dep.error = None
                dep.ready.set()
            elif app_status == "DEPLOY_FAILED" and dep.error is None:  # terminal until redeployed: fail fast
                self._fail(dep, _why(message))
                for key, forward in list(self._inflight.items()):
                    if forward.model == dep.spec.name:
                        self._end(key, LoadFailedError(f"{dep.spec.name} is not running on Ray: {dep.error}"))
            if dep.handle is not None and dep.replica_states.get("RUNNING"):
                try:
                    dep.row = await asyncio.wait_for(self._ask_row(dep), _ROW_TIMEOUT_S)
                except Exception:  # a replica busy starting or dying: keep the last row
                    pass
            self._publish(dep)

    async def _ask_row(self, dep: _Deployment) -> dict[str, Any]:
        return await dep.handle.row.remote()

    def _fail(self, dep: _Deployment, error: str) -> None:
        dep.error = error
        dep.model.state = FAILED
        dep.model.error = error
        dep.ready.set()
        self._publish(dep)
        log.error("%s: %s", dep.spec.name, error)

    def _row(self, dep: _Deployment) -> dict[str, Any]:
        running = sum(1 for f in self._inflight.values() if f.model == dep.spec.name)
        base = dep.row if dep.row is not None and dep.error is None else dep.model.build_row(0, 0, {})
        live = dep.replica_states.get("RUNNING", 0)
        if dep.error:
            state = FAILED
        elif dep.handle is not None and live:
            state = base["state"]
        elif dep.status == "RUNNING" and self._ray.deployment(dep.spec.name).autoscaling:
            state = UNLOADED  # scaled to zero replicas: Serve starts one for the next request
        else:
            state = LOADING
        device = f"{base['device']}@{base['node']}" if "node" in base else base["device"]  # as devices() names it
        return {**base, "state": state, "device": device, "error": dep.error if dep.error else base.get("error"), "queued": 0,
                "running": running, "replicas": live,
                "ray": {"app": dep.app, "status": dep.status, "replica_states": dict(dep.replica_states)}}

    def _publish(self, dep: _Deployment) -> None:
        self.rows = {**self.rows, dep.spec.name: self._row(dep)}

    def _publish_counts(self) -> None:
        self.jobs = (0, len(self._inflight))
        peers = frozenset(f.peer for f in self._inflight.values())
        if peers != self.busy_peers:
            self.busy_peers = peers

    # ---- requests (loop thread) ----

    def _on_request(self, peer: bytes, msg: wire.Message, received_ns: int) -> None:
        try:
            if msg.kind == "cancel":
                self._send(peer, "result", msg.id, {"cancelled": self._cancel((peer, msg.body["target"]), "cancelled")})
                return
            if msg.kind not in ("generate", "load", "unload", "pin"):
                raise BadRequestError(f"a {msg.kind!r} message is not a request")
            if self._state in ("draining", "stopped"):
                raise ShuttingDownError("the host is shutting down and takes no new work; retry once it is back")
            key = (peer, msg.id)
            if key in self._inflight:
                raise DuplicateIdError(f"request id {msg.id} is already in use by a running request of this client; "
                                       "use a new id for each request")
            name = msg.body["model"]
            if name not in self._deployments:
                raise UnknownModelError(f"no model named {name!r} in this host's catalog; known: "
                                        f"{', '.join(sorted(self._deployments)) or 'none'}")
            forward = _Forward(peer, msg, name, received_ns)
            self._inflight[key] = forward
            forward.task = self._loop.create_task(self._forward(key, forward))
            self._publish_counts()
        except RequestError as exc:
            self._send(peer, "error", msg.id, wire.error_body(exc))

    async def _forward(self, key: tuple[bytes, int], forward: _Forward) -> None:
        msg, dep = forward.msg, self._deployments[forward.model]
        timeout_s = float(msg.body.get("timeout_s") or DEFAULT_TIMEOUT_S)
        deadline_s = forward.received_ns / 1e9 + timeout_s  # monotonic: the request's own deadline, as the core keeps it
        try:
            async with asyncio.timeout(timeout_s + _DEADLINE_GRACE_S):
                await dep.ready.wait()
                if dep.error is not None:
                    raise LoadFailedError(f"{forward.model} is not running on Ray: {dep.error}")
                await self._stream(key, forward, dep, deadline_s)
        except asyncio.CancelledError:
            pass  # the front end ended it (and sent its reply); the finally cancels the replica's job
        except TimeoutError:
            self._finish(key, "error", wire.error_body(DeadlineExceededError(
                f"no reply from the Ray replica of {forward.model} within the request's timeout_s ({timeout_s:.0f} s)")))
        except RequestError as exc:
            self._finish(key, "error", wire.error_body(exc))
        except Exception as exc:  # a front-end bug: the client still gets its one reply
            log.error("request %d for %s failed in the Ray front end", msg.id, forward.model, exc_info=True)
            self._finish(key, "error", wire.error_body(InternalError(f"the Ray front end failed: {exc!r}")))
        finally:
            if forward.response is not None and not forward.replica_final:
                forward.response.cancel()  # the replica's core stops the job (or Serve drops it from its queue)
            self._finish(key, "error", wire.error_body(InternalError("the Ray front end ended a request without a reply")))

    async def _stream(self, key: tuple[bytes, int], forward: _Forward, dep: _Deployment, deadline_s: float) -> None:
        """Send the request to a replica and pass its events on. One more try when the replica was lost (or
        was shutting down) before any audio was sent; else ``replica_lost``."""
        from ray.exceptions import RayActorError

        streamed, tries = False, 0
        while True:
            tries += 1
            body = forward.msg.body
            if forward.msg.kind in ("generate", "load", "unload"):  # what is left of the request's own time
                body = {**body, "timeout_s": max(0.001, deadline_s - time.monotonic())}
            if forward.response is not None:
                forward.response.cancel()  # an earlier try's replica, if it still runs it
            forward.response = dep.handle.options(stream=True).call.remote(forward.msg.kind, body)
            try:
                async for kind, event in forward.response:
                    if kind in wire.FINAL_REPLY_KINDS:
                        forward.replica_final = True
                        if kind == "error" and event.get("code") == "shutting_down" and self._retry(forward, streamed, tries):
                            break  # that replica was being removed; Serve has others, or starts one
                        self._finish(key, kind, event)
                        return
                    streamed = streamed or kind == "chunk"
                    self._send(forward.peer, kind, forward.msg.id, event)
                else:
                    raise InternalError(f"the Ray replica of {forward.model} ended the request without a final reply")
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling() or forward.ended:
                    raise  # ours: a cancel, the client gone, shutdown, or the deadline
                why = "Serve cancelled it on the replica"  # e.g. a replica removed while it ran the request
                if not self._retry(forward, streamed, tries):
                    raise self._lost(forward, why) from None
            except RayActorError as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not self._retry(forward, streamed, tries):
                    raise self._lost(forward, why) from None
            forward.replica_final = False
            log.warning("%s: the replica running request %d was lost; sending it once more", forward.model, forward.msg.id)

    def _retry(self, forward: _Forward, streamed: bool, tries: int) -> bool:
        """A request is sent once more only when nothing of its audio went out, once, and while the host serves."""
        return not streamed and tries == 1 and self._state == "running" and not forward.ended

    @staticmethod
    def _lost(forward: _Forward, why: str) -> ReplicaLostError:
        return ReplicaLostError(f"the Ray replica running {forward.model} died during this request ({why}); Ray "
                                "starts a new one; send the request again")

    def _finish(self, key: tuple[bytes, int], kind: str, body: dict[str, Any]) -> None:
        """The request's one final reply; later calls for the same request do nothing."""
        forward = self._inflight.pop(key, None)
        if forward is None:
            return
        self._send(forward.peer, kind, forward.msg.id, body)
        outcome = "result" if kind == "result" else str(body.get("code", "error"))
        self.metrics.record_done(forward.model, forward.msg.kind, outcome, (time.monotonic_ns() - forward.received_ns) / 1e9)
        self._publish_counts()
        self._publish(self._deployments[forward.model])

    def _cancel(self, key: tuple[bytes, int], reason: str) -> bool:
        return self._end(key, stop_error(reason))

    def _end(self, key: tuple[bytes, int], error: BaseException) -> bool:
        """The front end ends a request: its final reply now, then its task (which cancels the replica's job)."""
        forward = self._inflight.get(key)
        if forward is None:
            return False
        forward.ended = True
        self._finish(key, "error", wire.error_body(error))
        if forward.task is not None:
            forward.task.cancel()
        return True

    def _on_peer_gone(self, peer: bytes) -> None:
        for key in [k for k, f in self._inflight.items() if f.peer == peer]:
            self._cancel(key, "client_gone")

    async def _control(self, op: str) -> None:
        if op == "drain":
            if self._state != "stopped":
                self._state = "draining"
        elif op in ("cancel_all", "stop"):
            for key in list(self._inflight):
                self._cancel(key, "shutdown")
            if op == "stop":
                self._state = "stopped"
                self._stop.set()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__



def _probe(address: str) -> None:
    """Fail at once when nothing listens at a ``HOST:PORT`` address (``ray.init`` would retry for minutes);
    ``auto`` is left to Ray, which answers at once when no cluster runs here."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc}); is the Ray head running "
                              "there (`ray start --head`)?") from None


def _why(message: str) -> str:
    """The line of a failed deployment's message that says why: the replica's own error, else the last line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    ours = [line for line in lines if "cannot load on this replica" in line]
    return (ours or lines or ["the deployment failed; see Ray's logs"])[-1]
