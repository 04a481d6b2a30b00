"""What the HTTP process is told by the daemon that starts it: one JSON line on its stdin.

The daemon (``process.HttpProcess``) builds ``HttpSettings`` from its checked ``HostConfig`` and writes
it to the child's stdin, so keys never show in a command line or an environment a grandchild could
inherit; the child (``__main__``) reads it back. No validation here: the daemon's config already did it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from modelhost.host.config import HostConfig


@dataclass(frozen=True)
class HttpSettings:
    host_address: str  # the host's ZeroMQ address the HTTP process connects to as a client
    host_token: str | None = field(default=None, repr=False)
    host_server_key: str | None = None  # the host's public CURVE key (Z85) on a CURVE tcp:// host
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    register_with: str | None = None
    register_key: str | None = field(default=None, repr=False)
    register_url: str | None = None  # this server's URL as the WebUI reaches it
    sound_model: str | None = None
    max_inflight: int = 64
    log_level: str = "INFO"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "HttpSettings":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        raw = {k: v for k, v in raw.items() if k in known}
        raw["api_keys"] = tuple(raw.get("api_keys") or ())
        return cls(**raw)


def settings_for(config: HostConfig, log_level: str = "INFO") -> HttpSettings:
    """The HTTP process's settings from the daemon's config (``config.http`` must be set)."""
    http = config.http
    assert http is not None
    server_key = config.curve.keys.public.decode() if config.curve is not None else None
    address = config.address.url
    if config.address.is_tcp and config.address.host in ("0.0.0.0", "::", "*"):  # a wildcard: reach it on loopback
        address = f"tcp://{'[::1]' if config.address.host == '::' else '127.0.0.1'}:{config.address.port}"
    return HttpSettings(host_address=address, host_token=config.token, host_server_key=server_key,
                        api_keys=http.api_keys, register_with=http.register_with, register_key=http.register_key,
                        register_url=http.register_url or http.url, sound_model=http.sound_model,
                        max_inflight=http.max_inflight, log_level=log_level)
