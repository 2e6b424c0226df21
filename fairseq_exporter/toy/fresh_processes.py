"""Run each job in a process forked for it alone, a few at a time, results in order.

libespeak-ng carries state from one utterance to the next, so the toy corpus speaks each
block of utterances in a fresh process forked from one that speaks nothing: the audio then
depends on neither the number of workers nor the order in which they run. Not
``multiprocessing.Pool(maxtasksperchild=1)``: after a worker's error its ``terminate()``
can hang on the task queue (seen in MuST-C preparation), and a worker that dies (a
segfault in a C library) leaves ``imap`` waiting forever. Here a job's error or death is
raised in the parent, naming the job, and the other children are killed.
"""

import multiprocessing
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class JobFailed(RuntimeError):
    """A job raised or its process died; the message names the job and carries its traceback."""


def _child(fn, job, send):
    try:
        result = (True, fn(job))
    except BaseException:  # noqa: B902 - reported to the parent, which raises it
        result = (False, traceback.format_exc())
    send.send(result)
    send.close()


def map_in_fresh_processes(fn: Callable[[T], R], jobs: Iterable[T], workers: int,
                           name: Callable[[int], str] = lambda i: f"job {i}") -> Iterator[R]:
    """``fn(job)`` for each job, each in its own forked process, at most ``workers`` at
    once; yields the results in the order of ``jobs``."""
    context = multiprocessing.get_context("fork")
    pending = deque(enumerate(jobs))
    running = {}  # index -> (process, receiving end)
    done = {}
    next_index = 0
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                index, job = pending.popleft()
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(fn, job, send), daemon=True)
                process.start()
                send.close()  # the child holds the only sending end: EOF if it dies
                running[index] = (process, receive)
            ready = wait([receive for _, receive in running.values()])
            for index, (process, receive) in list(running.items()):
                if receive not in ready:
                    continue
                try:
                    ok, value = receive.recv()
                except EOFError:
                    process.join()
                    raise JobFailed(f"{name(index)}: its process died (exit code {process.exitcode})") from None
                process.join()
                receive.close()
                del running[index]
                if not ok:
                    raise JobFailed(f"{name(index)} failed:\n{value}")
                done[index] = value
            while next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        for process, receive in running.values():
            process.kill()
            process.join()
            receive.close()
