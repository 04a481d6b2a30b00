"""Where arrays should switch from inline (copied into the header) to out-of-band frames.

For each array size, one run times a full round trip through a DEALER/ROUTER pair over ipc://
(encode, send, receive, decode, echo back, decode) with the array forced inline and forced out of
band, side by side, and prints the ratio. The wire default (client.protocol.wire.DEFAULT_INLINE_MAX_BYTES)
is set from these figures. Usage: python -m benchmarks.wire_threshold [--reps N] [--json OUT]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import zmq

from benchmarks import machine
from modelhost.client.protocol import wire

SIZES = [1024, 4096, 8192, 16384, 32768, 65536, 262144, 1048576, 4194304]


def round_trip_us(nbytes: int, inline: bool, reps: int) -> float:
    limits = wire.Limits(inline_max_bytes=(1 << 40) if inline else 0)
    arr = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = zmq.Context()
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind(f"ipc://{tmp}/s")
        dealer.connect(f"ipc://{tmp}/s")
        times = []
        for i in range(reps + 5):
            t0 = time.perf_counter_ns()
            dealer.send_multipart(wire.encode("generate", i, {"model": "m", "audio": arr}, limits=limits), copy=False)
            peer, *frames = router.recv_multipart(copy=False)
            msg = wire.decode(frames, limits=limits)
            router.send_multipart([peer, *wire.encode("result", i, {"audio": msg.body["audio"]}, limits=limits)], copy=False)
            wire.decode(dealer.recv_multipart(copy=False), limits=limits)
            if i >= 5:
                times.append(time.perf_counter_ns() - t0)
        router.close(0)
        dealer.close(0)
        ctx.term()
    return statistics.median(times) / 1000


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=200)
    print(machine.line())
    print(f"{'bytes':>10} {'inline us':>10} {'frame us':>10} {'inline/frame':>13}")
    rows = []
    for size in SIZES:
        a, b = round_trip_us(size, True, args.reps), round_trip_us(size, False, args.reps)
        rows.append({"bytes": size, "inline_us": round(a, 1), "frame_us": round(b, 1), "ratio": round(a / b, 3)})
        print(f"{size:>10} {a:>10.1f} {b:>10.1f} {a / b:>13.2f}")
    report = {"machine": machine.describe(), "median_round_trip": rows, "inline_max_bytes": wire.DEFAULT_INLINE_MAX_BYTES}
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
