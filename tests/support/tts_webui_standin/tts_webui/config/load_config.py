"""Stand-in for ``tts_webui/config/load_config.py`` (TTS-WebUI 8c9046b): the WebUI's default settings and
``load_config``, which reads ``config.json`` from the working directory (the WebUI's folder) and, where it is
missing, writes the defaults there and returns them. Kept: the default values and that write. Left out: nothing
else is in the real module."""

import json
import os

CONFIG_FILE = "config.json"

default_config = {
    "gradio_interface_options": {
        "inline": False, "inbrowser": True, "share": False, "debug": False, "max_threads": 40,
        "auth": None, "auth_message": None, "prevent_thread_lock": False, "show_error": False,
        "server_name": "127.0.0.1", "server_port": 7770, "height": 500, "width": "100%",
        "favicon_path": None, "ssl_keyfile": None, "ssl_certfile": None, "ssl_keyfile_password": None,
        "ssl_verify": True, "quiet": True, "show_api": True, "_frontend": True,
    },
    "extensions": {"disabled": [], "disabled_decorators": []},
}


def load_config():
    if not os.path.exists(CONFIG_FILE):
        print("Config file not found. Creating default config.")
        with open(CONFIG_FILE, "w") as out:
            json.dump(default_config, out, indent=2)
        return default_config
    with open(CONFIG_FILE) as source:
        return json.load(source)
