"""Stand-in for ``tts_webui/utils/log_generation.py`` (TTS-WebUI 8c9046b): ``middleware_log_generation`` prints a
call's text (first 50 characters) and its other parameters as ``Type(name=repr, ...)``, without ``outputs``,
``_type`` and ``text``, dicts shown as ``dict``. Nothing left out but the module's demo."""


def _title(params: dict) -> str:
    return params["_type"].capitalize() if params.get("_type") else "Params"


def custom_repr(value):
    return "dict" if isinstance(value, dict) else repr(value)


def StringifyParams(params):
    shown = ",\n    ".join(f"{k}={custom_repr(v)}" for k, v in params.items() if k not in ("outputs", "_type", "text"))
    return f"{_title(params)}(\n    {shown}\n)"


def middleware_log_generation(params: dict):
    text = params.get("text", "")
    if text:
        print(f"Generating: '''{text[:50] + '...' if len(text) > 50 else text}'''")
    print(StringifyParams(params))
