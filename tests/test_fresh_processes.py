"""The toy corpus's process-per-job map: order, fresh state per job, errors and deaths raised."""

import os
import time

import pytest

from fairseq_exporter.toy.fresh_processes import JobFailed, map_in_fresh_processes

CALLS = []  # a job's process starts with this parent's state: empty


def _job(n):
    CALLS.append(n)
    time.sleep(0.05 * (n % 3))  # finish out of order
    return n * n, len(CALLS), os.getpid()


def _fails(n):
    if n == 2:
        raise ValueError("espeak said no")
    return n


def _dies(n):
    if n == 1:
        os._exit(3)
    return n


def test_results_in_job_order_each_job_in_a_fresh_process():
    out = list(map_in_fresh_processes(_job, range(7), workers=3))
    assert [square for square, _, _ in out] == [n * n for n in range(7)]
    assert all(calls == 1 for _, calls, _ in out)  # no state carried from job to job
    assert len({pid for _, _, pid in out} | {os.getpid()}) == 8
    assert CALLS == []


@pytest.mark.parametrize("fn, message", [(_fails, r"(?s)block 2 failed:\n.*ValueError: espeak said no"),
                                         (_dies, r"block 1: its process died \(exit code 3\)")])
def test_an_error_or_a_dead_process_is_raised_naming_the_job(fn, message):
    with pytest.raises(JobFailed, match=message):
        list(map_in_fresh_processes(fn, range(5), workers=2, name=lambda i: f"block {i}"))
