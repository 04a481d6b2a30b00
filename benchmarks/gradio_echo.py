"""The Gradio reference for benchmarks/ipc.py: what a WebUI process would otherwise use to reach another.

Runs under the environment that has gradio (.venv-py310): ``serve PORT`` starts a Gradio app whose
API endpoint ``/echo`` takes an audio file and returns it (upload, Gradio's file handling, download);
``call PORT WAV REPS`` times ``gradio_client`` calls carrying that file and prints the ns as JSON.
Kept apart from the host's environment so Gradio's dependencies never touch the model stack.
"""

from __future__ import annotations

import json
import sys
import time


def serve(port: int) -> None:
    import gradio as gr

    demo = gr.Interface(fn=lambda path: path, inputs=gr.File(type="filepath"), outputs=gr.File(), api_name="echo")
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=False, quiet=True)


def call(port: int, wav: str, reps: int) -> None:
    from gradio_client import Client, handle_file

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter_ns()
        client.predict(handle_file(wav), api_name="/echo")
        if i >= 2:
            times.append(time.perf_counter_ns() - t0)
    print(json.dumps(times))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        call(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
