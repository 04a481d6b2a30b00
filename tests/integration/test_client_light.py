"""The client stays light: no torch at import, and it works on Python 3.10 (TTS-WebUI's default)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

PY310 = ROOT / ".venv-py310" / "bin" / "python"


def test_import_client_does_not_import_torch() -> None:
    code = "import sys, modelhost.client, modelhost.client.wavfile, modelhost.client.aio; import modelhost.host.cli; print(sorted(m for m in ('torch', 'modelhost.host.daemon') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_synchronous_client_never_imports_asyncio() -> None:
    code = ("import sys; from modelhost.client import Client; c = Client('ipc:///nonexistent/h.sock'); c.close(); "
            "print('asyncio' in sys.modules); from modelhost.client import AsyncClient; print('asyncio' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]  # asyncio comes with AsyncClient, and only then


@pytest.mark.skipif(not PY310.exists(), reason="no .venv-py310: the README's test command creates it (pyenv's 3.10 + pyzmq, msgpack, numpy)")
def test_client_works_on_python_3_10_against_the_host(host) -> None:
    code = textwrap.dedent(f"""
        import asyncio, sys
        assert sys.version_info[:2] == (3, 10), sys.version
        from modelhost.client import AsyncClient, Client
        with Client({host.address!r}) as c:
            r = c.generate("synth", "hi", params={{"duration_s": 0.25, "seed": 9}})
            print(r.audio.shape, r.sample_rate, "torch" in sys.modules)
        async def main():
            async with AsyncClient({host.address!r}) as c:
                return (await c.health())["ready"]
        print(asyncio.run(main()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(PY310), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(1, 8000) 32000 False", "True"]
