"""The garbage collector's pauses of a Python process started with this directory on
PYTHONPATH and GC_PAUSE_LOG naming a file: one line per collection appended to it,
"<generation> <milliseconds>" (bench/connect.py reads them)."""

import gc
import os
import time

LOG = os.environ.get("GC_PAUSE_LOG")
started = 0.0


def record(phase: str, info: dict) -> None:
    global started
    if phase == "start":
        started = time.perf_counter()
        return
    with open(LOG, "a") as log:
        log.write(f"{info['generation']} {(time.perf_counter() - started) * 1000:.1f}\n")


if LOG:
    gc.callbacks.append(record)
