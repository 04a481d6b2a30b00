"""modelhost's test stand-in for TTS-WebUI's ``tts_webui`` package (rsxdalv/TTS-WebUI at 8c9046b).

TTS-WebUI's own code is not on the package index and CI cannot reach GitHub, so the WebUI-runner tests
(``tests/integration/test_webui_runners.py``) lay out a WebUI with this package when no checkout is given
(``tests/support/webui_runner_tree.py``; with ``$MODELHOST_TTS_WEBUI`` they use the real one, and the same
tests pass on both). Written for modelhost from reading the real modules, not copied: each module here has
the real one's name, and the functions, signatures and behaviour that the tests, the MMS extension
(``tts-webui-extension-mms`` 0.1.0), the test's generator extension and modelhost's WebUI runner
(``host/backends/webui_call.py``) and adapter (``webui_adapter``) use. Each module's docstring names the real
module it stands in for and what it leaves out.

What matters to modelhost and is kept exactly: the decorator chain (which decorator adds what to the
keyword arguments and to the result, in the order the extension stacks them), ``log_function_time``'s
wrapper without ``functools.wraps`` (the function sits only in its closure), the decorator-extension loader
(``extensions.json`` / ``extensions.external.json``, ``decorator_*`` names, reversed, wrapped once more with
``functools.wraps``), ``manage_model_state`` (one model per namespace, keyed by the first argument), the seed
(``set_seed``'s rules, applied by the outer ``decorator_apply_torch_seed``), ``config.json`` (read at import,
written when missing or saved) and ``.env``/``.env.user``.

Left out: every UI tab and the server (``server.py``, ``tts_webui.gradio``, ``history_tab``, ``database``,
``tutorials``, ``cli``, ``gradio_proxy_tree``), interface extensions and the proxy harness
(``extensions_loader.interface_extensions``, ``proxy_harness``, ``setup_proxy_extension``), pip installs, and
the utilities none of the above use.
"""
