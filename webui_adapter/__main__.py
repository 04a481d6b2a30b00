"""``python -m webui_adapter``: run a light UI instance (Gradio) that generates on the modelhost host."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webui_adapter",
        description="A light UI instance: MusicGen/AudioGen and RVC tabs whose generation runs on the modelhost "
                    "host. Loads no model and no torch; run several on different ports and they share the host's "
                    "resident models. Its Gradio API is the one TTS-WebUI's React UI calls, so the React UI works "
                    "against it: GRADIO_BACKEND=http://127.0.0.1:PORT/.",
    )
    parser.add_argument("--port", type=int, default=4200, help="HTTP port (default 4200)")
    parser.add_argument("--listen", default="127.0.0.1",
                        help="interface to serve on (default 127.0.0.1; 0.0.0.0 exposes the UI to your network)")
    parser.add_argument("--address", help="the host's address (default: $MODELHOST_ADDRESS, else this user's local socket)")
    parser.add_argument("--webui", metavar="DIR",
                        help="the TTS-WebUI folder: its model folders are listed and results are saved in its outputs/ "
                             "(default: $MODELHOST_WEBUI, else the current directory)")
    args = parser.parse_args(argv)
    root = Path(args.webui or os.environ.get("MODELHOST_WEBUI") or ".").expanduser()
    if not root.is_dir():
        print(f"python -m webui_adapter: --webui {root} is not a folder; give the TTS-WebUI folder "
              "(the one with data/ and outputs/)", file=sys.stderr)
        return 2
    if args.address:
        os.environ["MODELHOST_ADDRESS"] = args.address
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from webui_adapter.forward import Forwarder, Settings
        from webui_adapter.ui import launch

        fwd = Forwarder(Settings.from_env())
    except ImportError as exc:
        print(f"python -m webui_adapter needs Gradio and soundfile: pip install 'modelhost[webui]' ({exc})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"python -m webui_adapter: {exc}", file=sys.stderr)
        return 2
    print(f"modelhost light UI on http://{args.listen}:{args.port}/ -> host {fwd.settings.address}; "
          f"saving to {root.absolute() / 'outputs'}", flush=True)
    launch(fwd, root, args.port, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
