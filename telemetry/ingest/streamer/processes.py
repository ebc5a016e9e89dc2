"""Forked worker processes for the commands that parse CSV on several cores (backfill, stream).

Parsing is a core's worth of Python per process, so these commands fork workers that each handle
a share of the lines. Workers ignore SIGINT and SIGTERM: the parent decides when to stop (its first
signal sets a shared Event, and a worker told to stop hands on everything it holds before it
reports; a second signal kills them). Each worker sends its log records (rejected rows among them)
down a pipe to the parent, which writes them through its own logging, then its job's result or
what went wrong; a worker that ends without a word has died. Counters the parent shows while the
workers run (progress) live in shared memory, a slot per worker.
"""
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.synchronize
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from django.db import connections

# How often the parent looks at its workers' counters and at the signals when no worker has news.
_POLL_S = 0.5


class WorkersFailed(RuntimeError):
    """A worker raised or died; the message names it (or is the error's own, for `plain_errors`)."""


class WorkersAborted(RuntimeError):
    """A second signal: the workers were killed without handing on what they held."""


class SharedCounters:
    """Named counters per worker, in memory shared with the parent, which reads their sums.

    A slot per worker, written by that worker only: no lock needed.
    """

    def __init__(self, context: multiprocessing.context.BaseContext, workers: int, names: Sequence[str]) -> None:
        self._slots = {name: context.RawArray("q", workers) for name in names}

    def set(self, worker: int, **values: int) -> None:
        for name, value in values.items():
            self._slots[name][worker] = value

    def sums(self) -> dict[str, int]:
        return {name: sum(slots) for name, slots in self._slots.items()}


@dataclass(frozen=True)
class WorkerSlot:
    """What a job gets in its worker process: its place among the workers, the stop Event, its counters."""

    index: int
    name: str  # "<kind> worker 2 of 3": how messages name it
    stop: multiprocessing.synchronize.Event
    counters: SharedCounters

    def report(self, **values: int) -> None:
        """Set this worker's counters (as totals so far, not increments)."""
        self.counters.set(self.index, **values)


Job = Callable[[WorkerSlot], Any]


class WorkerPool:
    """One forked process per job; `wait` returns their results in job order.

    Use it as a context manager: leaving it kills the workers that have not reported (after a
    second signal or an error in the parent) and reaps them all.
    """

    def __init__(self, kind: str, jobs: Sequence[Job], *, counters: Sequence[str],
                 plain_errors: tuple[type[Exception], ...] = (), death_note: str = "") -> None:
        """`plain_errors`: errors whose message says all (a bad header is every worker's failure and is
        reported once); `death_note`: what a worker's death means for what it read."""
        context = multiprocessing.get_context("fork")
        self.counters = SharedCounters(context, len(jobs), counters)
        self._kind = kind
        self._death_note = death_note
        self._stop = context.Event()
        self._processes: list[multiprocessing.Process] = []
        self._pipes: dict[Connection, int] = {}
        connections.close_all()  # each child opens its own; a shared socket would mix their queries
        for index, job in enumerate(jobs):
            reader, writer = context.Pipe(duplex=False)
            slot = WorkerSlot(index, f"{kind} worker {index + 1} of {len(jobs)}", self._stop, self.counters)
            process = context.Process(target=_run_worker, args=(job, slot, writer, plain_errors), name=slot.name,
                                      daemon=True)
            process.start()
            writer.close()  # the child's copy is the only one left: its end is this reader's EOF
            self._processes.append(process)
            self._pipes[reader] = index

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.end()

    def wait(self, *, stop: threading.Event, abort: threading.Event, on_poll: Callable[[], None]) -> list[Any]:
        """The jobs' results once all workers have reported, calling `on_poll` about every half second
        meanwhile. `stop` (the first signal) or a worker's failure tells them all to stop; `abort`
        (the second) raises WorkersAborted at once."""
        results: list[Any] = [None] * len(self._processes)
        failures: list[str] = []
        while self._pipes:
            if abort.is_set():
                raise WorkersAborted(f"{self._kind} stopped by a second signal; its workers were killed without "
                                     "handing on what they held")
            if stop.is_set() or failures:
                self._stop.set()
            for pipe in multiprocessing.connection.wait(list(self._pipes), timeout=_POLL_S):
                index = self._pipes[pipe]
                outcome = self._receive(pipe)
                if outcome is None:
                    continue
                kind, payload = outcome
                if kind == "done":
                    results[index] = payload
                else:
                    failures.append(payload)
            on_poll()
        if failures:
            raise WorkersFailed("; ".join(dict.fromkeys(failures)))  # a bad header is every worker's failure
        return results

    def _receive(self, pipe: Connection) -> tuple[str, Any] | None:
        """("done", result) or ("failed", message) once a worker has reported; None for a log record
        (written here)."""
        index = self._pipes[pipe]
        try:
            kind, payload = pipe.recv()
        except EOFError:
            kind, payload = "failed", self._death(index)
        if kind == "log":
            logging.getLogger(payload.name).handle(payload)
            return None
        del self._pipes[pipe]
        pipe.close()
        return kind, payload

    def _death(self, index: int) -> str:
        process = self._processes[index]
        process.join()
        code = process.exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return f"{process.name} {how} before reporting" + (f"; {self._death_note}" if self._death_note else "")

    def end(self) -> None:
        """Kill the workers that have not reported, reap them all."""
        for pipe, index in self._pipes.items():
            self._processes[index].kill()
            pipe.close()
        self._pipes.clear()
        for process in self._processes:
            process.join()


def _run_worker(job: Job, slot: WorkerSlot, pipe: Connection, plain_errors: tuple[type[Exception], ...]) -> None:
    """A worker process's life: its job's result, or what went wrong, down its pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _log_to_parent(pipe)
    try:
        pipe.send(("done", job(slot)))
    except plain_errors as exc:
        pipe.send(("failed", str(exc)))
    except Exception as exc:  # the parent fails the command with it
        pipe.send(("failed", f"{slot.name} failed: {type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()
        pipe.close()


class _PipeLogHandler(logging.handlers.QueueHandler):
    """A worker's log records, made picklable, sent down its pipe to the parent."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.send(("log", record))


def _log_to_parent(pipe: Connection) -> None:
    """Route this worker's logging to the parent: one writer for the console, and the handlers that
    tests and log shippers attach to the parent's root logger see the workers' records too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLogHandler(pipe))
