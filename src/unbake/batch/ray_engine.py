"""The Ray engine: Ray actors hold a loaded model and separate the files the driver hands them;
the driver keeps the manifest. Inputs and outputs travel by path, so every node must see SOURCE
and OUT at the same paths (shared storage; local disk on a single node).

Ray's own fault tolerance covers dying workers: an actor whose process or node dies is restarted
(``max_restarts``) and its in-flight call retried once (``max_task_retries``), on whichever node
Ray picks. A call that still fails raises ``RayActorError`` here; it counts as a failed attempt,
which the driver retries like any other.
"""

from __future__ import annotations

import os

from ..errors import DependencyError, UnbakeError
from .job import Job, ModelSpec, Outcome, cpu_split, one_line, separate_one, set_threads


class SeparationActor:
    """One model, loaded once per actor (and again when Ray restarts the actor)."""

    def __init__(self, spec: ModelSpec, options: dict, threads: int | None) -> None:
        set_threads(threads)
        self.options = options
        self.error: Exception | None = None
        try:
            self.model = spec.load()
        except Exception as exc:  # reported with the first job: the driver stops the run with it
            self.error = exc

    def separate(self, job: Job) -> Outcome:
        if self.error is not None:
            return Outcome(job.row_id, False, error=one_line(self.error), fatal=True)
        return separate_one(self.model, job, self.options)


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise DependencyError('the Ray engine needs Ray: pip install "unbake[ray]"') from exc
    return ray


class RayEngine:
    """``workers`` actors (default: one per GPU with ``--device cuda``, else as
    :func:`~unbake.batch.job.cpu_split` shares out the cluster's CPUs). Connects to ``address``
    (``"auto"``, ``"ray://host:10001"``...) or, with none and no Ray already running in this
    process, starts a local cluster."""

    name = "ray"

    def __init__(self, spec: ModelSpec, options: dict, *, workers: int | None, threads: int | None,
                 address: str | None = None) -> None:
        self.spec, self.options = spec, options
        self.workers, self.threads, self.address = workers, threads, address
        self._started_ray = False
        self._idle: list = []
        self._calls: dict = {}  # object ref -> (actor, job)
        self._actor_cls = None
        self._actor_options: dict = {}

    @property
    def slots(self) -> int:
        return self.workers or 1

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def start(self) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False} if self.address is None else {}
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as exc:  # a wrong address, a cluster that is down
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
                raise UnbakeError(f"cannot start or join {where}: {_first_line(exc)}") from exc
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if self.options.get("device", "cpu").startswith("cuda") and gpus:
            self._actor_options = {"num_gpus": 1, "num_cpus": 1}
            self.workers = self.workers or gpus
            self.options = {**self.options, "device": "cuda"}  # Ray shows each actor its own GPU
        else:
            cpus = max(1, int(resources.get("CPU", os.cpu_count() or 1)))
            self.workers, self.threads = cpu_split(cpus, self.workers, self.threads)
            self._actor_options = {"num_cpus": min(self.threads, cpus)}
        self._actor_cls = ray.remote(max_restarts=-1, max_task_retries=1)(SeparationActor)
        self._idle = [self._new_actor() for _ in range(self.workers)]

    def _new_actor(self):
        return self._actor_cls.options(**self._actor_options).remote(self.spec, self.options, self.threads)

    def submit(self, job: Job) -> None:
        actor = self._idle.pop()
        self._calls[actor.separate.remote(job)] = (actor, job)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._calls:
            return []
        ray = import_ray()
        from ray.exceptions import RayActorError, RayError

        ready, _ = ray.wait(list(self._calls), num_returns=1, timeout=timeout)
        outcomes = []
        for ref in ready:
            actor, job = self._calls.pop(ref)
            try:
                outcomes.append(ray.get(ref))
                self._idle.append(actor)
            except RayActorError as exc:
                # the actor died again while Ray retried the call: a fresh one takes its place
                ray.kill(actor)
                self._idle.append(self._new_actor())
                outcomes.append(Outcome(job.row_id, False, error=f"Ray worker died: {_first_line(exc)}"))
            except RayError as exc:
                self._idle.append(actor)
                outcomes.append(Outcome(job.row_id, False, error=f"Ray: {_first_line(exc)}"))
        return outcomes

    def stop(self, *, kill: bool = False) -> None:
        ray = import_ray()
        for actor, _ in self._calls.values():
            ray.kill(actor)
        for actor in self._idle:
            ray.kill(actor)
        self._calls.clear()
        self._idle = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
