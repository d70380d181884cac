"""The flock-held lock file shared by the hub and the server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from animalid.pidlock import FileLock, LockHeld

HOLD = "import sys, time; from animalid.pidlock import FileLock; FileLock(sys.argv[1]).acquire({shared}); " \
       "print('held', flush=True); time.sleep(30)"


def holder(path, shared=False) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(shared=shared), str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    path = tmp_path / "sub" / "x.lock"
    proc = holder(path)
    try:
        with pytest.raises(LockHeld) as refused:
            FileLock(path).acquire()
        assert refused.value.pid == str(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    lock = FileLock(path)  # the kernel dropped the killed holder's lock
    lock.acquire()
    assert lock.held and path.read_text().strip() == str(os.getpid())
    lock.release()
    assert not lock.held


def test_shared_holders_coexist_but_exclude_an_exclusive_one(tmp_path):
    path = tmp_path / "y.lock"
    proc = holder(path, shared=True)
    try:
        mine = FileLock(path)
        mine.acquire(shared=True)
        with pytest.raises(LockHeld):
            FileLock(path).acquire()
        mine.release()
    finally:
        proc.kill()
        proc.wait()
