"""The host's one frozen configuration, validated before anything starts.

The only host module that reads the host's own settings from the environment ($MODELHOST_CONFIG,
_WEBUI, _CACHE_DIR, _TOKEN, _API_KEY, ...; the address and token defaults are shared with the client
through ``client.protocol.address``). A runner process reads the settings its host gives it
(``host.runner``); libraries' own variables are read where their rule is mirrored (``CUDA_VISIBLE_DEVICES``
in ``host.devices``, ``AUDIOCRAFT_CACHE_DIR`` in the audiocraft backends) and a TTS-WebUI's environment
and ``.env`` files by ``host.webui_catalog``. A catalog file is TOML::

    preload = ["synth"]            # loaded, in this order, at start (a voice-folder table: all its voices)

    [host]                         # every key optional
    address = "ipc:///run/user/1000/modelhost/host.sock"
    drain_timeout_s = 30
    heartbeat_s = 0.5
    client_liveness_s = 5
    max_message_bytes = 268435456
    token_file = "/etc/modelhost/token"   # tcp:// needs a token (or MODELHOST_TOKEN), unless curve_clients is set
    curve_secret_key = "/etc/modelhost/keys/modelhost.key_secret"   # CURVE for tcp:// (required off loopback)
    curve_clients = "/etc/modelhost/clients"   # optional: only these client public keys (*.key) may connect
    socket_mode = "0600"           # "0660": the socket's group may connect too (a system service)
    shm = true                     # large arrays to and from clients on this machine through shared memory
    shm_min_bytes = 262144         # arrays at least this large go through it (smaller ones as frames)
    shm_pool_bytes = 1073741824    # the most the host's segments hold; past it, arrays go as frames
    runner_crash_limit = 3         # a runner process that crashes this often within 10 minutes leaves its models failed

    [budget]                       # per device: bytes, a size, or a fraction of the device's total
    cuda = 0.9                     # defaults: 0.9 of each GPU, 0.75 of RAM for cpu
    cpu = "16GiB"

    [models.synth]                 # one table per model
    backend = "synth"              # a name in host.backends.BACKENDS
    device = "cpu"                 # optional: cpu, cuda, cuda:1; default: best available
    pin = false                    # true: never evicted
    keep_alive = "forever"         # unloaded after this long idle ("10m", seconds, "forever")
    reserve = "512MiB"             # room kept for activations on top of the weights
    memory = "2GiB"                # expected size before the first load (else estimated from files)
    max_batch_size = 8             # compatible requests run as one pass, up to this many rows (1: one at a time)
    batch_window_ms = 5            # how long a lone request waits for company before its batch of one starts (0: never)
    activation = "64MiB"           # optional: at least this much activation memory per second of audio per batch row
    width = 256                    # any other key belongs to the backend, which checks it

    [ray]                          # optional: the models run as Ray Serve deployments (``serve --ray``)
    address = "auto"               # an existing cluster this machine is a node of ("auto", "HEAD:6379"); omitted: a local Ray
    [ray.models.synth]             # per model (or voice-folder table), every key optional
    num_replicas = 2               # or min_replicas / max_replicas (autoscaling on ongoing requests)
    num_cpus = 1                   # Ray resources per replica (defaults: 1 GPU for a cuda model, else 1 CPU)
    num_gpus = 0.5                 # a fraction packs replicas on one GPU; each one's budget is its share

    [http]                         # optional: the HTTP API (OpenAI and ElevenLabs shapes), host.http_api
    listen = "127.0.0.1:8000"      # also `serve --http HOST:PORT`; off loopback only with an API key
    api_keys_file = "/etc/modelhost/http-keys"   # one key a line (and/or MODELHOST_API_KEY)
    register_with = "http://127.0.0.1:7778"      # a TTS-WebUI API extension (also --register-with URL)
    register_key_file = "/etc/modelhost/webui-key"  # its key, if it has one (or MODELHOST_REGISTER_KEY)
    register_url = "http://127.0.0.1:8000"       # how that WebUI reaches this server (default: from listen)
    sound_model = "audiogen"       # serves /v1/sound-generation when the request names none
    max_inflight = 64              # generations the HTTP API runs at once; more get 503
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelhost.client.protocol import wire
from modelhost.client.protocol.address import Address, default_address, default_token, parse_address
from modelhost.client.protocol.security import KeyFileError
from modelhost.host.security import HostCurve, host_curve
from modelhost.client.protocol.shm import DEFAULT_MIN_BYTES as SHM_MIN_BYTES, DEFAULT_POOL_BYTES as SHM_POOL_BYTES
from modelhost.host.backends import BACKENDS, INLINE, ModelSpec, expand_entry, is_backend_name, runner_of

CONFIG_ENV = "MODELHOST_CONFIG"
WEBUI_ENV = "MODELHOST_WEBUI"
API_KEY_ENV = "MODELHOST_API_KEY"  # a key the HTTP API accepts ([http])
REGISTER_KEY_ENV = "MODELHOST_REGISTER_KEY"  # the key of the TTS-WebUI API extension it registers with

_HOST_KEYS = {
    "address", "drain_timeout_s", "heartbeat_s", "client_liveness_s", "max_message_bytes", "max_frames", "token_file",
    "socket_mode", "curve_secret_key", "curve_clients", "metrics", "metrics_public", "stall_after_s",
    "shm", "shm_min_bytes", "shm_pool_bytes", "runner_crash_limit",
}


_RAY_KEYS = {"address", "models"}
_RAY_MODEL_KEYS = {"num_replicas", "min_replicas", "max_replicas", "target_ongoing_requests", "num_cpus", "num_gpus",
                   "max_ongoing_requests"}


class ConfigError(ValueError):
    """The configuration cannot work; the message says which key and how to fix it."""


_MODEL_KEYS = {"backend", "device", "pin", "keep_alive", "reserve", "memory", "max_batch_size", "batch_window_ms",
               "activation", "runner", "python", "kill_after_s"}
MAX_BATCH_ROWS = 256
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(value: Any, where: str) -> int:
    """An int of bytes, or a string like "512MiB", "8 GiB", "1.5GB"."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ConfigError(f"{where} must be bytes (an int) or a size like \"512MiB\" or \"8GiB\", got {value!r}")


def parse_duration_s(value: Any, where: str) -> float:
    """Seconds (a number), a string like "30s", "10m", "2h", or "forever"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        if value.strip().lower() in ("forever", "inf", "never"):
            return math.inf
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|h|d)?\s*", value.lower())
        if m:
            return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]
    raise ConfigError(f"{where} must be seconds, a duration like \"10m\", or \"forever\", got {value!r}")


@dataclass(frozen=True)
class WebuiConfig:
    """``--webui DIR`` / ``[webui]``: a TTS-WebUI whose models are all served under its own names."""

    root: str
    defaults: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields its models get (device, keep_alive_s, ...)


@dataclass(frozen=True)
class RayDeployment:
    """``[ray.models.NAME]``: how many replicas of one model Ray Serve runs, and what each needs.

    ``num_replicas`` fixed, or ``min_replicas``..``max_replicas`` scaled by Serve on ongoing requests per
    replica (``target_ongoing_requests``). ``num_cpus``/``num_gpus`` None: 1 GPU for a cuda model, else 1 CPU."""

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    num_cpus: float | None = None
    num_gpus: float | None = None
    max_ongoing_requests: int | None = None  # None: 2 x the model's batch rows (at least 4)

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None


@dataclass(frozen=True)
class RayConfig:
    """``serve --ray [ADDRESS]`` / ``[ray]``: the cluster to run on (None: a local Ray started by the host)
    and per-model deployment settings (a model without its own table gets the defaults)."""

    address: str | None = None
    deployments: dict[str, RayDeployment] = field(default_factory=dict)

    def deployment(self, model: str) -> RayDeployment:
        return self.deployments.get(model, RayDeployment())


@dataclass(frozen=True)
class HttpConfig:
    """``serve --http HOST:PORT`` / ``[http]``: the HTTP API served beside the socket by a child process
    (``host.http_api``), and the TTS-WebUI API extension it registers its models with."""

    host: str
    port: int
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # none: loopback only, no key asked
    register_with: str | None = None  # a TTS-WebUI API extension's base URL
    register_key: str | None = field(default=None, repr=False)  # that extension's own key
    register_url: str | None = None  # how that WebUI reaches this server; None: from host and port
    sound_model: str | None = None  # serves /v1/sound-generation when a request names none
    max_inflight: int = 64  # generations at once; more get 503

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "[::1]" if self.host == "::" else self.host
        return f"http://[{host}]:{self.port}" if ":" in host and not host.startswith("[") else f"http://{host}:{self.port}"


@dataclass(frozen=True)
class HostConfig:
    """Everything the daemon needs, checked once at start."""

    address: Address
    models: dict[str, ModelSpec]
    budgets: dict[str, float | int] = field(default_factory=dict)  # device -> bytes or fraction of total
    preload: tuple[str, ...] = ()
    drain_timeout_s: float = 30.0
    heartbeat_s: float = 0.5
    client_liveness_s: float = 5.0
    limits: wire.Limits = wire.DEFAULT_LIMITS
    token: str | None = None
    curve: HostCurve | None = None  # CURVE encryption on tcp://: the host's key pair and client allow-list
    webui: WebuiConfig | None = None  # a TTS-WebUI whose models are served too
    metrics: tuple[str, int] | None = None  # where /metrics is served (host, port); None: off
    stall_after_s: float = 120.0  # a running job silent this long (at least) is reported stalled by health
    socket_mode: int = 0o600  # the ipc socket file's mode; 0o660 lets the socket's group connect
    shm: bool = True  # large arrays through shared memory with clients on this machine (client.protocol.shm)
    shm_min_bytes: int = SHM_MIN_BYTES
    shm_pool_bytes: int = SHM_POOL_BYTES
    runner_crash_limit: int = 3  # a runner that crashes this often within 10 minutes leaves its models failed
    source: str = "built-in default catalog"
    notes: tuple[str, ...] = ()  # what the operator should know (e.g. models serving random weights)
    ray: RayConfig | None = None  # run the models on Ray Serve (host.ray_front); None: in this process
    http: HttpConfig | None = None  # the HTTP API (host.http_api); None: off


def load_config(path: str | None = None, *, address: str | None = None, webui: str | None = None,
                ray: str | None = None, http: str | None = None, register_with: str | None = None) -> HostConfig:
    """The config from ``path`` (else $MODELHOST_CONFIG, else the default catalog, see host.defaults);
    ``address`` wins over the file. ``webui`` (else $MODELHOST_WEBUI): a TTS-WebUI folder whose models
    are all served too; with it and no catalog file, the host serves the WebUI's models alone.
    ``ray`` (``serve --ray [ADDRESS]``): run on Ray Serve, "" for a local Ray, else the cluster's
    address, which wins over ``[ray] address``. ``http`` (``serve --http HOST:PORT``) and ``register_with``
    (``--register-with URL``) win over ``[http] listen`` and ``register_with``."""
    http_overrides = {k: v for k, v in (("listen", http), ("register_with", register_with)) if v is not None}
    config = _load_config(path, address=address, webui=webui, http=http_overrides)
    if ray is None:
        return config
    base = config.ray or RayConfig()
    return _check_ray(replace(config, ray=replace(base, address=ray or None)))


def catalog_path(path: str | None) -> str | None:
    """The catalog file a host will read: ``path``, else $MODELHOST_CONFIG; None: the default catalog (or a WebUI's)."""
    return path or os.environ.get(CONFIG_ENV) or None


def _load_config(path: str | None, *, address: str | None, webui: str | None, http: dict[str, str]) -> HostConfig:
    path = catalog_path(path)
    webui = webui or os.environ.get(WEBUI_ENV) or None
    if webui and not path:
        return parse_config(_with_http({"webui": {"root": webui}}, http), address=address, source=f"the WebUI at {webui}")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the catalog {path}: {exc.strerror}") from None
        source = path
    else:
        from modelhost.host.default_catalog import default_catalog

        raw, notes = default_catalog(cache_dir(), os.environ.get("AUDIOCRAFT_CACHE_DIR"))
        raw = _with_http(raw, http)
        return replace(parse_config(raw, address=address, source="built-in default catalog"), notes=tuple(notes))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    if webui:  # --webui / $MODELHOST_WEBUI wins over the catalog's [webui] root
        webui_table = raw.get("webui") if isinstance(raw.get("webui"), dict) else {}
        raw = {**raw, "webui": {**webui_table, "root": webui}}
    return parse_config(_with_http(raw, http), address=address, source=source)


def _with_http(raw: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """``--http`` / ``--register-with`` laid over the catalog's ``[http]`` table."""
    if not overrides:
        return raw
    table = raw.get("http") if isinstance(raw.get("http"), dict) else {}
    return {**raw, "http": {**table, **overrides}}


def cache_dir() -> Path:
    """Where the host keeps what it builds: $MODELHOST_CACHE_DIR, else $XDG_CACHE_HOME/modelhost, else ~/.cache/modelhost."""
    if os.environ.get("MODELHOST_CACHE_DIR"):
        return Path(os.environ["MODELHOST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelhost"


def parse_config(raw: dict[str, Any], *, address: str | None = None, source: str = "config") -> HostConfig:
    """Validate a parsed catalog; every problem raises ConfigError naming the key."""
    unknown = set(raw) - {"preload", "host", "models", "budget", "webui", "ray", "http"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}; expected preload, [host], [budget], "
                          "[webui], [models.NAME], [ray], [http]")
    host = raw.get("host", {})
    if not isinstance(host, dict):
        raise ConfigError(f"{source}: [host] must be a table")
    bad = set(host) - _HOST_KEYS
    if bad:
        raise ConfigError(f"{source}: unknown keys in [host]: {sorted(bad)}; known: {sorted(_HOST_KEYS)}")
    models = _parse_models(raw.get("models", {}), source)
    preload = raw.get("preload", [])
    if not isinstance(preload, list) or not all(isinstance(p, str) for p in preload):
        raise ConfigError(f"{source}: preload must be a list of model names")
    webui = _parse_webui(raw["webui"], source) if "webui" in raw else None
    preload = [m for name in preload for m in _preload_names(name, models, source, webui is not None)]
    try:
        addr = parse_address(address if address is not None else host.get("address", default_address()))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}" if address is None and "address" in host else str(exc)) from None
    curve = _curve(host, addr, source)
    token_file = _path(host, "token_file", source)
    token = _read_token(token_file, source) if addr.is_tcp else None
    if addr.is_tcp and not token and (curve is None or curve.clients_dir is None):
        raise ConfigError(
            f"a tcp:// address needs a token: set MODELHOST_TOKEN or token_file in [host] ({source}); "
            "clients pass the same token (with CURVE, an allow-list curve_clients may stand in for it)"
        )
    heartbeat_s = _positive(host, "heartbeat_s", 0.5, source)
    liveness_s = _positive(host, "client_liveness_s", 5.0, source)
    if liveness_s <= 2 * heartbeat_s:
        raise ConfigError(f"{source}: client_liveness_s ({liveness_s}) must exceed twice heartbeat_s ({heartbeat_s})")
    max_message_bytes = _whole(host, "max_message_bytes", wire.DEFAULT_LIMITS.max_message_bytes, source)
    max_frames = _whole(host, "max_frames", wire.DEFAULT_LIMITS.max_frames, source)
    try:
        limits = wire.Limits(max_message_bytes=max_message_bytes, max_frames=max_frames)
    except ValueError as exc:
        raise ConfigError(f"{source}: [host] {exc}") from None
    socket_mode = host.get("socket_mode", "0600")
    if not isinstance(socket_mode, str) or socket_mode not in ("0600", "0660"):
        raise ConfigError(f"{source}: [host] socket_mode must be \"0600\" (your user only) or \"0660\" (also the "
                          f"socket's group, for a system service shared by a group of users), got {socket_mode!r}")
    use_shm = host.get("shm", True)
    if not isinstance(use_shm, bool):
        raise ConfigError(f"{source}: [host] shm must be true or false, got {use_shm!r}")
    return _check_ray(HostConfig(
        ray=_parse_ray(raw["ray"], raw.get("models", {}), models, source) if "ray" in raw else None,
        http=_parse_http(raw["http"], source) if "http" in raw else None,
        shm=use_shm,
        shm_min_bytes=_whole(host, "shm_min_bytes", SHM_MIN_BYTES, source),
        shm_pool_bytes=_whole(host, "shm_pool_bytes", SHM_POOL_BYTES, source),
        runner_crash_limit=_whole(host, "runner_crash_limit", 3, source),
        socket_mode=int(socket_mode, 8),
        address=addr,
        models=models,
        budgets=_parse_budgets(raw.get("budget", {}), source),
        preload=tuple(preload),
        drain_timeout_s=_positive(host, "drain_timeout_s", 30.0, source),
        heartbeat_s=heartbeat_s,
        client_liveness_s=liveness_s,
        limits=limits,
        token=token,
        curve=curve,
        webui=webui,
        metrics=_metrics_address(host, source),
        stall_after_s=_positive(host, "stall_after_s", 120.0, source),
        source=source,
    ))


def _parse_ray(table: Any, model_tables: dict[str, Any], models: dict[str, ModelSpec], source: str) -> RayConfig:
    """``[ray]``: ``address`` and ``[ray.models.NAME]`` tables (a voice-folder table's settings apply to each voice)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [ray] must be a table")
    bad = set(table) - _RAY_KEYS
    if bad:
        raise ConfigError(f"{source}: unknown keys in [ray]: {sorted(bad)}; known: {sorted(_RAY_KEYS)}")
    address = table.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        raise ConfigError(f"{source}: [ray] address must be a Ray address like \"auto\" or \"HEAD:6379\" "
                          "(omit it for a local Ray)")
    tables = table.get("models", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: [ray] models must be tables like [ray.models.NAME]")
    deployments: dict[str, RayDeployment] = {}
    for name, entry in tables.items():
        names = [name] if name in models else [m for m in models if m.startswith(name + "/")]
        if not names or name not in model_tables:
            raise ConfigError(f"{source}: [ray.models.{name}] names no [models.{name}] table")
        deployment = _ray_deployment(entry, f"{source}: [ray.models.{name}]")
        deployments.update({n: deployment for n in names})
    return RayConfig(address=address, deployments=deployments)


def _ray_deployment(entry: Any, where: str) -> RayDeployment:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    bad = set(entry) - _RAY_MODEL_KEYS
    if bad:
        raise ConfigError(f"{where}: unknown keys {sorted(bad)}; known: {sorted(_RAY_MODEL_KEYS)}")

    def count(key: str, low: int) -> int | None:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1024):
            raise ConfigError(f"{where} {key} must be a whole number from {low} to 1024, got {value!r}")
        return value

    def amount(key: str) -> float | None:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1024):
            raise ConfigError(f"{where} {key} must be a number of {key[4:]} from 0 to 1024 (fractions share one), got {value!r}")
        return None if value is None else float(value)

    fixed, low, high = count("num_replicas", 1), count("min_replicas", 0), count("max_replicas", 1)
    if fixed is not None and (low is not None or high is not None):
        raise ConfigError(f"{where}: give num_replicas (a fixed count) or min_replicas/max_replicas (autoscaling), not both")
    if (low is None) != (high is None) or (low is not None and low > high):
        raise ConfigError(f"{where}: autoscaling needs both min_replicas and max_replicas, with min_replicas <= max_replicas")
    target = entry.get("target_ongoing_requests", 2.0)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1024:
        raise ConfigError(f"{where} target_ongoing_requests must be a positive number, got {target!r}")
    return RayDeployment(num_replicas=fixed or 1, min_replicas=low, max_replicas=high, target_ongoing_requests=float(target),
                         num_cpus=amount("num_cpus"), num_gpus=amount("num_gpus"),
                         max_ongoing_requests=count("max_ongoing_requests", 1))


def _check_ray(config: HostConfig) -> HostConfig:
    """What a Ray host cannot do: serve a TTS-WebUI's folders (they live on this machine only), or go
    through Ray Client (``ray://``), where Serve cannot stream responses."""
    if config.ray is not None and (config.ray.address or "").startswith("ray://"):
        raise ConfigError(f"{config.source}: Ray address {config.ray.address}: through Ray Client (ray://) Serve cannot "
                          "stream replies; run the host on a node of the cluster and use --ray auto (or HEAD:6379)")
    if config.ray is not None and config.webui is not None:
        raise ConfigError(f"{config.source}: --webui / [webui] serves a WebUI's folders from this machine and cannot run "
                          "on Ray; list the models in [models.NAME] tables, or serve the WebUI without --ray")
    return config


def _metrics_address(host: dict[str, Any], source: str) -> tuple[str, int] | None:
    """``[host] metrics = "127.0.0.1:9464"``: loopback only unless ``metrics_public = true``."""
    value = host.get("metrics")
    if value is None:
        return None
    public = host.get("metrics_public", False)
    if not isinstance(public, bool):
        raise ConfigError(f"{source}: [host] metrics_public must be true or false")
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", value) if isinstance(value, str) else None
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(f"{source}: [host] metrics must be \"HOST:PORT\", e.g. \"127.0.0.1:9464\", got {value!r}")
    where, port = m.group(1), int(m.group(2))
    loopback = where in ("localhost", "::1") or where.startswith("127.")
    if not loopback and not public:
        raise ConfigError(f"{source}: [host] metrics on {where} would be reachable from other machines; use 127.0.0.1 "
                          "or set metrics_public = true")
    return where, port


_HTTP_KEYS = {"listen", "api_keys_file", "register_with", "register_key_file", "register_url", "sound_model",
              "max_inflight"}


def _parse_http(table: Any, source: str) -> HttpConfig:
    """``[http]``: where the HTTP API listens, its keys (off loopback it needs one), and the TTS-WebUI it registers with."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [http] must be a table")
    bad = set(table) - _HTTP_KEYS
    if bad:
        raise ConfigError(f"{source}: unknown keys in [http]: {sorted(bad)}; known: {sorted(_HTTP_KEYS)}")
    listen = table.get("listen")
    if listen is None:
        raise ConfigError(f"{source}: the HTTP API needs an address: serve --http HOST:PORT (e.g. 127.0.0.1:8000) or "
                          "[http] listen (--register-with registers that server)")
    m = re.fullmatch(r"\[?([^\[\]/]*?)\]?:(\d{1,5})", listen) if isinstance(listen, str) else None
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise ConfigError(f"{source}: the HTTP API's address (--http or [http] listen) must be HOST:PORT, e.g. "
                          f"127.0.0.1:8000, got {listen!r}")
    where, port = m.group(1) or "0.0.0.0", int(m.group(2))
    keys = _key_lines(_path(table, "api_keys_file", source, "[http]"), source, "api_keys_file")
    env_key = (os.environ.get(API_KEY_ENV) or "").strip()
    keys = tuple(dict.fromkeys(([env_key] if env_key else []) + keys))
    for key in keys:
        if len(key) < 16:
            raise ConfigError(f"an HTTP API key (from {API_KEY_ENV} or [http] api_keys_file) is shorter than 16 "
                              "characters; use long random ones")
    loopback = where == "localhost" or where == "::1" or where.startswith("127.")
    if not keys and not loopback:
        raise ConfigError(f"the HTTP API on {where} would be reachable from other machines without a key: set "
                          f"{API_KEY_ENV} or [http] api_keys_file ({source}), or listen on 127.0.0.1")
    register_with = table.get("register_with")
    if register_with is not None and not (isinstance(register_with, str) and re.fullmatch(r"https?://[^/\s]+/?", register_with)):
        raise ConfigError(f"{source}: --register-with / [http] register_with must be the TTS-WebUI API extension's "
                          f"base URL, e.g. http://127.0.0.1:7778, got {register_with!r}")
    register_url = table.get("register_url")
    if register_url is not None and not (isinstance(register_url, str) and re.fullmatch(r"https?://[^/\s]+/?", register_url)):
        raise ConfigError(f"{source}: [http] register_url must be this server's base URL as the WebUI reaches it, "
                          f"e.g. http://192.168.1.5:8000, got {register_url!r}")
    register_keys = _key_lines(_path(table, "register_key_file", source, "[http]"), source, "register_key_file")
    register_key = register_keys[0] if register_keys else (os.environ.get(REGISTER_KEY_ENV) or "").strip() or None
    sound_model = table.get("sound_model")
    if sound_model is not None and (not isinstance(sound_model, str) or not sound_model):
        raise ConfigError(f"{source}: [http] sound_model must be a model name, got {sound_model!r}")
    inflight = table.get("max_inflight", 64)
    if isinstance(inflight, bool) or not isinstance(inflight, int) or not 1 <= inflight <= 4096:
        raise ConfigError(f"{source}: [http] max_inflight must be a whole number from 1 to 4096, got {inflight!r}")
    return HttpConfig(host=where, port=port, api_keys=keys, register_with=register_with.rstrip("/") if register_with else None,
                      register_key=register_key, register_url=register_url.rstrip("/") if register_url else None,
                      sound_model=sound_model, max_inflight=inflight)


def _key_lines(path: str | None, source: str, key: str) -> list[str]:
    """The non-empty lines of a key file (none when ``path`` is None)."""
    if path is None:
        return []
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read [http] {key} {path}: {exc.strerror}") from None


_WEBUI_KEYS = {"root": None, "device": "device", "keep_alive": "keep_alive_s", "reserve": "reserve_bytes", "pin": "pin"}


def _parse_webui(table: Any, source: str) -> WebuiConfig:
    """``[webui]``: the TTS-WebUI folder to serve, and the residency keys its models get."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [webui] must be a table")
    bad = set(table) - set(_WEBUI_KEYS)
    if bad:
        raise ConfigError(f"{source}: unknown keys in [webui]: {sorted(bad)}; known: {sorted(_WEBUI_KEYS)}")
    root = table.get("root")
    if not isinstance(root, str) or not root:
        raise ConfigError(f"{source}: [webui] root must be the TTS-WebUI folder (a string)")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise ConfigError(f"the WebUI folder {root} does not exist (give the folder that holds its server.py)")
    defaults: dict[str, Any] = {}
    if "device" in table:
        if not isinstance(table["device"], str):
            raise ConfigError(f"{source}: [webui] device must be a string like \"cuda\" or \"cpu\"")
        defaults["device"] = table["device"]
    if "keep_alive" in table:
        defaults["keep_alive_s"] = parse_duration_s(table["keep_alive"], f"{source}: [webui] keep_alive")
    if "reserve" in table:
        defaults["reserve_bytes"] = parse_bytes(table["reserve"], f"{source}: [webui] reserve")
    if "pin" in table:
        if not isinstance(table["pin"], bool):
            raise ConfigError(f"{source}: [webui] pin must be true or false")
        defaults["pin"] = table["pin"]
    return WebuiConfig(root=root, defaults=defaults)


def check_on_this_machine(config: HostConfig) -> None:
    """What only this machine can tell, checked at start before anything binds or loads: every
    catalog backend imports and every catalog device exists here (on Ray: where the replicas run, so
    only the imports). Imports torch (the host's start does anyway)."""
    from modelhost.host import devices
    from modelhost.host.backends import BackendImportError, backend_class

    for spec in config.models.values():
        if spec.python is not None and not os.access(spec.python, os.X_OK):
            raise ConfigError(f"{config.source}: [models.{spec.name}] python = {spec.python!r} is not an executable "
                              "file; give a Python interpreter (a venv's bin/python)")
    for backend in sorted({spec.backend for spec in config.models.values() if spec.python is None}):
        try:  # a model under another Python is imported by its runner (modelhost doctor checks that Python)
            backend_class(backend)
        except BackendImportError as exc:
            names = ", ".join(sorted(s.name for s in config.models.values() if s.backend == backend))
            raise ConfigError(f"{config.source}: [models.{names}] {exc}") from None
    if config.ray is not None:
        if config.ray.address is not None:
            _send_ray_token_if_any()
        try:
            import ray.serve  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"running on Ray needs Ray Serve, which does not import here ({exc}); install it with "
                              "pip install 'modelhost[ray]'") from None
        return
    for spec in config.models.values():
        try:
            devices.resolve_device(spec.device)
        except ValueError as exc:
            raise ConfigError(f"{config.source}: [models.{spec.name}] {exc}") from None
    if config.webui is not None and "device" in config.webui.defaults:
        try:
            devices.resolve_device(config.webui.defaults["device"])
        except ValueError as exc:
            raise ConfigError(f"{config.source}: [webui] {exc}") from None


def _send_ray_token_if_any() -> None:
    """Join a Ray cluster with its auth token when there is one: `ray start` turns token authentication on
    when it finds a token ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), but a driver joining
    sends it only under RAY_AUTH_MODE=token. The same rule for the front end, unless the operator chose a
    mode; set before Ray is imported, which reads it once."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(path):
        os.environ["RAY_AUTH_MODE"] = "token"


def _curve(host: dict[str, Any], addr: Address, source: str) -> HostCurve | None:
    """``curve_secret_key``/``curve_clients`` loaded and checked; CURVE is required for TCP off loopback."""
    secret_file, clients_dir = _path(host, "curve_secret_key", source), _path(host, "curve_clients", source)
    if secret_file is None:
        if clients_dir is not None:
            raise ConfigError(f"{source}: [host] curve_clients needs curve_secret_key, the host's own key pair "
                              "(write one with `modelhost keys DIR`)")
        if addr.is_tcp and not addr.is_loopback:
            raise ConfigError(
                f"tcp address {addr.url} is not on loopback: a host other machines can reach needs CURVE encryption; "
                f"write a key pair with `modelhost keys DIR` and set [host] curve_secret_key = \"DIR/modelhost.key_secret\" "
                f"({source}), or listen on ipc:// or tcp://127.0.0.1:PORT"
            )
        return None
    if not addr.is_tcp:
        raise ConfigError(f"{source}: [host] curve_secret_key encrypts tcp:// only, and the address is {addr.url}; "
                          "remove it, or listen on tcp://HOST:PORT")
    try:
        return host_curve(secret_file, clients_dir)
    except KeyFileError as exc:
        raise ConfigError(f"{source}: [host] {exc}") from None


def _parse_models(tables: Any, source: str) -> dict[str, ModelSpec]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: models must be tables like [models.NAME]")
    models: dict[str, ModelSpec] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [models.{name}] must be a table")
        options = {k: v for k, v in table.items() if k not in _MODEL_KEYS}
        backend = table.get("backend")
        if not is_backend_name(backend):
            raise ConfigError(f"{source}: [models.{name}] backend = {backend!r}; known backends: {', '.join(sorted(BACKENDS))}, "
                              "or your own as \"package.module:Class\"")
        device = table.get("device")
        if device is not None and not isinstance(device, str):
            raise ConfigError(f"{source}: [models.{name}] device must be a string like 'cpu' or 'cuda:0'")
        where = f"{source}: [models.{name}]"
        pin = table.get("pin", False)
        if not isinstance(pin, bool):
            raise ConfigError(f"{where} pin must be true or false")
        common = {
            "backend": backend, "device": device, "pin": pin,
            "keep_alive_s": parse_duration_s(table.get("keep_alive", "forever"), f"{where} keep_alive"),
            "reserve_bytes": parse_bytes(table.get("reserve", 0), f"{where} reserve"),
            "memory_bytes": parse_bytes(table["memory"], f"{where} memory") if "memory" in table else None,
            **_batching(table, where),
            **_runner(table, where),
        }
        try:
            entries = expand_entry(backend, name, options)
        except ValueError as exc:
            raise ConfigError(f"{source}: [models.{name}] {exc}") from None
        for entry_name, entry_options in entries:
            models[entry_name] = ModelSpec(name=entry_name, options=entry_options, **common)
    _check_runners(models, source)
    return models


_RUNNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")


def _runner(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``runner`` (a name, or "inline"), ``python`` (an interpreter for that runner) and ``kill_after_s``."""
    out: dict[str, Any] = {}
    if "runner" in table:
        runner = table["runner"]
        if not isinstance(runner, str) or not _RUNNER_NAME.fullmatch(runner):
            raise ConfigError(f"{where} runner must be \"inline\" (in the host's process) or a runner name of letters, "
                              f"digits and _.:@- (models with the same name share one process), got {runner!r}")
        out["runner"] = runner
    if "python" in table:
        python = table["python"]
        if not isinstance(python, str) or not python:
            raise ConfigError(f"{where} python must be the path of a Python interpreter (a venv's bin/python), got {python!r}")
        if table.get("runner") == INLINE:
            raise ConfigError(f"{where} python cannot go with runner = \"inline\": an inline model runs in the host's own "
                              "interpreter; remove one of them")
        out["python"] = os.path.abspath(os.path.expanduser(python))
    if "kill_after_s" in table:
        value = table["kill_after_s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
            raise ConfigError(f"{where} kill_after_s must be seconds in (0, 3600], got {value!r}")
        out["kill_after_s"] = float(value)
    return out


def _check_runners(models: dict[str, ModelSpec], source: str) -> None:
    """Models that share a runner process share its interpreter."""
    pythons: dict[str, tuple[str | None, str]] = {}
    for spec in models.values():
        runner = runner_of(spec)
        if runner == INLINE:
            continue
        python, first = pythons.setdefault(runner, (spec.python, spec.name))
        if python != spec.python:
            mine, theirs = spec.python or "the host's own", python or "the host's own"
            raise ConfigError(f"{source}: [models.{spec.name}] and [models.{first}] share the runner {runner!r} but name "
                              f"different python interpreters ({mine} vs {theirs}); give one of them its own runner = \"NAME\"")


def _batching(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``max_batch_size`` (an int, 1..256), ``batch_window_ms`` (0..10000) and ``activation`` (bytes per
    second of audio per batch row) of one model table."""
    out: dict[str, Any] = {}
    if "max_batch_size" in table:
        rows = table["max_batch_size"]
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_BATCH_ROWS:
            raise ConfigError(f"{where} max_batch_size must be an int from 1 (one request at a time) to "
                              f"{MAX_BATCH_ROWS}, got {rows!r}")
        out["max_batch_size"] = rows
    if "batch_window_ms" in table:
        window = table["batch_window_ms"]
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 <= window <= 10_000:
            raise ConfigError(f"{where} batch_window_ms must be milliseconds from 0 (no wait) to 10000, got {window!r}")
        out["batch_window_ms"] = float(window)
    if "activation" in table:
        out["activation_bytes_per_s"] = parse_bytes(table["activation"], f"{where} activation")
    return out


def _parse_budgets(table: Any, source: str) -> dict[str, float | int]:
    """``[budget]``: device -> bytes (int or "20GiB") or a fraction (0 < f <= 1) of the device's total."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [budget] must be a table like cuda = 0.9, cpu = \"16GiB\"")
    budgets: dict[str, float | int] = {}
    for device, value in table.items():
        if isinstance(value, float) and 0 < value <= 1:
            budgets[device] = value
        else:
            budgets[device] = parse_bytes(value, f"{source}: [budget] {device}")
    return budgets


def _preload_names(name: str, models: dict[str, ModelSpec], source: str, webui: bool = False) -> list[str]:
    """A model name, or the name of a voice-folder table (all its voices); with a WebUI, any name (one
    the WebUI does not offer fails its preload, which ``health`` reports)."""
    if name in models:
        return [name]
    voices = [m for m in models if m.startswith(name + "/")]
    if not voices and webui:
        return [name]
    if not voices:
        raise ConfigError(f"{source}: preload names {name!r}, which has no [models.{name}] table")
    return voices


def _positive(table: dict[str, Any], key: str, default: float, source: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{source}: [host] {key} must be a positive number of seconds, got {value!r}")
    return float(value)


def _whole(table: dict[str, Any], key: str, default: int, source: str) -> int:
    value = table.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{source}: [host] {key} must be a positive whole number, got {value!r}")
    return value


def _path(table: dict[str, Any], key: str, source: str, where: str = "[host]") -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{source}: {where} {key} must be a path (a string), got {value!r}")
    return value


def _read_token(token_file: str | None, source: str) -> str | None:
    where = f"token_file {token_file}" if token_file else "MODELHOST_TOKEN"
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read token_file {token_file}: {exc.strerror}") from None
    else:
        token = default_token()
    if token is not None and len(token) < 16:
        raise ConfigError(f"the token in {where} is shorter than 16 characters; use a long random one")
    return token
