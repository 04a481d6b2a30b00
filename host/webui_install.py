"""``modelhost webui install|uninstall|doctor DIR``: put the WebUI adapter into a TTS-WebUI install.

TTS-WebUI runs generation in more than one Python environment (rsxdalv/TTS-WebUI 8c9046b): its main
one, ``installer_files/env`` (micromamba; RVC runs there, and MusicGen on older WebUIs), and one per
proxied extension, ``.venvs/<package_name>``; since 2026-04 Audiocraft (MusicGen, AudioGen) runs in
``.venvs/tts_webui_extension.audiocraft``. Each process loads the decorator extensions registered in
``extensions.external.json`` by importing ``<package_name>.main``, so the adapter is installed in every
environment: each one's decorated calls go to the host (natively, or to that environment's WebUI runner).
Docker installs use the system python3: add it with ``--python``.

* ``install``: builds a wheel of THIS copy of modelhost once (``DIR/data/modelhost/``), installs it
  into each environment with that environment's pip (or this one's, ``pip --python``, where the
  environment has none, as ``uv venv`` leaves it), checks that ``webui_adapter.main`` imports there,
  and merges the decorator entry into ``DIR/extensions.external.json``;
* ``uninstall``: removes modelhost from those environments, the entry, and the wheel;
* ``doctor``: per environment, whether the adapter imports, which host address it will reach
  (``MODELHOST_ADDRESS`` from the WebUI's ``.env``/``.env.user`` or the environment, else the
  per-user default socket), whether a host answers there, and which of the WebUI's models it serves;
  per extension installed there, where its calls run: on a native backend, in the environment's WebUI
  runner, or in the WebUI's process and why (``extension_routes``).

Exit codes: 0 done / all well, 1 something failed or is wrong (each line says what to do), 2 bad
usage. Runs in the CLI's main thread; every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from modelhost.host.webui_catalog import WebuiCatalog, webui_environment
from webui_adapter.routing import parse_model_map
from webui_adapter.webui_facts import MAIN_ENV_LABEL, MODEL_MAP_ENV, env_python, environments

ADAPTER_PACKAGE = "webui_adapter"
DISTRIBUTION = "modelhost"
WHEEL_DIR = ("data", "modelhost")
EXTERNAL_FILE = "extensions.external.json"
EMPTY_EXTERNAL: dict[str, Any] = {"tabs": [], "tabsInGroups": {}, "decorators": []}  # the WebUI's own empty file
# The keys of the WebUI's example_extension (its custom installer requires exactly these; the Decorator
# Extensions tab reads description and both websites unconditionally).
ENTRY_KEYS = ("package_name", "name", "requirements", "description", "extension_type", "extension_class", "author",
              "extension_author", "license", "website", "extension_website", "extension_platform_version")
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # this copy of modelhost (a source checkout)
PIP_TIMEOUT_S = 900.0
PROBE_TIMEOUT_S = 120.0
_PROBE = """
import importlib.metadata, json, sys
out = {"python": sys.version.split()[0], "error": None, "address": None, "version": None}
try:
    import webui_adapter.main
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
try:
    out["version"] = importlib.metadata.version("modelhost")
    from modelhost.client.protocol.address import default_address
    out["address"] = default_address()
except Exception:
    pass
try:
    import pkgutil, tts_webui_extension
    out["extensions"] = sorted(m.name for m in pkgutil.iter_modules(tts_webui_extension.__path__))
except Exception:
    out["extensions"] = []
print(json.dumps(out))
"""
NATIVE = {"audiocraft": "MusicGen, AudioGen and MAGNeT on the host's own backends",
          "rvc": "RVC on the host's own backend"}
# Extensions whose generation is not under the WebUI's decorators (rsxdalv/TTS-WebUI 8c9046b and the extensions' code):
# nothing reaches the adapter, so they run in the WebUI's process as before.
NOT_DECORATED = ("stable_audio", "demucs", "vocos", "whisper", "cosyvoice", "gpt_sovits", "index_tts", "kitten_tts",
                 "megatts3", "vibevoice", "riffusion", "audio_separator", "openai_tts_api", "log_viewer")


def extension_routes(extensions: Sequence[str], label: str | None) -> list[tuple[str, str]]:
    """(extension, where its decorated calls run) for the ``tts_webui_extension`` packages of one environment."""
    from webui_adapter.runner_calls import REFUSED

    routes = []
    for name in extensions:
        if name in NATIVE:
            routes.append((name, f"native: {NATIVE[name]}"))
        elif name in REFUSED:
            routes.append((name, f"in the WebUI's process: {REFUSED[name]}"))
        elif name in NOT_DECORATED:
            routes.append((name, "in the WebUI's process: its calls do not pass the WebUI's decorators"))
        elif label is None:
            routes.append((name, "in the WebUI's process: this Python is none of the WebUI's own environments"))
        else:
            routes.append((name, f"WebUI runner webui:{label} (this environment's Python, models resident on the host)"))
    return routes


class UsageError(Exception):
    """Bad arguments: one line, exit 2."""


class InstallError(Exception):
    """A step failed: one line saying what to do, exit 1."""


@dataclass(frozen=True)
class PythonEnv:
    """One Python environment of the WebUI: a label for people and its interpreter."""

    label: str
    python: Path


# ---- the command line ----

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser(prog: str = "modelhost webui") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Install the modelhost WebUI adapter into a TTS-WebUI, remove it, or check it.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    helps = {
        "install": "install the adapter (this copy of modelhost) into each of the WebUI's Python environments that run "
                   "MusicGen, AudioGen or RVC, and register it in the WebUI's extensions.external.json",
        "uninstall": "remove modelhost from those environments and its entry from extensions.external.json",
        "doctor": "per environment: does the adapter load, which host will it reach, does that host answer, "
                  "and which of the WebUI's models does it serve",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("dir", metavar="DIR", help="the TTS-WebUI folder (the one holding server.py and installer_files/)")
        p.add_argument("--python", action="append", default=[], metavar="PATH",
                       help="another Python environment of the WebUI (repeatable), e.g. a Docker install's python3")
        if name == "install":
            p.add_argument("--wheel", metavar="PATH", help="install this modelhost wheel instead of building one from this copy")
    return parser


def main(argv: Sequence[str]) -> int:
    """``modelhost webui ...`` with ``argv`` the words after ``webui``."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        root = _webui_root(args.dir)
        envs = find_environments(root, args.python)
        return {"install": install, "uninstall": uninstall, "doctor": doctor}[args.command](root, envs, args)
    except UsageError as exc:
        print(f"modelhost webui {args.command}: {exc}", file=sys.stderr)
        return 2
    except InstallError as exc:
        print(f"modelhost webui {args.command}: {exc}", file=sys.stderr)
        return 1


def _webui_root(text: str) -> Path:
    root = Path(text).expanduser().absolute()
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder; give the TTS-WebUI folder (the one holding server.py)")
    return root


def find_environments(root: Path, extra: Sequence[str] = ()) -> list[PythonEnv]:
    """Every Python environment of the WebUI (its main one and each proxied extension's ``.venvs/<package>``: each runs
    decorated calls, forwarded to the host's backends or to its WebUI runner), plus ``extra`` interpreters."""
    found = []
    for label, env in environments(root).items():
        python = env_python(env)
        assert python is not None
        found.append(PythonEnv("main environment" if label == MAIN_ENV_LABEL else f".venvs/{label}", python))
    for text in extra:
        python = Path(text).expanduser().absolute()
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise UsageError(f"--python {text}: no such interpreter")
        found.append(PythonEnv(f"--python {python}", python))
    if not found:
        raise UsageError(f"no Python environment of a TTS-WebUI in {root} (looked for installer_files/env and "
                         ".venvs/<package>); for a Docker install add --python $(command -v python3)")
    return found


# ---- install / uninstall ----

def install(root: Path, envs: list[PythonEnv], args: argparse.Namespace) -> int:
    wheel = Path(args.wheel).expanduser().absolute() if args.wheel else build_wheel(root.joinpath(*WHEEL_DIR))
    if not wheel.is_file():
        raise UsageError(f"--wheel {wheel}: no such file")
    failed = 0
    for env in envs:
        pip = pip_command(env)
        _run(pip + ["install", "--no-deps", "--force-reinstall", str(wheel)], f"{env.label}: installing {wheel.name}")
        _run(pip + ["install", str(wheel)], f"{env.label}: installing modelhost's dependencies (pyzmq, msgpack, numpy)")
        probe = probe_environment(env, root)
        if probe["error"]:
            failed += 1
            print(f"{env.label} ({env.python}): installed modelhost {probe['version']}, but webui_adapter.main does not "
                  f"import there: {probe['error']}")
        else:
            print(f"{env.label} ({env.python}, Python {probe['python']}): installed modelhost {probe['version']}; "
                  "webui_adapter.main imports")
    entry = register(root, wheel)
    print(f"{EXTERNAL_FILE}: registered the decorator {entry['package_name']!r} ({entry['extension_class']}); "
          f"requirements = {entry['requirements']}")
    print(f"Next: start the host with `modelhost serve --webui {root}`, then restart the WebUI; "
          f"`modelhost webui doctor {root}` checks the whole chain.")
    return 1 if failed else 0


def uninstall(root: Path, envs: list[PythonEnv], args: argparse.Namespace) -> int:
    for env in envs:
        version = probe_environment(env, root)["version"]
        if version is None:
            print(f"{env.label} ({env.python}): modelhost was not installed")
            continue
        _run(pip_command(env) + ["uninstall", "-y", DISTRIBUTION], f"{env.label}: removing modelhost")
        print(f"{env.label} ({env.python}): removed modelhost {version}")
    removed = unregister(root)
    print(f"{EXTERNAL_FILE}: " + ("removed the modelhost entry" if removed else "had no modelhost entry"))
    wheels = root.joinpath(*WHEEL_DIR)
    if wheels.is_dir():
        shutil.rmtree(wheels)
        print(f"removed {wheels}")
    return 0


def build_wheel(dest: Path) -> Path:
    """A wheel of this copy of modelhost in ``dest`` (older ones removed), built from a clean copy of the
    sources so no stale build folder leaks into it."""
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        raise InstallError(f"this modelhost ({SOURCE_ROOT}) is not a source copy, so it cannot build its wheel; "
                           "run `modelhost webui install` from a checkout, or pass --wheel PATH")
    with tempfile.TemporaryDirectory(prefix="modelhost-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "client", "host", "webui_adapter"):
            path = SOURCE_ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.is_file():
                shutil.copy2(path, src / name)
        local_tools = ["--no-build-isolation"] if _has_build_tools() else []  # else pip fetches setuptools itself
        out = Path(tmp) / "out"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *local_tools, "-w", str(out), str(src)],
             "building the modelhost wheel")
        built = next(out.glob("modelhost-*.whl"))
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("modelhost-*.whl"):
            old.unlink()
        return Path(shutil.copy2(built, dest / built.name))


def _has_build_tools() -> bool:
    """setuptools (64 up to 80) and wheel in this interpreter: build without fetching them from the index."""
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return 64 <= major < 81


def pip_command(env: PythonEnv) -> list[str]:
    """The env's own pip, or this interpreter's pip driving it (``pip --python``) where it has none."""
    check = subprocess.run([str(env.python), "-m", "pip", "--version"], capture_output=True, env=_clean_environ(os.environ),
                           timeout=PROBE_TIMEOUT_S)
    base = [str(env.python), "-m", "pip"] if check.returncode == 0 else [sys.executable, "-m", "pip", "--python", str(env.python)]
    return base + ["--disable-pip-version-check", "--quiet"]


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_environ(os.environ), timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what}: no result within {PIP_TIMEOUT_S:.0f} s ({shlex.join(cmd)})") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise InstallError(f"{what} failed: {detail} (command: {shlex.join(cmd)})")


def _clean_environ(environ: Any) -> dict[str, str]:
    """``environ`` without what would make another interpreter see this one's packages (a WebUI's never has these)."""
    return {k: v for k, v in environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}


def probe_environment(env: PythonEnv, root: Path) -> dict[str, Any]:
    """Run the env's python as the WebUI would (its folder, its .env) and ask: does the adapter import,
    which modelhost is installed, and which address would the client reach."""
    environ = _clean_environ(webui_environment(str(root), os.environ))
    try:
        done = subprocess.run([str(env.python), "-c", _PROBE], cwd=root, env=environ, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"python": "?", "error": f"python did not answer within {PROBE_TIMEOUT_S:.0f} s", "address": None, "version": None}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"python": "?", "error": f"{env.python} does not run: {(done.stderr or '').strip()[-300:]}",
                "address": None, "version": None}


# ---- extensions.external.json ----

def decorator_entry(wheel: Path) -> dict[str, str]:
    """The WebUI's decorator entry for this copy: the adapter's shipped entry, with a requirements value
    the WebUI's installer can paste into ``pip install {requirements} gradio==5.49.1`` (this wheel) and
    websites that point at this copy's README."""
    entry: dict[str, str] = {key: "" for key in ENTRY_KEYS}
    try:
        shipped = json.loads((SOURCE_ROOT / ADAPTER_PACKAGE / EXTERNAL_FILE).read_text())["decorators"][0]
        entry.update({k: str(v) for k, v in shipped.items() if k in ENTRY_KEYS})
    except (OSError, ValueError, KeyError, IndexError):
        pass
    readme = (SOURCE_ROOT / "README.md").as_uri()
    entry.update({
        "package_name": ADAPTER_PACKAGE, "name": entry["name"] or "modelhost", "extension_type": "decorator",
        "extension_class": "inner", "requirements": shlex.quote(str(wheel)), "website": readme,
        "extension_website": readme, "license": entry["license"] or "MIT",
        "extension_platform_version": entry["extension_platform_version"] or "0.0.1",
        "description": entry["description"] or "Runs MusicGen, AudioGen and RVC on a modelhost host.",
        "author": entry["author"] or "modelhost", "extension_author": entry["extension_author"] or "modelhost",
    })
    return entry


def register(root: Path, wheel: Path) -> dict[str, str]:
    """Put our entry last in the decorators of ``root/extensions.external.json`` (innermost of the inner
    decorators: right around the model call), replacing an older one; other entries and keys are kept."""
    data = _read_external(root)
    entry = decorator_entry(wheel)
    data["decorators"] = [d for d in data.get("decorators") or [] if not _is_ours(d)] + [entry]
    _write_external(root, data)
    return entry


def unregister(root: Path) -> bool:
    path = root / EXTERNAL_FILE
    if not path.is_file():
        return False
    data = _read_external(root)
    kept = [d for d in data.get("decorators") or [] if not _is_ours(d)]
    if len(kept) == len(data.get("decorators") or []):
        return False
    data["decorators"] = kept
    _write_external(root, data)
    return True


def _is_ours(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("package_name") == ADAPTER_PACKAGE


def _read_external(root: Path) -> dict[str, Any]:
    path = root / EXTERNAL_FILE
    if not path.exists():
        return json.loads(json.dumps(EMPTY_EXTERNAL))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(f"{path} is not readable JSON ({exc}); fix it or move it away, then run this again") from None
    if not isinstance(data, dict) or not isinstance(data.get("decorators", []), list):
        raise InstallError(f"{path} is not the WebUI's shape (an object with a \"decorators\" list); fix it or move it away")
    return data


def _write_external(root: Path, data: dict[str, Any]) -> None:
    path = root / EXTERNAL_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # never a half-written file for the WebUI to read


# ---- doctor ----

def doctor(root: Path, envs: list[PythonEnv], args: argparse.Namespace) -> int:
    environ = webui_environment(str(root), os.environ)
    names = list(WebuiCatalog(root, environ=environ).scan())
    problems = 0
    hosts: dict[str, tuple[list[str] | None, str]] = {}
    for env in envs:
        probe = probe_environment(env, root)
        address = probe["address"] or _default_address(environ)
        if probe["error"]:
            problems += 1
            print(f"{env.label} ({env.python}): PROBLEM: the adapter does not load ({probe['error']}); "
                  f"run `modelhost webui install {root}`")
        else:
            print(f"{env.label} ({env.python}, Python {probe['python']}): the adapter loads (modelhost {probe['version']}); "
                  f"it will reach {address}")
        label = "main" if env.label == "main environment" else env.label.removeprefix(".venvs/")
        for name, route in extension_routes(probe.get("extensions") or [], None if label.startswith("--") else label):
            print(f"  {name}: {route}")
        if address not in hosts:
            hosts[address] = _host_models(address, environ.get("MODELHOST_TOKEN"))
    try:
        mapped = parse_model_map(environ.get(MODEL_MAP_ENV))
    except ValueError as exc:  # the adapter refuses it the same way
        problems += 1
        print(f"{MODEL_MAP_ENV}: PROBLEM: {exc}")
        mapped = {}
    for address, (served, error) in hosts.items():
        if served is None:
            problems += 1
            print(f"host {address}: PROBLEM: no host answers ({error}); start one: modelhost serve --webui {root}"
                  + ("" if "MODELHOST_ADDRESS" not in environ else f" --address {address}"))
            continue
        missing = [n for n in names if n not in served and mapped.get(n) not in served]
        print(f"host {address}: answers; serves {len(names) - len(missing)} of the WebUI's {len(names)} models")
        if len(missing) == len(names):
            problems += 1
            print(f"host {address}: PROBLEM: it serves none of them; restart it as `modelhost serve --webui {root}`")
        elif missing:
            print(f"host {address}: not listed: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                  f"(a host started with --webui {root} serves voices added since its start on first use)")
    print("all well" if not problems else f"{problems} problem(s): see the lines marked PROBLEM")
    return 1 if problems else 0


def _default_address(environ: dict[str, str]) -> str:
    from modelhost.client.protocol.address import ADDRESS_ENV, SOCKET_NAME, runtime_dir

    return environ.get(ADDRESS_ENV) or f"ipc://{os.path.join(runtime_dir(), SOCKET_NAME)}"


def _host_models(address: str, token: str | None) -> tuple[list[str] | None, str]:
    """The names a host at ``address`` lists, or (None, why not)."""
    from modelhost.client import Client, ModelhostError

    try:
        with Client(address, token=token, liveness_s=2.0) as client:
            return [m["name"] for m in client.ps(timeout_s=5.0)], ""
    except (ModelhostError, ValueError) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__




if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
