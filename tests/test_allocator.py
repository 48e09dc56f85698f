"""server.tune_allocator: a large read shrunk to what arrived reuses heap pages.

uvloop reads every TLS record into a fresh 256 KiB bytes object and shrinks it to the
bytes that came; ``os.read`` of a pipe does the same. Without the tuning glibc maps
fresh pages for each such read (page faults every time); with it they come from the
heap. Counted in page faults, so nothing here depends on the machine's speed.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, os, resource, sys, threading
from swdepot.server import tune_allocator
# glibc's starting threshold (128 KiB), where the service begins (a process's imports
# may have raised it already: it grows when a large block is freed whole)
ctypes.CDLL(None).mallopt(-3, 128 * 1024)
if sys.argv[1] == "tuned":
    tune_allocator()
r, w = os.pipe()
def reads(n):
    for _ in range(n):
        os.write(w, b"x" * 100)
        os.read(r, 256 * 1024)
result = []
def measure():
    reads(100)  # warm: the heap grows once
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    reads(2000)
    result.append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 2000)
# on a new thread: its own malloc arena, holding no free blocks left by the imports
# (which could serve these reads whatever the threshold)
thread = threading.Thread(target=measure)
thread.start()
thread.join()
print(result[0])
"""


def faults_per_read(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, timeout=60, check=True)
    return float(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_shrunk_reads_stop_faulting_in_fresh_pages() -> None:
    # the problem is real here (if glibc ever stops mapping these, the tuning can go)
    assert faults_per_read("plain") >= 0.9
    assert faults_per_read("tuned") <= 0.05
