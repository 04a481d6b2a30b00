"""Stand-in for ``tts_webui/utils/prompt_to_title.py`` (TTS-WebUI 8c9046b): a prompt as a short file-name part:
spaces, newlines and ``:'"\\.,()?!/`` become ``_``, then each ``__`` becomes ``_`` (one pass) and the first 15
characters are kept. Nothing left out."""

_REPLACED = " :'\"\\.,()?!/\n"


def prompt_to_title(prompt):
    title = "".join("_" if c in _REPLACED else c for c in prompt)
    return title.replace("__", "_")[:15]
