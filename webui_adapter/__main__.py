"""``python -m webui_adapter``: run a light UI instance (Gradio) that generates on the modelhost host."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webui_adapter",
        description="A light UI instance: MusicGen, AudioGen and RVC tabs whose generation runs on the modelhost "
                    "host. Loads no model and no torch; run several on different ports and they share the host's "
                    "resident models. Its Gradio API (/musicgen, /rvc) takes TTS-WebUI's parameter names, so "
                    "TTS-WebUI's React UI can use it: GRADIO_BACKEND=http://127.0.0.1:PORT/.",
    )
    parser.add_argument("--port", type=int, default=4200, help="HTTP port (default 4200)")
    parser.add_argument("--listen", default="127.0.0.1",
                        help="interface to serve on (default 127.0.0.1; 0.0.0.0 exposes the UI to your network)")
    parser.add_argument("--address", help="the host's address (default: $MODELHOST_ADDRESS, else this user's local socket)")
    args = parser.parse_args(argv)
    if args.address:
        os.environ["MODELHOST_ADDRESS"] = args.address
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from webui_adapter.forward import Forwarder, Settings
        from webui_adapter.ui import launch

        fwd = Forwarder(Settings.from_env())
    except ImportError as exc:
        print(f"python -m webui_adapter needs Gradio: pip install 'modelhost[webui]' ({exc})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"python -m webui_adapter: {exc}", file=sys.stderr)
        return 2
    print(f"modelhost light UI on http://{args.listen}:{args.port}/ -> host {fwd.settings.address}", flush=True)
    launch(fwd, args.port, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
