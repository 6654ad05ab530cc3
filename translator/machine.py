"""The machine a figure was measured on, as run directories, reports and the bench name it."""

from __future__ import annotations

import os
import platform


def hardware() -> str:
    """This machine as a results table names it, e.g. "Intel(R) Xeon(R) Processor (x86_64), 2 CPU cores"
    ("1 of 2 CPU cores" when the process is pinned to fewer, as by taskset), plus its GPUs."""
    import tensorflow as tf

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    total = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    text = f"{name} ({platform.machine()}), " + (f"{usable} of {total}" if usable != total else f"{total}") + " CPU cores"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        text += f", {len(gpus)} x {details.get('device_name', 'GPU')}"
    return text


def matrix_instructions() -> str:
    """What this CPU multiplies matrices with, from /proc/cpuinfo's flags: the speed of every
    product here, and so every ratio to the textbook's per-call overhead, depends on it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = set(next(line for line in cpuinfo if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "CPU flags unknown"
    vector = ("AVX-512 with bfloat16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags
              else "AVX2" if "avx2" in flags else "no AVX2")
    return vector + (", AMX" if "amx_bf16" in flags else ", no AMX")
