"""Parallel kernels take only the cores other processes leave free (fastdl._load)."""

import subprocess
import sys
import time

import numpy as np
import pytest

import fastdl
from fastdl import _config, _load

pytestmark = pytest.mark.skipif(not _load.ENABLED, reason="needs Linux /proc (or it is off)")

BIG = _config.PARALLEL_MIN_ELEMENTS


@pytest.fixture
def fake_load(monkeypatch):
    """Set the number of other runnable threads the next reading sees."""
    seen = {"others": 0}
    monkeypatch.setattr(_load, "other_running", lambda: seen["others"])
    monkeypatch.setattr(_load, "last", None)
    monkeypatch.setattr(_config, "_USABLE_CORES", 4)
    monkeypatch.setattr(_config.state, "num_threads", 4)
    return seen


def _age_last_reading():
    """Make the last reading a period old, so the next call takes a new one."""
    _load.last = (_load.last[0] - _load.PERIOD, *_load.last[1:])


def _two_readings(fake_load, others):
    """threads_for(BIG) after two readings in a row that see ``others``."""
    fake_load["others"] = others
    _config.threads_for(BIG)
    _age_last_reading()
    return _config.threads_for(BIG)


def test_threads_are_capped_by_free_cores(fake_load, monkeypatch):
    assert _config.threads_for(BIG) == 4
    for others, expected in ((1, 3), (3, 1), (9, 1), (0, 4)):
        _age_last_reading()
        assert _two_readings(fake_load, others) == expected, others
    assert _config.threads_for(BIG - 1) == 1  # small work stays serial whatever the load


def test_one_reading_alone_does_not_cap(fake_load):
    # Two readings in a row must see the other threads: one instant's
    # miscount (a thread changing state between the two files) is ignored.
    assert _config.threads_for(BIG) == 4
    fake_load["others"] = 3
    _age_last_reading()
    assert _config.threads_for(BIG) == 4  # the first reading to see them
    _age_last_reading()
    assert _config.threads_for(BIG) == 1  # the second: load that lasts
    fake_load["others"] = 0
    _age_last_reading()
    assert _config.threads_for(BIG) == 4  # gone: uncapped at once


def test_a_reading_is_reused_for_a_period(fake_load):
    assert _two_readings(fake_load, 0) == 4
    fake_load["others"] = 3
    assert _config.threads_for(BIG) == 4  # the last reading is still fresh
    _age_last_reading()
    _config.threads_for(BIG)
    _age_last_reading()
    assert _config.threads_for(BIG) == 1


def test_the_user_setting_is_the_limit(fake_load, monkeypatch):
    monkeypatch.setattr(_config.state, "num_threads", 2)
    assert _config.threads_for(BIG) == 2
    monkeypatch.setattr(_load, "ENABLED", False)
    fake_load["others"] = 3
    monkeypatch.setattr(_load, "last", None)
    assert _config.threads_for(BIG) == 2


def test_other_processes_count_and_own_threads_do_not():
    """A reading counts CPU-bound processes started here, and not this
    process's own threads (the caller, workers still spinning)."""
    # This process's parallel kernels just ran: their workers may spin now.
    x = np.ones((256, 1024), np.float32)
    for backend in fastdl.available_backends():
        fastdl.softmax(x, backend=backend)
    before = min(_load.other_running() for _ in range(5))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        during = min(_load.other_running() for _ in range(5))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert during >= before + 1, (before, during)


def test_own_busy_threads_are_not_others():
    """A thread of this process that keeps a core busy (NumPy releases the
    GIL in np.sort) is this process's own work, not contention."""
    import threading

    stop = threading.Event()
    data = np.random.default_rng(0).random(1 << 20)

    def busy():
        while not stop.is_set():
            np.sort(data)

    quiet = min(_load.other_running() for _ in range(5))
    worker = threading.Thread(target=busy)
    worker.start()
    try:
        time.sleep(0.2)
        readings = [_load.other_running() for _ in range(5)]
    finally:
        stop.set()
        worker.join()
    # min over readings: other processes' load may come and go meanwhile.
    assert min(readings) <= quiet, (quiet, readings)


def test_show_config_reports_it(capsys):
    fastdl.show_config()
    line = [ln for ln in capsys.readouterr().out.splitlines() if "adaptive threads" in ln]
    assert line and "runnable thread(s) of other processes" in line[0]
