"""The HTTP API (``modelhost serve --http HOST:PORT``): OpenAI's audio endpoints, ElevenLabs' sound effects
and speech-to-speech, and registration with TTS-WebUI's API extension, on the host's resident models.

It runs in its own process, a client of the host like any other: the daemon binds the port and
starts ``python -m modelhost.host.http_api`` (``process``), which serves a Starlette app with uvicorn
(``app``) and reaches the models through the public ``AsyncClient`` (shared memory on ipc://). The
host's own request path does not change. Modules: ``process`` (the daemon's side), ``__main__`` (the
child's entry), ``settings`` (what the daemon tells the child), ``app`` (routes), ``bodies`` (what
each request asks for), ``generation`` (the request on the host, the audio back), ``codec`` (PyAV
encoding and decoding), ``formats`` (the format names), ``directory`` (the served models), ``auth``
(API keys), ``errors`` (OpenAI's error shape), ``registration`` (TTS-WebUI's proxy registry).
"""
