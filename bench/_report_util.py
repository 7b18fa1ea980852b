"""What the report scripts of bench/ share: the machine line and the output."""

import platform
import time

import numpy as np


def cpu_model():
    """The CPU's model name and the widest SIMD it has (AVX-512F, AVX2, SSE2)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor()
    flags = next((line.split(":")[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    model = next((line.split(":")[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "?")
    simd = "AVX-512F" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "SSE2")
    return f"{model}, {simd}"


def emit(lines, out=None):
    """Print the report's lines, and write them to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text)


def median_time(f, repeats=7):
    """The median of ``repeats`` timed calls of f, after one untimed call."""
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
