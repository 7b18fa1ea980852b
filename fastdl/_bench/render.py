"""The report's output: number formats, markdown tables, the plot, the summary.

Nothing here measures; every function turns the results of a run
(``fastdl._bench.cli.run_report``) into text or a picture.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from .cases import (AFFINE_KERNELS, COPY_MIB, CORE_KERNELS, GEMM_N, NUMPY_NOTE, PASSES,
                    ROW_KERNELS, TORCH_NOTE, TRAIN_REPEAT, auto_backend)

#: What the report says in place of the targets when it cannot check them.
TARGETS_NOT_FOUND = "targets: not checked (bench/targets.py not found)"


def fmt_time(t):
    if t is None:
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_bytes(b):
    if b is None:
        return "n/t"
    if b < 1024:
        return f"{b} B"
    if b < 1 << 20:
        return f"{b / 1024:.0f} KiB"
    return f"{b / (1 << 20):.1f} MiB"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def size_label(size):
    return "x".join(str(s) for s in size)


def ratio(num, den):
    return None if num is None or den is None else num / den


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def row_table(cases, compiled, copy_bw):
    header = ["kernel", "N×C", "dtype", "numpy", "torch"]
    header += [f"{b}" for b in compiled]
    for b in compiled:
        header += [f"numpy/{b}", f"torch/{b}"]
    header += [f"BW {name}" for name in ("numpy", "torch", *compiled)]
    header += [f"mem {name}" for name in ("numpy", *compiled)]
    rows = []
    for c in cases:
        t = c["times"]
        row = [c["op"], size_label(c["size"]), c["dtype"],
               fmt_time(t.get("numpy")), fmt_time(t.get("torch"))]
        row += [fmt_time(t.get(b)) if b not in c["errors"] else "WRONG" for b in compiled]
        for b in compiled:
            row += [fmt_ratio(ratio(t.get("numpy"), t.get(b))),
                    fmt_ratio(ratio(t.get("torch"), t.get(b)))]
        for name in ("numpy", "torch", *compiled):
            tt = t.get(name)
            row.append("—" if tt is None else f"{c['bytes'] / tt / copy_bw:.0%}")
        row += [fmt_bytes(c["memory"].get(name)) for name in ("numpy", *compiled)]
        rows.append(row)
    return _table(header, rows)


def affine_table(cases, compiled, gemm_peak):
    header = ["kernel", "N×D×H", "dtype", "numpy", "floor", "torch", *compiled]
    for b in compiled:
        header += [f"{b}/floor", f"numpy/{b}", f"torch/{b}"]
    header += [f"GEMM-peak {name}" for name in ("floor", *compiled)]
    header += [f"mem {name}" for name in ("numpy", *compiled)]
    rows = []
    for c in cases:
        t = c["times"]
        floor = c["floors"][0]
        row = [c["op"], size_label(c["size"]), c["dtype"], fmt_time(t.get("numpy")),
               f"{fmt_time(t.get(floor))} ({floor})", fmt_time(t.get("torch"))]
        row += [fmt_time(t.get(b)) if b not in c["errors"] else "WRONG" for b in compiled]
        for b in compiled:
            row += [fmt_ratio(ratio(t.get(b), t.get(floor))),
                    fmt_ratio(ratio(t.get("numpy"), t.get(b))),
                    fmt_ratio(ratio(t.get("torch"), t.get(b)))]
        for name in (floor, *compiled):
            tt = t.get(name)
            row.append("—" if tt is None else f"{c['flops'] / tt / gemm_peak[c['dtype']]:.0%}")
        row += [fmt_bytes(c["memory"].get(name)) for name in ("numpy", *compiled)]
        rows.append(row)
    return _table(header, rows)


def fastest_backends(cases, compiled):
    """Per kernel and dtype: the backend with the best geometric-mean time."""
    result = {}
    for op in CORE_KERNELS:
        for dtype in ("float32", "float64"):
            sel = [c for c in cases if c["op"] == op and c["dtype"] == dtype]
            if not sel or not compiled:
                continue
            score = {}
            for b in compiled:
                ts = [c["times"].get(b) for c in sel]
                if all(ts):
                    score[b] = math.exp(statistics.fmean(math.log(x) for x in ts))
            if score:
                best = min(score, key=score.get)
                wins = {b: sum(1 for c in sel if c["times"].get(b) and
                               c["times"][b] == min(c["times"].get(x) or math.inf
                                                    for x in compiled)) for b in compiled}
                result[(op, dtype)] = (best, score, wins, len(sel))
    return result


def train_table(times):
    base = times.get("hand-written NumPy")
    torch_t = times.get("PyTorch eager")
    rows = [[name, fmt_time(t), fmt_ratio(ratio(base, t)), fmt_ratio(ratio(torch_t, t))]
            for name, t in times.items()]
    return _table(["variant", "time/step", "NumPy/X", "torch/X"], rows)


def startup_table(startup, import_s):
    parts = []
    if import_s is not None:
        parts.append(f"`import numpy`: {import_s['numpy'] * 1e3:.0f} ms; `import fastdl` "
                     f"(including NumPy): {import_s['fastdl'] * 1e3:.0f} ms "
                     "(median of fresh interpreters).")
    if startup:
        header = ["kernel", "backend", "load (cold)", "1st call serial cold",
                  "1st call parallel cold", "load (warm)", "1st call serial warm",
                  "1st call parallel warm", "steady call"]
        rows = []
        for r in startup:
            c, w = r["cold"], r["warm"]
            rows.append([r["op"], r["backend"], fmt_time(c["load_s"]),
                         fmt_time(c["first_serial_s"]), fmt_time(c["first_parallel_s"]),
                         fmt_time(w["load_s"]), fmt_time(w["first_serial_s"]),
                         fmt_time(w["first_parallel_s"]), fmt_time(w["steady_s"])])
        parts.append(_table(header, rows))
    return "\n\n".join(parts)


def target_counts(checks):
    """(met, missed, not measured) among the target checks."""
    met = sum(1 for _, ok, _ in checks if ok is True)
    missed = sum(1 for _, ok, _ in checks if ok is False)
    return met, missed, len(checks) - met - missed


def targets_line(checks):
    """One line on the targets: how many were met, or why none were checked."""
    if checks is None:
        return TARGETS_NOT_FOUND
    met, missed, unmeasured = target_counts(checks)
    return (f"targets: {met} of {len(checks)} met, {missed} missed, "
            f"{unmeasured} not measured")


def write_markdown(path, results, opts, compiled, fastest):
    """RESULTS.md: every table of the run (``results`` is what results.json holds)."""
    info, cases = results["machine"], results["cases"]
    copy_bw, gemm_peak = results["copy_bandwidth_Bps"], results["gemm_flops"]
    startup, import_s = results["first_call"], results["import_s"]
    train, checks = results["train_step_s"], results["targets"]
    L = ["# fastdl benchmark report", ""]
    command = " ".join(["python -m fastdl bench", *opts["argv"]])
    L.append(f"Generated by `{command}` (mode: {opts['mode']}; median of up to "
             f"{opts['repeats']} samples per contender and row, timed in "
             f"{PASSES[opts['mode']]} blocks of alternating contender order, each after "
             "an untimed settling run).")
    for warning in results["warnings"]:
        L += ["", f"> **Warning:** {warning}."]
    L += ["", "## Machine", ""]
    L += [f"- **{k}**: {v}" for k, v in info.items()]
    L += ["", "## Physical limits (same run)", "",
          f"- streaming copy bandwidth, {opts['threads']} threads (parallel array copy, "
          f"{COPY_MIB[opts['mode']]} MiB per array, read + write): "
          f"**{copy_bw / 1e9:.1f} GB/s**, the higher of two probes, before and after "
          "the kernels (" + ", ".join(f"{p / 1e9:.1f}"
                                      for p in results["copy_bandwidth_probes_Bps"])
          + " GB/s); every bandwidth fraction below uses it",
          f"- BLAS GEMM ({GEMM_N[opts['mode']]}² matmul): float32 "
          f"**{gemm_peak['float32'] / 1e9:.0f} GFLOP/s**, float64 "
          f"**{gemm_peak['float64'] / 1e9:.0f} GFLOP/s**", ""]
    L += ["## How to read the tables", "",
          "- Times are medians per call. `numpy/X` = numpy_time / X_time and "
          "`torch/X` = torch_time / X_time, measured in the same run (> 1× means X is faster).",
          "- `BW X` = (bytes read + bytes written) / X_time / copy bandwidth, counting only "
          "the bytes the kernel must move (inputs once, outputs once). Above 100% means the "
          "data fits in cache (small sizes).",
          "- `mem X` = peak extra bytes allocated during one call, as tracemalloc sees them "
          "(NumPy allocations); fastdl rows write into a preallocated `out=` where the API "
          "has one. PyTorch allocates outside tracemalloc: `n/t` (not traced).",
          "- `WRONG` = the contender's result did not match NumPy's; its time is not reported.",
          "- Contenders: NumPy as a user would write it; fastdl backends "
          f"({', '.join(compiled) or 'none'}); PyTorch: " +
          "; ".join(f"{k}: {v}" for k, v in TORCH_NOTE.items()) + ".",
          "- Affine: `floor` is " + "; ".join(f"{k}: {v}" for k, v in NUMPY_NOTE.items()) +
          ". `X/floor` = X_time / floor_time (≤ 1.10× / 1.15× is the target). "
          "`GEMM-peak X` = FLOPs / X_time / this run's GEMM throughput.", ""]
    for dtype in ("float32", "float64"):
        sel = [c for c in cases if c["dtype"] == dtype and c["op"] in ROW_KERNELS]
        if sel:
            L += [f"## Row kernels, {dtype}", "", row_table(sel, compiled, copy_bw), ""]
        sel = [c for c in cases if c["dtype"] == dtype and c["op"] in AFFINE_KERNELS]
        if sel:
            L += [f"## Affine, {dtype}", "", affine_table(sel, compiled, gemm_peak), ""]
    errors = [(c, n, e) for c in cases for n, e in c["errors"].items()]
    if errors:
        L += ["## Wrong results", ""]
        L += [f"- {c['op']} {size_label(c['size'])} {c['dtype']} {n}: {e}"
              for c, n, e in errors]
        L.append("")
    L += ["## Fastest backend per kernel", "",
          "Geometric mean of the times over this run's sizes; `wins` counts sizes where the "
          "backend was fastest. `AUTO_ORDER` is what `\"auto\"` tries first "
          "(fastdl/_config.py).", ""]
    rows = []
    for (op, dtype), (best, score, wins, n) in fastest.items():
        auto = auto_backend(op, compiled)
        others = ", ".join(f"{b} {score[best] / score[b]:.2f}" for b in score if b != best)
        rows.append([op, dtype, best, f"{wins[best]}/{n}",
                     f"{others} (time ratio best/other)" if others else "—",
                     auto, "yes" if auto == best else "**no**"])
    L += [_table(["kernel", "dtype", "fastest", "wins", "others", "auto picks", "agrees"],
                 rows), ""]
    if train:
        L += ["## Training step (digits MLP)", "",
              "64 → 128 → ReLU → 10, cross-entropy, Adam, float32, batch 64, synthetic "
              "batches of the digits shapes; one thread for every contender (fastdl, BLAS, "
              "PyTorch); time per step = one pass over the batches / their number, "
              f"median over {TRAIN_REPEAT[opts['mode']]} passes per contender, the "
              "contenders' passes interleaved. `NumPy/X` and `torch/X` > 1× mean X is "
              "faster. `GEMMs alone` is the five matrix products of the step without "
              "anything else: the floor for any implementation calling this BLAS.", "",
              train_table(train), ""]
    L += ["## Start-up", ""]
    if startup or import_s:
        L += ["Fresh interpreters; each kernel × backend gets a new empty `NUMBA_CACHE_DIR`: "
              "the first process compiles (cold), the second loads the cache (warm). "
              "`load` = importing the backend (Numba itself for numba); `1st call serial` = "
              "first call at (64, 10) / (64, 784, 128), below the parallel threshold; "
              "`1st call parallel` = next call at (256, 1000) / (256, 1024, 1024), the "
              "parallel kernel's first call; `steady` = a third call at that size. float32.",
              "", startup_table(startup, import_s), ""]
    else:
        L += ["Not measured (`--no-startup`).", ""]
    L += ["## Targets", ""]
    if checks is None:
        L += [TARGETS_NOT_FOUND + ": fastdl runs from an installed package, not from a "
              "source checkout, whose bench/targets.py holds the project's speed goals.", ""]
    else:
        mark = {True: "met", False: "**missed**", None: "n/a"}
        L += [_table(["target", "result", "figure"],
                     [[label, mark[ok], fig] for label, ok, fig in checks]), ""]
        met, missed, unmeasured = target_counts(checks)
        L += [f"{met} met, {missed} missed, {unmeasured} not measured.", ""]
    if opts.get("plot_note"):
        L += [opts["plot_note"], ""]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(L))


def summary_lines(results, opts, compiled, md_path):
    """The few lines ``python -m fastdl bench`` prints on stdout (the tables go to a file)."""
    info = results["machine"]
    lines = [
        f"fastdl {info['fastdl']} bench ({opts['mode']}), {info['date']}",
        f"machine: {info['cpu']}; SIMD: {info['cpu simd']}; fastdl's exp: "
        f"{info['fastdl exp simd copy']}",
        f"threads: {opts['threads']} for every contender; backends: "
        f"{', '.join(compiled) or 'none'}; torch: {info['torch']}",
        targets_line(results["targets"]),
    ]
    wrong = [f"{c['op']} {size_label(c['size'])} {c['dtype']} {n}"
             for c in results["cases"] for n in c["errors"]]
    if wrong:
        lines.append(f"WRONG results ({len(wrong)}): " + "; ".join(wrong))
    lines.append(f"full report: {md_path}")
    return lines


def write_plot(path, cases, compiled, copy_bw, gemm_peak):
    """results.png: speed-ups over NumPy and PyTorch, and bandwidth fractions (float32)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [c for c in cases if c["dtype"] == "float32"]
    labels = [f"{c['op']}\n{size_label(c['size'])}" for c in sel]
    x = np.arange(len(sel))
    colors = {"cython": "tab:blue", "numba": "tab:orange", "torch": "tab:red",
              "numpy": "tab:gray", "floor": "tab:green"}
    fig, axes = plt.subplots(3, 1, figsize=(max(12, 0.55 * len(sel) + 3), 14))

    def bars(ax, series, title, ylabel, log=True, ref=None):
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series):
            v = [np.nan if a is None else a for a in values]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, label=name,
                   color=colors.get(name.split()[0]))
        if ref is not None:
            for y, style in ref:
                ax.axhline(y, color="black", lw=0.8, ls=style)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_xlim(-0.6, len(sel) - 0.4)
        ax.set_axisbelow(True)
        ax.grid(axis="y", which="major", alpha=0.4)
        ax.legend(fontsize=8, ncol=4, loc="upper right")

    series = [(b, [ratio(c["times"].get("numpy"), c["times"].get(b)) for c in sel])
              for b in (*compiled, "torch")]
    bars(axes[0], series, "Speed-up over the NumPy a user would write (numpy_time / time), "
         "float32, same run", "× faster than NumPy", ref=[(1, "-")])
    series = [(b, [ratio(c["times"].get("torch"), c["times"].get(b)) for c in sel])
              for b in compiled]
    bars(axes[1], series, "Speed-up over PyTorch CPU (torch_time / fastdl_time), float32",
         "× faster than PyTorch", ref=[(1, "-")])
    # Bandwidth (row kernels) or GEMM-peak fraction (affine).
    series = []
    for name in ("numpy", "torch", *compiled):
        vals = []
        for c in sel:
            t = c["times"].get(name)
            if t is None:
                vals.append(None)
            elif c["flops"]:
                vals.append(c["flops"] / t / gemm_peak["float32"])
            else:
                vals.append(c["bytes"] / t / copy_bw)
        series.append((name, vals))
    bars(axes[2], series, f"Fraction of copy bandwidth ({copy_bw / 1e9:.1f} GB/s) reached; "
         f"affine: fraction of GEMM throughput ({gemm_peak['float32'] / 1e9:.0f} GFLOP/s); "
         "dashed: 60% target", "fraction", ref=[(1, "-"), (0.6, "--")])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
