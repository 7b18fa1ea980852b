"""``python -m fastdl bench``: the benchmark report, in one run.

Measures, side by side on this machine and in one process:

1. the physical limits: streaming copy bandwidth with all threads (a
   parallel array copy) and BLAS GEMM throughput (float32 and float64);
2. every core kernel at the sizes of ``BENCHMARKS.md``, float32 and float64:
   median time of the NumPy code a user would write, of each compiled fastdl
   backend and of PyTorch CPU (when installed; skipped, never faked), each
   result checked against a float64 reference before its time is trusted;
   the ratios ``numpy_time / fastdl_time`` and ``torch_time / fastdl_time``,
   the fraction of copy bandwidth reached and the peak extra memory per call;
3. the digits MLP's training step, every contender of ``python -m fastdl demo``;
4. start-up costs in fresh subprocesses: ``import fastdl``, and the first call
   of each kernel with a cold and then a warm Numba cache;

then, from a source checkout, checks the project's targets
(``bench/targets.py``), and writes ``RESULTS.md``, ``results.json`` and
``results.png`` (skipped, with a message, without matplotlib).

Every contender gets the same thread count: fastdl's kernels, BLAS (via
threadpoolctl), PyTorch and the copy-bandwidth probe.  Each contender is timed
in blocks after an untimed settling run, in passes of alternating order;
only ratios taken in the same run are reported.

Modules:

- :mod:`.baselines` -- the NumPy code a user would write (also timed by ``bench/``);
- :mod:`.measure` -- the timing harness, bandwidth and GEMM probes, start-up
  subprocesses, the machine's description and load;
- :mod:`.cases` -- sizes per mode, kernels, each row's contenders and checks;
- :mod:`.training` -- the training-step timing;
- :mod:`.render` -- markdown tables, the plot and the stdout summary;
- :mod:`.cli` -- the options and :func:`~fastdl._bench.cli.run_report`.
"""
