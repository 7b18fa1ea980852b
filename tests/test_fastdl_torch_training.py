"""Real training with fastdl.torch: the digits MLP example against stock
PyTorch, and a two-process DistributedDataParallel (gloo, loopback) run
against the same training in one process."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
DDP_TIMEOUT = 120  # seconds, for both ranks together


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_mlp_follows_stock_pytorch():
    pytest.importorskip("sklearn")  # the data set (a test dependency, as for test_training)
    res = _load(EXAMPLES / "torch_digits_mlp.py").main(epochs=2, max_steps=40, verbose=False)
    ours, theirs = res["fastdl.torch"], res["torch"]
    assert len(ours["losses"]) == len(theirs["losses"]) == 40
    # Same start, same trajectory to float32 rounding (fastdl sums in float64,
    # the GEMMs run on another BLAS), and it did learn.
    assert ours["losses"][0] == pytest.approx(theirs["losses"][0], rel=1e-6)
    np.testing.assert_allclose(ours["losses"], theirs["losses"], rtol=2e-5)
    assert ours["losses"][-1] < 0.5 * ours["losses"][0]
    assert abs(ours["test_accuracy"] - theirs["test_accuracy"]) <= 2 / 450
    assert ours["step_us"] > 0 and theirs["step_us"] > 0 and res["step_ratio"] > 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(tmp_path):
    worker = HERE / "_torch_ddp_worker.py"
    out = tmp_path / "ddp.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    elif sys.platform == "darwin":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo0")
    port = _free_port()
    ranks = [subprocess.Popen(
        [sys.executable, str(worker), "--rank", str(r), "--world-size", "2",
         "--port", str(port), "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(2)]
    outputs = []
    try:
        for p in ranks:
            outputs.append(p.communicate(timeout=DDP_TIMEOUT)[0])
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for r, (p, text) in enumerate(zip(ranks, outputs)):
        assert p.returncode == 0, f"rank {r} failed:\n{text}"
        assert f"rank {r}: trained, saved, process group destroyed" in text, text

    ddp = np.load(out)
    losses, params = _load(worker).train()
    np.testing.assert_allclose(ddp["losses"], losses, rtol=1e-10)
    assert losses[-1] < losses[0]
    assert set(ddp.files) == {"losses"} | set(params)
    for name, value in params.items():
        np.testing.assert_allclose(ddp[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
