"""One DEALER connection to a host, owned by one I/O thread, shared by any number of caller threads.

Runs in the thread ``modelhost-client-io``. Callers never touch the socket: ``submit`` encodes in
the caller's thread, queues the frames and wakes the I/O thread through a socketpair. The I/O
thread sends, receives, routes each reply to the request's sink, sends heartbeats while requests
are outstanding, enforces each request's deadline, and declares the host dead when nothing has
been heard from it for ``liveness_s`` while requests are outstanding.

A sink is a callable run on the I/O thread with one event: ``("progress", step, total)``,
``("result", body)`` or ``("error", exception)``. Every submitted request gets exactly one final
event (result or error): from the host, from its deadline, from the liveness check, or from close.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

from modelhost.client import wire
from modelhost.client.address import parse_address
from modelhost.client.errors import (
    DeadlineExceededError,
    HostDeadError,
    HostUnavailableError,
    HostUnreachableError,
    ModelhostError,
    ProtocolError,
    RequestError,
    error_from_reply,
)

log = logging.getLogger("modelhost.client")

Sink = Callable[[tuple], None]


class _Pending:
    __slots__ = ("sink", "deadline")

    def __init__(self, sink: Sink, deadline: float) -> None:
        self.sink = sink
        self.deadline = deadline


class Connection:
    """The I/O thread and socket behind ``Client`` and ``AsyncClient``."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None,
        heartbeat_s: float,
        liveness_s: float,
        limits: wire.Limits,
    ) -> None:
        if heartbeat_s <= 0 or liveness_s <= heartbeat_s:
            raise ValueError(f"need 0 < heartbeat_s < liveness_s, got heartbeat_s={heartbeat_s}, liveness_s={liveness_s}")
        self.address = parse_address(address)
        self._token = token
        self._heartbeat_s = heartbeat_s
        self._liveness_s = liveness_s
        self._limits = limits
        self._ids = itertools.count(1)
        self._outbox: deque[tuple] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closed = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.connect(self.address.url)
        self._thread = threading.Thread(target=self._run, name="modelhost-client-io", daemon=True)
        self._thread.start()

    # ---- caller side (any thread) ----

    def submit(self, kind: str, body: dict[str, Any], sink: Sink, timeout_s: float) -> int:
        """Queue one request; its events go to ``sink``. Raises at once if it cannot be sent."""
        if self._closed.is_set():
            raise HostUnavailableError("this client is closed")
        if timeout_s is None or timeout_s <= 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self._check_socket_file()
        request_id = next(self._ids)
        frames = wire.encode(kind, request_id, body, token=self._token, limits=self._limits)
        self._outbox.append(("send", request_id, frames, _Pending(sink, time.monotonic() + timeout_s)))
        self._wake()
        return request_id

    def cancel(self, request_id: int) -> None:
        """Ask the host to cancel a request; its sink still gets exactly one final event."""
        if not self._closed.is_set():
            self._outbox.append(("cancel", request_id))
            self._wake()

    def close(self) -> None:
        """Stop the I/O thread; outstanding requests end with HostUnavailableError. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()
        self._ctx.term()

    def _check_socket_file(self) -> None:
        path = self.address.path
        if path is not None and not os.path.exists(path):
            raise HostUnreachableError(
                f"no modelhost host at {self.address.url} (socket file missing); start one with `modelhost serve`"
            )

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the thread will wake anyway) or closed (we are shutting down)

    # ---- the I/O thread ----

    def _run(self) -> None:
        pending: dict[int, _Pending] = {}
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        last_heard = last_ping = time.monotonic()
        ever_heard = False
        try:
            while not self._closed.is_set():
                ready = dict(poller.poll(timeout=self._heartbeat_s * 1000 / 2))
                now = time.monotonic()
                if self._wake_r.fileno() in ready:
                    self._drain_wake()
                if self._outbox:
                    if not pending:
                        last_heard = now  # idle until now: the liveness clock starts with this work
                    self._send_outbox(pending)
                if self._sock in ready:
                    heard = self._receive(pending)
                    if heard:
                        last_heard, ever_heard = now, True
                if not pending:
                    continue
                if now - last_ping >= self._heartbeat_s:
                    self._send(wire.encode("ping", 0, token=self._token))
                    last_ping = now
                if now - last_heard > self._liveness_s:
                    self._fail_all(pending, self._dead_error(ever_heard))
                    ever_heard = False
                    continue
                self._expire(pending, now)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("modelhost client I/O thread failed")
            self._fail_all(pending, HostUnavailableError(f"client I/O thread failed: {exc!r}"))
        finally:
            self._outbox_fail_remaining(pending)
            self._fail_all(pending, HostUnavailableError("this client is closed"))
            self._sock.close(linger=0)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _send(self, frames: list[Any]) -> None:
        self._sock.send_multipart(frames, copy=False)

    def _send_outbox(self, pending: dict[int, _Pending]) -> None:
        while self._outbox:
            item = self._outbox.popleft()
            if item[0] == "send":
                _, request_id, frames, entry = item
                pending[request_id] = entry
                self._send(frames)
            else:
                self._send_cancel(item[1])

    def _send_cancel(self, target: int) -> None:
        self._send(wire.encode("cancel", next(self._ids), {"target": target}, token=self._token))

    def _receive(self, pending: dict[int, _Pending]) -> bool:
        heard = False
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return heard
            heard = True
            try:
                msg = wire.decode(frames, limits=self._limits)
            except RequestError as exc:
                entry = pending.pop(exc.request_id, None) if exc.request_id is not None else None
                if entry is not None:
                    _deliver(entry, ("error", ProtocolError(f"the host sent a reply this client cannot read: {exc}")))
                else:
                    log.warning("dropped an unreadable message from the host: %s", exc)
                continue
            self._route(msg, pending)

    def _route(self, msg: wire.Message, pending: dict[int, _Pending]) -> None:
        if msg.kind == "pong":
            return
        entry = pending.get(msg.id)
        if entry is None:
            return  # a late reply to a request that already ended (deadline, cancel)
        if msg.kind == "progress":
            _deliver(entry, ("progress", msg.body["step"], msg.body["total"]))
        elif msg.kind == "result":
            del pending[msg.id]
            _deliver(entry, ("result", msg.body))
        elif msg.kind == "error":
            del pending[msg.id]
            _deliver(entry, ("error", error_from_reply(msg.body["code"], msg.body["message"], msg.id)))
        else:
            del pending[msg.id]
            _deliver(entry, ("error", ProtocolError(f"the host replied with a request kind {msg.kind!r}")))

    def _expire(self, pending: dict[int, _Pending], now: float) -> None:
        expired = [rid for rid, entry in pending.items() if entry.deadline <= now]
        for rid in expired:
            entry = pending.pop(rid)
            self._send_cancel(rid)  # the host stops working on it; its late reply is dropped
            _deliver(entry, ("error", DeadlineExceededError("the request did not finish within its timeout_s", request_id=rid)))

    def _dead_error(self, ever_heard: bool) -> HostUnavailableError:
        if ever_heard:
            return HostDeadError(
                f"the host at {self.address.url} stopped answering for {self._liveness_s:g} s (killed or crashed?); "
                "restart it with `modelhost serve`"
            )
        return HostUnreachableError(
            f"no modelhost host answered at {self.address.url} within {self._liveness_s:g} s; start one with `modelhost serve`"
        )

    def _fail_all(self, pending: dict[int, _Pending], exc: ModelhostError) -> None:
        for entry in pending.values():
            _deliver(entry, ("error", exc))
        pending.clear()

    def _outbox_fail_remaining(self, pending: dict[int, _Pending]) -> None:
        while self._outbox:
            item = self._outbox.popleft()
            if item[0] == "send":
                pending[item[1]] = item[3]


def _deliver(entry: _Pending, event: tuple) -> None:
    try:
        entry.sink(event)
    except Exception:
        log.exception("a modelhost request sink raised")
