"""Command line: ``python -m fastdl {demo,bench,info}`` (also the ``fastdl`` script).

- ``demo``: train the digits MLP with fastdl and time a training step against
  the NumPy backend, plain NumPy and PyTorch (the README's main job).
- ``bench``: the benchmark report: machine limits, every core kernel against
  NumPy and PyTorch, start-up costs and targets, saved as markdown and a plot
  in a new directory, with a short summary on stdout.
- ``info``: versions, backends, build and threading settings.
- ``--version`` / ``-V``: ``fastdl <version>``.
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m fastdl {demo,bench,info} [options]
       python -m fastdl --version

  demo   train the digits MLP and time one step against NumPy and PyTorch
         (needs scikit-learn: pip install "fastdl[examples]";
         options: python -m fastdl demo --help)
  bench  benchmark report: core kernels against NumPy and PyTorch, copy
         bandwidth, GEMM throughput, start-up costs; writes RESULTS.md to a
         new ./fastdl-bench-YYYYmmdd-HHMMSS/ (or --out DIR) and prints a
         summary (options: python -m fastdl bench --help; --quick for CI)
  info   print versions, backends, build flags, threads and caches
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("-V", "--version"):
        from ._version import __version__

        print(f"fastdl {__version__}")
        return 0
    if command == "demo":
        from ._train_demo import run_train_demo

        return run_train_demo(rest)
    if command == "bench":
        from ._bench.cli import run_report

        return run_report(rest)
    if command == "info":
        from ._info import show_config

        show_config()
        return 0
    print(f"fastdl: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
