"""How fast is the portable build against a -march=native build, here?

Usage (from the repository root, after `pip install -e .`):
    python .ci/native_vs_portable.py [--keep DIR]

Builds a second copy of the Cython kernels from this tree with
CFLAGS=-march=native (in a temporary directory), loads its serial
softmax and cross-entropy modules into this process next to the installed
(portable) ones, and times both, interleaved, on one thread against the
same-run NumPy reference: 4096x1000 softmax and fused cross-entropy with its
gradient, float32 and float64.  Prints each build's speed-up over NumPy and
the portable/native ratio (the target is >= 0.95).
"""

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fastdl
from fastdl.backends.cython import _cross_entropy_serial, _softmax_serial

REPO = Path(__file__).resolve().parent.parent


def build_native(workdir):
    src = Path(workdir, "src")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        Path(src, f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    env = dict(os.environ, CFLAGS="-march=native")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=src,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return src / "fastdl" / "backends" / "cython"


def load(path_dir, name):
    path = next(path_dir.glob(f"{name}.*.so"))
    full = f"fastdl.backends.cython.{name}"
    loader = importlib.machinery.ExtensionFileLoader(full, str(path))
    spec = importlib.util.spec_from_file_location(full, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_ce_with_grad(z, t):
    p = np_softmax(z)
    n = len(t)
    loss = -np.log(p[np.arange(n), t]).mean()
    p[np.arange(n), t] -= 1
    return loss, p / n


def contenders(dtype, native_sm, native_ce, rng):
    x = (3 * rng.standard_normal((4096, 1000))).astype(dtype)
    t = rng.integers(0, 1000, 4096)
    out = np.empty_like(x)
    scale = np.full(4096, 1 / 4096)
    loss = np.empty(4096)
    w = np.zeros(1, dtype)
    spec = "float" if dtype == np.float32 else "double"

    def ce(mod):
        f = mod.cross_entropy_index[spec]
        return lambda: f(x, t, w, False, -1, 0.0, scale, loss, out, True, 1)

    def sm(mod):
        f = mod.softmax[spec]
        return lambda: f(x, out, 1)

    return {
        "softmax": {"numpy": lambda: np_softmax(x), "portable": sm(_softmax_serial),
                    "native": sm(native_sm)},
        "cross_entropy_with_grad": {"numpy": lambda: np_ce_with_grad(x, t),
                                    "portable": ce(_cross_entropy_serial),
                                    "native": ce(native_ce)},
    }


def time_interleaved(fns, rounds):
    samples = {k: [] for k in fns}
    for f in fns.values():
        f()
    for r in range(rounds):
        names = list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]
        for k in names:
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keep", help="build directory to use and keep")
    p.add_argument("--rounds", type=int, default=31)
    args = p.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="fastdl-native-")
    try:
        backends = Path(workdir, "src", "fastdl", "backends", "cython")
        if not any(backends.glob("_softmax_serial.*.so")):
            print(f"building the -march=native copy in {workdir} ...", flush=True)
            backends = build_native(workdir)
        native_sm = load(backends, "_softmax_serial")
        native_ce = load(backends, "_cross_entropy_serial")
        fastdl.set_num_threads(1)
        rng = np.random.default_rng(0)
        print(f"{'kernel':<26}{'dtype':<9}{'portable':>10}{'native':>10}"
              f"{'portable/native':>17}   (speed-up over NumPy, 1 thread, 4096x1000)")
        for dtype in (np.float32, np.float64):
            for op, fns in contenders(dtype, native_sm, native_ce, rng).items():
                t = time_interleaved(fns, args.rounds)
                sp, sn = t["numpy"] / t["portable"], t["numpy"] / t["native"]
                print(f"{op:<26}{np.dtype(dtype).name:<9}{sp:>9.2f}x{sn:>9.2f}x"
                      f"{sp / sn:>16.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
