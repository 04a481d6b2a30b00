"""Stand-in for ``tts_webui/dotenv_manager/init.py`` (TTS-WebUI 8c9046b): what ``server.py`` runs first. ``init``
writes the default ``.env`` when there is none, then loads ``.env`` (never overriding what the environment
already sets) and ``.env.user`` (overriding). Both are read from the working directory, the WebUI's folder: the
real one lets python-dotenv search up from the module's own folder, which is the same folder in a WebUI laid
out as the WebUI is. Left out: ``print_env``."""

import os

from dotenv import load_dotenv

from .writer import generate_env, write_env


def init():
    if not os.path.exists(".env"):
        print("Env file not found. Creating default env.")
        write_env(generate_env())
    load_dotenv(".env")
    load_dotenv(".env.user", override=True)
