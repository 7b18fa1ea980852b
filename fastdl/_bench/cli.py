"""``python -m fastdl bench``: options, the run, and where its output goes.

The full tables go to ``RESULTS.md`` (with ``results.json`` and, when
matplotlib is installed, ``results.png``) in a new directory
``./fastdl-bench-YYYYmmdd-HHMMSS/`` unless ``--out`` names one, so a run
never overwrites the committed ``bench/results/`` by accident.  Progress
goes to stderr and a short summary to stdout.  The project's speed targets
live in ``bench/targets.py`` of a source checkout and are checked only when
fastdl runs from one.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import fastdl
from .. import _config
from .cases import (AFFINE_KERNELS, CASE_BUDGET, COPY_MIB, CORE_KERNELS, GEMM_N, PASSES,
                    REPEATS, SETTLE, SIZES, run_case)
from .measure import (busy_warning, compiled_backends, copy_bandwidth, first_call_times,
                      gemm_throughput, import_times, load_average, machine_info)
from .render import fastest_backends, fmt_time, size_label, summary_lines, write_markdown
from .render import write_plot
from .training import training_step_times
from . import linear_ce


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m fastdl bench",
        description="Benchmark report: fastdl against NumPy and PyTorch, with this "
                    "machine's copy bandwidth and GEMM throughput, start-up costs and, "
                    "from a source checkout, the project's targets; writes RESULTS.md, "
                    "results.json and results.png to a new directory and prints a summary.")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes and fewer repeats (about 1-2 minutes; CI)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: a new ./fastdl-bench-YYYYmmdd-HHMMSS/)")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up measurements (subprocesses)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every contender (default: fastdl's, all cores)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (median of)")
    p.add_argument("--kernels", default=None,
                   help=f"comma-separated subset of {','.join(CORE_KERNELS)}")
    p.add_argument("--startup-kernels", default=None,
                   help="comma-separated kernels for the first-call measurement "
                        "(default: the benchmarked ones)")
    p.add_argument("--dtypes", default="float32,float64", help="default float32,float64")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-train", action="store_true",
                   help="leave out the training-step timing of the digits MLP")
    p.add_argument("--no-linear-ce", action="store_true",
                   help="leave out the fused linear + cross-entropy head (in the full mode "
                        "its largest contenders take minutes)")
    return p


def new_output_dir(parent=".", now=None):
    """Create and return ``parent/fastdl-bench-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... if taken)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = os.path.join(parent, f"fastdl-bench-{stamp}")
    path, k = base, 1
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            k += 1
            path = f"{base}-{k}"


def targets_path():
    """``bench/targets.py`` of the source checkout fastdl runs from, or None.

    An installed fastdl (a wheel in site-packages) has no ``bench/`` beside
    it: the report then measures everything but checks no targets.
    """
    root = Path(fastdl.__file__).resolve().parent.parent
    path = root / "bench" / "targets.py"
    return path if path.is_file() and (root / "pyproject.toml").is_file() else None


def _load_targets(path):
    spec = importlib.util.spec_from_file_location("_fastdl_bench_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_torch():
    """``torch``, or None; imported with the OpenMP environment a torch user has.

    ``import fastdl`` sets ``GOMP_SPINCOUNT`` for its own OpenMP threads
    (``_config.GOMP_SPINCOUNT``) unless the user set it; PyTorch's bundled
    libgomp reads the environment when it loads, so it is imported without
    fastdl's value, as in a script that uses PyTorch alone.
    """
    ours = os.environ.get("GOMP_SPINCOUNT") == _config.GOMP_SPINCOUNT
    saved = os.environ.pop("GOMP_SPINCOUNT") if ours else None
    try:
        import torch
    except ImportError:
        return None
    finally:
        if saved is not None:
            os.environ["GOMP_SPINCOUNT"] = saved
    return torch


def _kernel_list(text, default):
    if text is None:
        return default
    names = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in names if k not in CORE_KERNELS]
    if unknown:
        raise SystemExit(f"fastdl bench: unknown kernels {unknown}; choose from {CORE_KERNELS}")
    return names


def run_report(argv=None) -> int:
    """Command-line entry point of ``python -m fastdl bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    repeats = args.repeats or REPEATS[mode]
    kernels = _kernel_list(args.kernels, CORE_KERNELS)
    startup_kernels = _kernel_list(args.startup_kernels, kernels)
    dtypes = [np.dtype(d.strip()) for d in args.dtypes.split(",") if d.strip()]
    if any(d not in (np.float32, np.float64) for d in dtypes):
        raise SystemExit("fastdl bench: --dtypes takes float32 and/or float64")
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    loads = {"start": load_average()}
    warning = busy_warning(loads)
    if warning:  # said again at the end, with the load then
        log(f"warning: {warning}")

    threads = args.threads or fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        log("threadpoolctl is not installed: BLAS thread count not matched")
    compiled = compiled_backends()  # loads the backends (and their OpenMP runtime)
    torch = None if args.no_torch else _import_torch()
    if torch is None and not args.no_torch:
        log("PyTorch not installed: its rows are skipped")
    if torch is not None:
        torch.set_num_threads(threads)
    out = args.out if args.out is not None else new_output_dir()
    os.makedirs(out, exist_ok=True)

    try:
        info = machine_info(threads, torch)
        log(f"fastdl bench ({mode}): {threads} threads for every contender; backends "
            f"{', '.join(compiled) or 'none'}; torch {'yes' if torch else 'no'}; "
            f"writing to {out}")
        # Copy bandwidth is probed before and after the kernels, and the
        # fractions use the higher figure: one probe alone varied between
        # 24 and 37 GB/s across runs here (other tenants of the host), and
        # a low probe would flatter every fraction.
        copy_probes = [copy_bandwidth(threads, COPY_MIB[mode], repeats)]
        copy_bw = copy_probes[0]
        gemm_peak = {np.dtype(d).name: gemm_throughput(GEMM_N[mode], d, repeats)
                     for d in (np.float32, np.float64)}
        log(f"copy bandwidth {copy_bw / 1e9:.1f} GB/s; GEMM float32 "
            f"{gemm_peak['float32'] / 1e9:.0f} GFLOP/s, float64 "
            f"{gemm_peak['float64'] / 1e9:.0f} GFLOP/s")

        row_sizes, affine_sizes = SIZES[mode]
        cases = []
        for dtype in dtypes:
            for op in kernels:
                for size in (affine_sizes if op in AFFINE_KERNELS else row_sizes):
                    case = run_case(op, size, dtype, compiled, torch, repeats,
                                    CASE_BUDGET[mode], SETTLE[mode], PASSES[mode])
                    cases.append(case)
                    t = case["times"]
                    summary = ", ".join(f"{n} {fmt_time(v)}" for n, v in t.items())
                    bad = f"  WRONG: {', '.join(case['errors'])}" if case["errors"] else ""
                    log(f"{op} {size_label(size)} {np.dtype(dtype).name}: {summary}{bad}")

        lce = [] if args.no_linear_ce else linear_ce.run_cases(
            mode, compiled, torch, threads, log, memory=mode != "tiny")

        copy_probes.append(copy_bandwidth(threads, COPY_MIB[mode], repeats))
        copy_bw = max(copy_probes)
        log(f"copy bandwidth again {copy_probes[-1] / 1e9:.1f} GB/s; fractions use "
            f"{copy_bw / 1e9:.1f} GB/s")

        import_s, startup = None, []
        if not args.no_startup:
            import_s = import_times(threads, 5 if mode == "full" else 3)
            log(f"import numpy {import_s['numpy']:.3f}s, import fastdl "
                f"{import_s['fastdl']:.3f}s")
            startup = first_call_times(startup_kernels, compiled, threads, log)

        train = None if args.no_train else training_step_times(mode, torch, log)
        tpath = targets_path()
        checks = (None if tpath is None else _load_targets(tpath).check_targets(
            cases, compiled, copy_bw, startup, import_s, train, linear_ce=lce))
        opts = {"argv": list(argv if argv is not None else sys.argv[2:]), "mode": mode,
                "repeats": repeats, "threads": threads}
        png = os.path.join(out, "results.png")
        try:
            write_plot(png, cases, compiled, copy_bw, gemm_peak)
            opts["plot_note"] = "Plot: [results.png](results.png)."
        except ImportError:
            opts["plot_note"] = "No plot: matplotlib is not installed."
            log("matplotlib is not installed: skipping results.png")
        try:
            info["load average at end (1, 5, 15 min)"] = "%.2f %.2f %.2f" % os.getloadavg()
        except (AttributeError, OSError):
            pass
        loads["end"] = load_average()
        warning = busy_warning(loads)
        results = {"machine": info, "copy_bandwidth_Bps": copy_bw,
                   "copy_bandwidth_probes_Bps": copy_probes,
                   "gemm_flops": gemm_peak, "cases": cases, "import_s": import_s,
                   "first_call": startup, "train_step_s": train, "targets": checks,
                   "linear_ce": lce,
                   "warnings": [warning] if warning else []}
        with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
        md = os.path.join(out, "RESULTS.md")
        write_markdown(md, results, opts, compiled, fastest_backends(cases, compiled))
        linear_ce.insert_markdown(md, linear_ce.markdown(lce, threads, compiled))
        if warning:
            print(f"fastdl bench: warning: {warning}", file=sys.stderr, flush=True)
        print("\n".join(summary_lines(results, opts, compiled, md)), flush=True)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    if any(c["errors"] for c in cases + lce):
        return 1
    return 0 if compiled else 1
