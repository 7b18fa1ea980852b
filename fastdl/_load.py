"""How many cores other work leaves to fastdl's parallel kernels (Linux).

Measured here (2 cores, float32, medians of 200 calls, with other processes
keeping the load average near 3): softmax 256x1000 took 97 us on one thread
and 561 us on two; 4096x1000, 1.7 ms against 5.2 ms; cross_entropy_with_grad
256x1000, 100 us against 449 us.  A parallel region waits at its end for its
slowest thread, and a thread that shares its core with another process's
runnable thread waits for the scheduler (milliseconds, not microseconds).  On
a quieter moment of the same run, softmax 256x1000 took 53 us on two threads
(1.8x faster than one).  So the
thread count a kernel takes is capped by the cores that other runnable
threads leave free:

    free = usable cores - (threads running now system-wide - this process's)

read from ``/proc/loadavg`` (its "running/total" field counts the threads
running or runnable right now) and ``/proc/self/task/*/stat`` (this
process's threads in state R, which include the calling thread and any
worker still spinning after the last parallel region).  A reading costs
about 130 us, so it is taken at most every :data:`PERIOD` seconds, and only
by a call that would run in parallel.

A cap needs two readings in a row to see the other threads, so load that
lasts (another process computing) counts and one instant's does not: the
two files are not read at one instant, and a thread that changes state in
between is miscounted.  Measured here on an idle machine, right after a
PyTorch op (whose OpenMP threads spin, then sleep): 25 of 1000 single
readings saw one other runnable thread, and each such reading capped every
call of the next period to one thread (softmax 4096x1000: 2041 us against
1052 us on two threads).  With a busy process beside it, 291 of 300
readings saw it.  Other systems (no ``/proc``), or
``FASTDL_ADAPTIVE_THREADS=0``, or ``fastdl._load.ENABLED = False``, keep the
thread count the user set.  ``fastdl.show_config()`` prints a fresh reading.
"""

from __future__ import annotations

import os
import time

#: Seconds between two readings of the machine's load.
PERIOD = 0.25

#: Whether kernels cap their threads by the cores other work leaves free.
ENABLED = os.environ.get("FASTDL_ADAPTIVE_THREADS", "1") != "0" and \
    os.path.exists("/proc/loadavg") and os.path.isdir("/proc/self/task")

#: The last reading: (monotonic time, other runnable threads the cap counts
#: -- the fewer of this reading's and the previous one's --, this reading's
#: own count), or None before the first.
last = None


def _own_running():
    """This process's threads in state R (running or runnable)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        # "pid (comm) S ...": the state follows the last ')' (comm may hold ')').
        if stat[stat.rindex(b")") + 2:][:1] == b"R":
            n += 1
    return n


def other_running():
    """Threads of other processes running or runnable now (a fresh reading)."""
    with open("/proc/loadavg", "rb") as f:
        running = int(f.read().split()[3].split(b"/")[0])
    return max(0, running - _own_running())


def free_cores(cores):
    """The cores of ``cores`` that other processes' runnable threads leave free (>= 1)."""
    global last
    now = time.monotonic()
    if last is None or now - last[0] >= PERIOD:
        try:
            seen = other_running()
        except (OSError, ValueError, IndexError):
            seen = 0
        before = 0 if last is None else last[2]
        last = (now, min(seen, before), seen)
    return max(1, cores - last[1])
