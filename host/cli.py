"""`modelhost serve|ps|load|unload|pin|unpin|health|generate|keys|doctor`: argv -> config or client calls -> output; no logic.

Every subcommand but ``serve`` and ``doctor`` is a thin client call (or, ``keys``, a file write) and
never imports torch, so it starts fast. Exit codes: 0 ok, 1 the request failed (the message says
why), 2 bad usage or config, 3 no host answered. Every failure is one line on stderr, never a
traceback: usage errors, bad config, unusable files and addresses are all checked before any
work starts (a generate's input and output path before the request is sent).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from modelhost.client.protocol.wire import MAX_TIMEOUT_S

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_HOST = 0, 1, 2, 3
_CHATTY_LIBRARIES = ("audiocraft", "fairseq", "rvc_python", "faiss", "numba", "httpx", "urllib3")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``modelhost CMD: MESSAGE (see `modelhost CMD --help`)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {_one_line(message)} (see `{self.prog} --help`)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _number(low: float, high: float, what: str = "a number of seconds", integer: bool = False,
            open_low: bool = True) -> Callable[[str], float]:
    """An argparse type: every number an option takes goes through here, so a bad one is one line and exit 2."""
    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        above = value > low if open_low else value >= low
        if not (math.isfinite(value) and above and value <= high):
            raise argparse.ArgumentTypeError(f"must be {what} {'above' if open_low else 'from'} {low:g} and at most "
                                             f"{high:g}, got {text!r}")
        return value
    return parse


_seconds = _number(0, MAX_TIMEOUT_S)

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelhost",
        description="A long-lived host that keeps audio models resident and serves them over ZeroMQ.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--address", help="the host's address (default: $MODELHOST_ADDRESS, else the per-user ipc socket)")
        p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up after S seconds")
        p.add_argument("--server-key", metavar="KEY", help="the host's public CURVE key (a NAME.key file or its 40 "
                       "characters) for a tcp:// host that uses CURVE (default: $MODELHOST_SERVER_KEY)")
        return p

    serve = sub.add_parser("serve", help="run the host daemon", description=(
        "Run the host: bind the socket, preload the catalog's `preload` models, serve until SIGTERM/SIGINT, "
        "then drain in-flight work and exit 0."))
    serve.add_argument("--config", help="catalog TOML file (default: $MODELHOST_CONFIG, else one small synth model)")
    serve.add_argument("--address", help="ipc:///abs/path, tcp://127.0.0.1:PORT, or tcp://HOST:PORT off loopback with "
                       "[host] curve_secret_key (default: [host] address, else $MODELHOST_ADDRESS, else "
                       "$XDG_RUNTIME_DIR/modelhost/host.sock or /tmp/modelhost-$UID/host.sock)")
    serve.add_argument("--webui", metavar="DIR", help="also serve every model of the TTS-WebUI at DIR under its own "
                       "names (its MusicGen/AudioGen picker, its musicgen_audiogen folders, its RVC voices); default: "
                       "$MODELHOST_WEBUI; without --config, the WebUI's models alone")
    serve.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run the catalog's models as Ray Serve deployments (pip install 'modelhost[ray]'): on the "
                       "Ray cluster at ADDRESS (\"auto\": the one this machine is a node of, or HEAD:6379), else [ray] address, else a local Ray "
                       "started for this host; clients connect here as always (see README, Scaling out)")
    serve.add_argument("--http", metavar="HOST:PORT", help="also serve the HTTP API (OpenAI /v1/audio/speech, ElevenLabs "
                       "sound effects and speech-to-speech) on HOST:PORT, e.g. 127.0.0.1:8000; off loopback it needs a key "
                       "($MODELHOST_API_KEY or [http] api_keys_file); default: [http] listen (see README, HTTP API)")
    serve.add_argument("--register-with", metavar="URL", help="register the served models with the TTS-WebUI API extension "
                       "at URL (e.g. http://127.0.0.1:7778; its key in $MODELHOST_REGISTER_KEY), again whenever it restarts")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    ps = client_command("ps", "list the catalog's models: state, device, memory, activations per audio second, "
                              "load time, hits, last use")
    ps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ps.add_argument("--watch", type=_number(0, 86400), nargs="?", const=1.0, metavar="SECONDS",
                    help="refresh in place every SECONDS (default 1) until Ctrl-C: memory bars per device, requests/s")
    ps.add_argument("--count", type=_number(0, 2**31, "a whole number", integer=True, open_low=False), default=0,
                    help=argparse.SUPPRESS)  # --watch: stop after this many frames (tests)
    health = client_command("health", "the host's status: ready or not, per-model state, jobs")
    health.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    client_command("load", "load a model now instead of on first use").add_argument("model")
    client_command("unload", "unload a model (after the requests queued for it)").add_argument("model")
    client_command("pin", "pin a model: it is never evicted to make room for another").add_argument("model")
    client_command("unpin", "unpin a model: it may be evicted again").add_argument("model")

    keys = sub.add_parser("keys", help="write a CURVE key pair (for a tcp:// host or client)", description=(
        "Write DIR/NAME.key (the public key: give it to the other side) and DIR/NAME.key_secret (the secret "
        "key, mode 0600). A host uses its pair as [host] curve_secret_key; a client pins the host's NAME.key "
        "with $MODELHOST_SERVER_KEY and may use its own pair as $MODELHOST_CLIENT_KEY (its NAME.key goes in "
        "the host's curve_clients folder). Existing files are never overwritten."))
    keys.add_argument("folder", metavar="DIR", help="where to write the files (created 0700 if missing)")
    keys.add_argument("--name", default="modelhost", help="file name stem (default: modelhost)")

    doctor = sub.add_parser("doctor", help="check that each runner's Python can load its models: torch, CUDA, NVML, "
                            "model libraries", description="Report torch/CUDA/NVML and device memory, then start each "
                            "runner process's Python of the catalog once and check that its backends and their libraries "
                            "import there; say what is missing and how to fix it. Exits 1 if anything is missing.")
    doctor.add_argument("--config", help="catalog TOML file (default: $MODELHOST_CONFIG, else the default catalog)")

    webui = sub.add_parser("webui", help="install the adapter into a TTS-WebUI, remove it, or check it: "
                           "modelhost webui install|uninstall|doctor DIR", add_help=False)
    webui.add_argument("words", nargs=argparse.REMAINDER)  # parsed by host/webui_install.py

    gen = client_command("generate", "generate audio with a model and write it to a WAV file")
    gen.add_argument("model")
    gen.add_argument("prompt", nargs="?", default=None)
    gen.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a generation parameter; VALUE is read as JSON when it parses (numbers, true, null), else as text")
    gen.add_argument("--input", metavar="IN.wav", help="input audio (for audio-to-audio models)")
    gen.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="where to write the result (16-bit PCM)")
    gen.add_argument("--stream", action="store_true",
                     help="write OUT.wav as the audio is made (MusicGen/AudioGen): a valid, growing WAV after every chunk")
    gen.add_argument("--stream-interval", type=_number(0.1, 60, open_low=False), default=None, metavar="SECONDS",
                     help="with --stream: seconds of audio per chunk (default: the model's stream_interval_s)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["webui"]:  # its own parser: install|uninstall|doctor DIR [options]
        from modelhost.host import webui_install

        return webui_install.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "doctor":
        return _doctor(args)
    from modelhost.client.protocol.errors import HostUnavailableError, RequestError

    try:
        return _COMMANDS[args.command](args)
    except HostUnavailableError as exc:
        return _fail(exc, EXIT_NO_HOST)
    except RequestError as exc:
        return _fail(exc, EXIT_FAILED)
    except BrokenPipeError:  # `modelhost ps | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second complaint at exit
        return EXIT_OK
    except (ValueError, OSError) as exc:
        return _fail(exc, EXIT_USAGE)


def _fail(message: object, code: int) -> int:
    print(f"modelhost: {_one_line(message)}", file=sys.stderr)
    return code


# OpenMP (libgomp, torch's CPU threads) settings for the daemon, set before torch loads; an
# operator's own values win. Each model's worker thread gets its own OpenMP team, so the host has
# more OpenMP threads than cores, and libgomp then throttles spinning to ~1000 iterations: every
# small op of a token loop paid a thread wake-up. Measured here (2 cores, through the host):
#   library default:           MusicGen 1 s 107 ms, RVC 1 s 62 ms, 2.56 MB result hand-off 3.8 ms
#   PASSIVE:                   129 ms, 84 ms, 0.9 ms
#   ACTIVE (unbounded spin):   32 ms, 46 ms, 1.0 ms, but one core busy forever while idle
#   ACTIVE + 3e6 spins:        30 ms, 44 ms, 0.9 ms, idle CPU 0 (in-process: 28 ms, 47 ms)
# Those processes were throttled (more OpenMP threads than cores), where ACTIVE spins min(1000, GOMP_SPINCOUNT).
# A runner process with one model is not, and spun the full 3e6 (~10-40 ms) after every op: two such runners
# on 2 cores took 64 requests/s under 16 clients, vs 373 with 1000 spins (benchmarks/clients_mixed.py, issue 24).
# 1000 is what a throttled process spins anyway, in every process now.
_OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "1000"}


def _serve(args: argparse.Namespace) -> int:
    for key, value in _OPENMP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # the model libraries log at INFO on every request; keep the host's own lines
        for name in _CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    from modelhost.client.protocol.address import default_address, parse_address
    from modelhost.host.config import ConfigError, catalog_path, check_on_this_machine, load_config
    from modelhost.host.server import BindError, ensure_address_free

    try:
        catalog_file = catalog_path(args.config)
        early_url = args.address if args.address is not None else None if catalog_file else default_address()
        if early_url is not None:  # before the (default) catalog, which may build weights: a second host is refused at once
            try:
                early = parse_address(early_url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            ensure_address_free(early)
        config = load_config(args.config, address=args.address, webui=args.webui, ray=args.ray, http=args.http,
                             register_with=args.register_with)
        if early_url is None:  # the catalog file named the address
            ensure_address_free(config.address)
        check_on_this_machine(config)  # every backend imports, every device exists
        from modelhost.host.daemon import serve

        return serve(config)
    except (ConfigError, BindError) as exc:
        return _fail(exc, EXIT_USAGE)
    except ValueError as exc:  # a backend rejected its catalog options
        return _fail(f"bad catalog: {exc}", EXIT_USAGE)


def _doctor(args: argparse.Namespace) -> int:
    from modelhost.host import doctor
    from modelhost.host.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(exc, EXIT_USAGE)
    return EXIT_FAILED if doctor.run(config.models) else EXIT_OK


def _client(args: argparse.Namespace):
    from modelhost.client import Client

    return Client(args.address, server_key=args.server_key)


def _ps(args: argparse.Namespace) -> int:
    if args.watch is not None:
        return _watch(args)
    with _client(args) as c:
        models = c.ps(timeout_s=args.timeout)
        device_rows = c.devices(timeout_s=args.timeout)
    if args.json:
        print(json.dumps({"models": models, "devices": device_rows}, indent=2))
        return EXIT_OK
    on_ray = any("replicas" in m for m in models)  # a host on Ray Serve: one replica's row, and the replica count
    _table([["NAME", "BACKEND", "STATE", "RUNNER", "PID", "RESTARTS", "TIER", "DEVICE", "MEMORY", "ACT/S/ROW", "LOAD",
             "HITS", "QUEUED", "LAST USED", "KEEP UNTIL", "PINNED", *(["REPLICAS"] if on_ray else [])]] + [[
        m["name"], m["backend"], m["state"], str(m.get("runner", "-")), str(m.get("pid") or "-"),
        str(m.get("runner_restarts", "-")), m["tier"], str(m["device"]), _bytes(m["memory_bytes"]),
        _bytes(m["activation_bytes_per_s"]) if m.get("activation_bytes_per_s") else "-",
        f"{m['load_s']:.2f}s" if m["load_s"] is not None else "-", str(m["hits"]), str(m["queued"] + m["running"]),
        _ago(m["last_used"]), _until(m["keep_until"], m["state"]), "yes" if m["pinned"] else "",
        *([str(m.get("replicas", "-"))] if on_ray else []),
    ] for m in models])
    runners = [m for m in models if "holds" in (m.get("details") or {})]
    if runners:  # WebUI runners: what the WebUI's own caching holds in each (host.backends.webui_call)
        print()
        _table([["WEBUI RUNNER", "PID", "HOLDS", "LOADS", "RSS", "DEVICE MEMORY"]] + [[
            m["name"], str(m.get("pid") or "-"),
            ", ".join(f"{ns}={name}" for ns, name in m["details"]["holds"].items()) or "-",
            ", ".join(f"{ns}:{n}" for ns, n in m["details"].get("loads", {}).items()) or "-",
            _bytes(m["details"].get("rss_bytes", 0)),
            _bytes(m["details"]["device_bytes"]) if "device_bytes" in m["details"] else "-",
        ] for m in runners])
    print()
    _table([["DEVICE", "TOTAL", "BUDGET", "MODELS", "OTHERS", "FREE"]] + [[
        d["device"], _bytes(d["total_bytes"]), _bytes(d["budget_bytes"]), _bytes(d["used_by_models_bytes"]),
        _bytes(d["used_by_others_bytes"]), _bytes(d["free_bytes"]),
    ] for d in device_rows])
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    """``ps --watch``: the table and a memory bar per device, redrawn in place; requests/s from the hits."""
    before: dict[str, int] = {}
    last = time.monotonic()
    frames = 0
    with _client(args) as c:
        try:
            while True:
                models, device_rows = c.ps(timeout_s=args.timeout), c.devices(timeout_s=args.timeout)
                now = time.monotonic()
                rate = {m["name"]: (m["hits"] - before.get(m["name"], m["hits"])) / max(now - last, 1e-3) for m in models}
                before, last = {m["name"]: m["hits"] for m in models}, now
                lines = [f"modelhost at {c.address}   {time.strftime('%H:%M:%S')}   (Ctrl-C to stop)", ""]
                for d in device_rows:
                    lines.append(_bar(d, [m for m in models if (m["state"] == "warm") == (d["device"] == "warm")
                                          and (d["device"] == "warm" or m["device"] == d["device"]) and m["held_bytes"]]))
                lines.append("")
                rows = [["NAME", "STATE", "TIER", "DEVICE", "MEMORY", "QUEUED", "RUNNING", "REQ/S", "HITS"]] + [[
                    m["name"], m["state"], m["tier"], str(m["device"]), _bytes(m["held_bytes"] or m["memory_bytes"]),
                    str(m["queued"]), str(m["running"]), f"{rate[m['name']]:.1f}", str(m["hits"]),
                ] for m in models]
                widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
                lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
                sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")  # home, clear: redrawn in place
                sys.stdout.flush()
                frames += 1
                if args.count and frames >= args.count:
                    return EXIT_OK
                time.sleep(args.watch)
        except KeyboardInterrupt:
            return EXIT_OK


def _bar(device: dict, models: list[dict], width: int = 50) -> str:
    """One device's budget as a bar of its resident models (a letter each), with the used/budget figures."""
    budget = max(device["budget_bytes"], 1)
    cells, legend = "", []
    for i, m in enumerate(models):
        mark = chr(ord("A") + i % 26)
        cells += mark * max(1, round(width * m["held_bytes"] / budget))
        legend.append(f"{mark}={m['name']}")
    cells = cells[:width].ljust(width, ".")
    used = sum(m["held_bytes"] for m in models)
    return (f"{device['device']:<8} [{cells}] {_bytes(used)} of {_bytes(device['budget_bytes'])} budget, "
            f"{_bytes(device['free_bytes'])} free   {' '.join(legend)}")


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _until(stamp: float | None, state: str) -> str:
    if state != "ready":
        return "-"
    if stamp is None:
        return "forever"
    seconds = max(0.0, stamp - time.time())
    return f"in {seconds:.0f}s" if seconds < 120 else f"in {seconds / 60:.0f}m"


def _health(args: argparse.Namespace) -> int:
    with _client(args) as c:
        h = c.health(timeout_s=args.timeout)
    if args.json:
        print(json.dumps(h, indent=2))
    else:
        models = ", ".join(f"{name}={state}" for name, state in h["models"].items()) or "none"
        print(f"{h['status']} (pid {h['pid']}, up {h['uptime_s']:.0f}s, protocol {h['protocol']}): models {models}; "
              f"jobs queued {h['jobs']['queued']}, running {h['jobs']['running']}")
        for name, why in {**h.get("preload_failed", {}), **h.get("failed", {})}.items():
            print(f"  FAILED {name}: {why}")
        for name, why in h.get("stalled", {}).items():
            print(f"  STALLED {name}: {why}")
        ray = h.get("ray")
        if ray:
            deployments = ", ".join(f"{name} {d['status'].lower()} x{d['replica_states'].get('RUNNING', 0)}"
                                    for name, d in ray["deployments"].items())
            print(f"  ray at {ray['address']}: {deployments or 'no models'}")
        shm = h.get("shm")
        if shm:
            print(f"  shared memory: {shm['segments']} segment(s), {_bytes(shm['bytes'])}, {shm['lent']} lent, "
                  f"{shm['peers']} client(s) attached")
    # exit 1 when not ready, or a model failed or stalled: usable as a systemd/Docker health check
    return EXIT_OK if h["ready"] and h.get("ok", True) else EXIT_FAILED


def _load(args: argparse.Namespace) -> int:
    with _client(args) as c:
        status = c.load(args.model, timeout_s=args.timeout)
    print(f"{status['name']}: {status['state']} on {status['device']} ({_bytes(status['memory_bytes'])}, {status['load_s']:.2f}s)")
    return EXIT_OK


def _pin(args: argparse.Namespace) -> int:
    with _client(args) as c:
        status = c.pin(args.model, timeout_s=args.timeout) if args.command == "pin" else c.unpin(args.model, timeout_s=args.timeout)
    print(f"{status['name']}: {'pinned' if status['pinned'] else 'not pinned'}")
    return EXIT_OK


def _unload(args: argparse.Namespace) -> int:
    with _client(args) as c:
        status = c.unload(args.model, timeout_s=args.timeout)
    print(f"{status['name']}: {status['state']}")
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    import wave

    from modelhost.client.wavfile import read_wav, write_wav

    params = dict(_parse_param(p) for p in args.param)
    _check_output(args.output)  # before the request: a long generation must not end in a failed write
    audio = sample_rate = None
    if args.input:
        try:
            audio, sample_rate = read_wav(args.input)
        except FileNotFoundError:
            raise ValueError(f"--input {args.input}: no such file") from None
        except OSError as exc:
            raise ValueError(f"--input {args.input}: cannot read it ({exc.strerror or exc})") from None
        except (wave.Error, EOFError, ValueError) as exc:
            raise ValueError(f"--input {args.input} is not a WAV file this client reads (PCM 8/16/24/32-bit): "
                             f"{str(exc) or 'it ends early'}") from None
    bar = None if args.quiet else _ProgressBar()
    started = time.perf_counter()
    with _client(args) as c:
        if args.stream:
            result = _stream_to_wav(c, args, audio, sample_rate, params, bar)
        else:
            result = c.generate(args.model, args.prompt, audio=audio, sample_rate=sample_rate, params=params,
                                progress=bar, timeout_s=args.timeout)
    if bar:
        bar.close()
    if not args.stream:
        write_wav(args.output, result.audio, result.sample_rate)
    print(f"wrote {args.output}: {result.duration_s:.2f} s at {result.sample_rate} Hz, "
          f"{result.audio.shape[0] if result.audio.ndim == 2 else 1} channel(s), in {time.perf_counter() - started:.2f} s")
    return EXIT_OK


def _stream_to_wav(c: Any, args: argparse.Namespace, audio: Any, sample_rate: int | None, params: dict[str, Any],
                   bar: "_ProgressBar | None") -> Any:
    """Write each chunk to ``-o`` as it arrives; the file ends holding the final result exactly."""
    from modelhost.client.wavfile import WavWriter, write_wav

    job = c.stream(args.model, args.prompt, audio=audio, sample_rate=sample_rate, params=params, progress=bar,
                   timeout_s=args.timeout, interval_s=args.stream_interval)
    writer: WavWriter | None = None
    try:
        for chunk in job:
            if writer is None:
                writer = WavWriter(args.output, chunk.sample_rate)
            writer.write(chunk.audio)
    finally:
        if writer is not None:
            writer.close()
    result = job.result()
    if writer is None or writer.frames != result.audio.shape[-1]:  # a backend that sent no (or not all) chunks
        write_wav(args.output, result.audio, result.sample_rate)
    return result


def _check_output(path: str) -> None:
    """``-o`` must name a file in an existing, writable folder."""
    out = Path(path)
    folder = out.parent
    if out.is_dir():
        raise ValueError(f"-o {path} is a folder; give a file name like {out / 'out.wav'}")
    if not folder.is_dir():
        raise ValueError(f"-o {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"-o {path}: cannot write there (permission denied)")


def _keys(args: argparse.Namespace) -> int:
    from modelhost.client.protocol.security import load_public_key, write_key_pair

    public, secret = write_key_pair(args.folder, args.name)
    print(f"wrote {public} (public key {load_public_key(public).decode()}: give it to the other side)")
    print(f"wrote {secret} (secret key, mode 0600: keep it here)")
    return EXIT_OK


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--param {text!r} must look like KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class _ProgressBar:
    """A one-line progress bar on stderr, fed by the host's progress events."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.shown = False

    def __call__(self, step: int, total: int) -> None:
        frac = step / total if total else 1.0
        filled = int(frac * self.width)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {frac:4.0%} {step}/{total}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ago(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    seconds = max(0.0, time.time() - stamp)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


_COMMANDS = {"ps": _ps, "health": _health, "load": _load, "unload": _unload, "pin": _pin, "unpin": _pin,
             "generate": _generate, "keys": _keys}
