"""The local engine: worker processes on this machine, each loading the model once (in the pool's
initializer) and taking files as the driver hands them out.

A worker that dies (killed, out of memory) breaks the pool; its in-flight jobs come back as
failed attempts, which the driver retries, and the next submission starts a fresh pool.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from .job import Job, ModelSpec, Outcome, one_line, separate_one, set_threads

# the worker process's loaded model and options (one per process, set by _init_worker)
_WORKER: dict = {}


def _watch_parent(parent: int) -> None:
    # a driver killed with SIGKILL cannot stop its workers: they stop themselves
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _init_worker(spec: ModelSpec, options: dict, threads: int | None, devices, counter) -> None:
    # Ctrl-C reaches every process of the terminal's group; only the driver acts on it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    options = dict(options)
    if devices:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        options["device"] = devices[index % len(devices)]
    set_threads(threads)
    _WORKER["options"] = options
    try:
        _WORKER["model"] = spec.load()
    except Exception as exc:  # reported with the first job: the driver stops the run with it
        _WORKER["error"] = exc


def _work(job: Job) -> Outcome:
    if "error" in _WORKER:
        return Outcome(job.row_id, False, error=one_line(_WORKER["error"]), fatal=True)
    return separate_one(_WORKER["model"], job, _WORKER["options"])


class LocalEngine:
    """``workers`` processes with ``threads`` torch threads each; ``devices`` (one per worker,
    e.g. ``["cuda:0", "cuda:1"]``) overrides the ``device`` option per process."""

    name = "local"

    def __init__(self, spec: ModelSpec, options: dict, *, workers: int, threads: int | None,
                 devices: list[str] | None = None) -> None:
        self.spec, self.options = spec, options
        self.workers, self.threads, self.devices = workers, threads, devices
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future, Job] = {}

    @property
    def slots(self) -> int:
        return self.workers

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a forked copy of a driver that already ran torch can deadlock in its thread pools
            ctx = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_init_worker,
                initargs=(self.spec, self.options, self.threads, self.devices, ctx.Value("i", 0)))
        return self._pool

    def submit(self, job: Job) -> None:
        self._futures[self._ensure_pool().submit(_work, job)] = job

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes of the jobs that finished (at least one unless ``timeout`` passes)."""
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        outcomes = []
        broken = False
        for fut in done:
            job = self._futures.pop(fut)
            try:
                outcomes.append(fut.result())
            except BrokenProcessPool:
                broken = True
                outcomes.append(Outcome(job.row_id, False, error="worker process died (killed, or out of memory)"))
            except Exception as exc:  # a job or result that cannot be pickled
                outcomes.append(Outcome(job.row_id, False, error=one_line(exc)))
        if broken:
            # every job of a broken pool is lost; collect them now and start afresh on the next submit
            for fut, job in list(self._futures.items()):
                outcomes.append(Outcome(job.row_id, False, error="worker process died (killed, or out of memory)"))
            self._futures.clear()
            self._shutdown(kill=True)
        return outcomes

    def _shutdown(self, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # no public way before Python 3.14 to stop workers in the middle of a file
            for proc in list(getattr(pool, "_processes", {}).values()):
                if proc.is_alive():
                    proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def stop(self, *, kill: bool = False) -> None:
        self._futures.clear()
        self._shutdown(kill)
