"""Stand-in for ``tts_webui/dotenv_manager/init.py`` (TTS-WebUI 8c9046b): what ``server.py`` runs first. ``init``
writes the default ``.env`` into the working directory when there is none there, then loads ``.env`` as
python-dotenv finds it with no path given (from a script: the nearest ``.env`` in this module's folder or above
it, which is the WebUI's folder) without overriding what the environment already sets, then ``.env.user`` from
the working directory, overriding. Left out: ``print_env``."""

import os

from dotenv import load_dotenv

from .writer import generate_env, write_env


def init():
    if not os.path.exists(".env"):
        print("Env file not found. Creating default env.")
        write_env(generate_env())
    load_dotenv()
    load_dotenv(dotenv_path=".env.user", override=True)
