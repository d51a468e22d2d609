"""The batch driver: plans the work from the manifest, hands files to an engine, places finished
outputs under their final names and records every step.

Order of a file's life: ``pending`` -> ``running`` (submitted) -> outputs written by a worker to
``OUT/.unbake/staging/<id>-<attempt>/`` -> renamed into place by the driver -> ``done``. Killed at
any point, the next run finds either a ``done`` row whose files are all in place, or a row that is
not done and is separated again; staging is emptied when a run starts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .._common import sha256_file
from ..errors import ModelError, OutputExistsError, UnbakeError
from .job import (MODEL_OPTIONS, Job, ModelSpec, Outcome, cpu_split, normalized_options, one_line, output_paths,
                  settings_key)
from .manifest import Manifest, Row, staging_root
from .plan import Input, discover, output_key
from .report import BatchReport, row_dict

ENGINES = ("local", "ray")


@dataclass
class BatchProgress:
    """A snapshot for progress displays: files of this run, seconds of audio separated."""

    files_done: int
    files_total: int
    failed: int
    audio_s: float
    elapsed_s: float

    @property
    def x_realtime(self) -> float | None:
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 and self.audio_s else None

    @property
    def eta_s(self) -> float | None:
        finished = self.files_done + self.failed
        if not finished or finished >= self.files_total:
            return None
        return (self.files_total - finished) * self.elapsed_s / finished


def gpu_devices(device: str) -> list[str]:
    """One device per GPU (one worker each) with ``--device cuda``/``auto`` on a machine with
    GPUs; empty otherwise."""
    if device in ("cuda", "auto"):
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def run(sources: Sequence[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike, model: Any = None, *,
        engine: str = "local", workers: int | None = None, threads: int | None = None, retries: int = 1,
        ray_address: str | None = None, progress: Callable[[BatchProgress], None] | None = None,
        **separate_options) -> BatchReport:
    """Separate every audio file under ``sources`` into ``out``, resumably.

    Args:
        sources: files and folders (walked recursively).
        out: output folder; outputs mirror the source tree (``OUT/<folder>/<track>/<stem>.<ext>``
            with the default ``filename``), the manifest is ``OUT/.unbake/batch.sqlite``.
        model: as for :func:`unbake.separate` (default: the best model available offline).
        engine: ``"local"`` (worker processes) or ``"ray"`` (Ray actors; ``ray_address``).
        workers: processes or actors (default: one per core up to eight, or one per GPU).
        threads: torch threads per worker (default: the machine's cores shared out).
        retries: further attempts for a file that failed before it is recorded as failed.
        progress: called with a :class:`BatchProgress` as files finish.
        **separate_options: options of :func:`unbake.separate.separate_file` (``two_stems``,
            ``format``, ``bit_depth``, ``filename``, ``segment_s``, ``shifts``, ``device``...).

    Returns:
        a :class:`BatchReport`; ``report.ok`` is False when any input failed. Bad options raise
        :class:`~unbake.errors.UnbakeError` before any work; Ctrl-C (``KeyboardInterrupt``)
        returns files in flight to ``pending`` and is raised again.
    """
    if engine not in ENGINES:
        raise UnbakeError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if retries < 0:
        raise UnbakeError("--retries must be >= 0")
    if workers is not None and workers < 1:
        raise UnbakeError("--workers must be >= 1")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    loading = {k: separate_options.pop(k) for k in MODEL_OPTIONS if k in separate_options}
    options = normalized_options(separate_options)
    spec = _model_spec(model, loading)
    return _Driver(spec, options, Path(os.path.abspath(os.path.expanduser(out))), retries, progress).run(
        sources, engine=engine, workers=workers, threads=threads, ray_address=ray_address)


def _model_spec(model, loading: dict) -> ModelSpec:
    from ..errors import UnknownModelError
    from ..hub.catalogue import load_catalogue
    from ..separate import default_model

    if model is None:
        model = default_model()
    members = list(model) if isinstance(model, (list, tuple)) else [model]
    cat = load_catalogue()
    for m in members:  # a typo fails here, not once per file in every worker
        if isinstance(m, (str, os.PathLike)) and os.fspath(m) not in cat and not Path(m).exists():
            raise UnknownModelError(f"unknown model {os.fspath(m)!r}: not in the catalogue (see `unbake models`) "
                                    "and not a file")
    weights = loading.get("weights")
    return ModelSpec(tuple(model) if isinstance(model, list) else model,
                     weights=tuple(weights) if weights else None,
                     ensemble_method=loading.get("ensemble_method", "average"),
                     model_file=os.fspath(loading["model_file"]) if loading.get("model_file") else None,
                     config=os.fspath(loading["config"]) if loading.get("config") else None)


class _Driver:
    def __init__(self, spec: ModelSpec, options: dict, out: Path, retries: int, progress) -> None:
        self.spec, self.options, self.out = spec, options, out
        self.retries, self.progress = retries, progress
        self.actions: dict[int, str] = {}
        self.followers: dict[int, list[int]] = {}
        self.rows_of_run: list[int] = []
        # running totals of this run's execution, for progress displays
        self.n_done = self.n_failed = 0
        self.audio_done = 0.0

    # ------------------------------------------------------------------------- planning

    def run(self, sources, *, engine: str, workers: int | None, threads: int | None,
            ray_address: str | None) -> BatchReport:
        start = time.perf_counter()
        inputs = discover(sources, self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        with Manifest(self.out, write=True) as m:
            self.m = m
            self.ours = m.all_outputs()
            staging_root(self.out).mkdir(parents=True, exist_ok=True)
            leaders = self._plan(inputs)
            self.n_done = self.n_failed = 0  # progress counts what the engine does
            # nothing to separate (a rerun): no workers started, no cluster joined
            eng = self._engine(engine, workers, threads, ray_address) if leaders else None
            slots = eng.slots if eng else 0
            run_id = m.start_run(engine, slots, len(leaders))
            try:
                if eng is not None:
                    self._execute(eng, leaders, start)
            except BaseException:
                # Ctrl-C or a fatal error: what was in flight is simply not done
                if eng is not None:
                    eng.stop(kill=True)
                m.running_to_pending()
                raise
            else:
                if eng is not None:
                    eng.stop()
            finally:
                m.finish_run(run_id)
                shutil.rmtree(staging_root(self.out), ignore_errors=True)
            rows = [row_dict(m.by_id(i), self.actions.get(i, "pending")) for i in self.rows_of_run]
        return BatchReport(self.out, rows, time.perf_counter() - start, engine, slots)

    def _plan(self, inputs: list[Input]) -> list[int]:
        """Rows to separate (one per distinct content); the rest skipped, copied or failed."""
        m = self.m
        identity = self.spec.identity()
        key = settings_key(identity, self.options)
        model_name = self.spec.display_name()
        options_json = json.dumps({k: v for k, v in self.options.items()}, sort_keys=True, default=str)
        claimed: dict[str, str] = {}
        by_content: dict[str, int] = {}
        leaders: list[int] = []
        for inp in inputs:
            path = str(inp.path)
            old = m.get(path)
            try:
                st = inp.path.stat()
                sha = (old.sha256 if old and old.sha256 and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns
                       else sha256_file(inp.path))  # unchanged size and time: the content hash is still good
                error = None
            except OSError as exc:
                st, sha, error = None, None, f"{path}: cannot read ({exc.strerror or exc})"
            okey = output_key(inp, self.options["filename"], self.options["format"])
            if error is None and okey in claimed:
                error = f"{path}: its outputs would replace those of {claimed[okey]} (same folder and name)"
            claimed.setdefault(okey, path)
            if (error is None and old and old.state == "done" and old.sha256 == sha and old.settings_key == key
                    and self._outputs_present(old)):
                self.rows_of_run.append(old.id)
                self.actions[old.id] = "skipped"
                continue
            row_id = m.upsert(path, rel_dir=inp.rel_dir, size=st.st_size if st else None,
                              mtime_ns=st.st_mtime_ns if st else None, sha256=sha, model=model_name,
                              options=options_json, settings_key=key,
                              state="failed" if error else "pending", error=error)
            self.rows_of_run.append(row_id)
            if error:
                self.actions[row_id] = "failed"
                continue
            if sha in by_content:  # byte-identical to an input of this run: separated once
                self.followers.setdefault(by_content[sha], []).append(row_id)
                continue
            done = next((r for r in m.done_with(sha, key) if r.id != row_id and self._outputs_present(r)), None)
            if done is not None:  # byte-identical to an input finished earlier
                try:
                    self._copy_outputs(done, m.by_id(row_id))
                except (UnbakeError, OSError) as exc:
                    self._fail(row_id, one_line(exc))
                continue
            by_content[sha] = row_id
            leaders.append(row_id)
        return leaders

    def _outputs_present(self, row: Row) -> bool:
        outs = row.output_map()
        return bool(outs) and all((self.out / p).is_file() for p in outs)

    def _engine(self, engine: str, workers: int | None, threads: int | None, ray_address: str | None):
        if engine == "ray":
            from .ray_engine import RayEngine

            eng = RayEngine(self.spec, self.options, workers=workers, threads=threads, address=ray_address)
            eng.start()
            return eng
        from .local import LocalEngine

        devices = gpu_devices(self.options.get("device", "cpu"))
        if devices:
            workers = workers or len(devices)
        else:
            workers, threads = cpu_split(_cpu_count(), workers, threads)
        return LocalEngine(self.spec, self.options, workers=workers, threads=threads, devices=devices or None)

    # ------------------------------------------------------------------------- running

    def _execute(self, eng, leaders: list[int], start: float) -> None:
        queue = deque(leaders)
        total = len(leaders) + sum(len(self.followers.get(i, ())) for i in leaders)
        self._report_progress(total, start)
        while queue or eng.in_flight:
            while queue and eng.in_flight < eng.slots:
                row_id = queue.popleft()
                self.m.set_state(row_id, "running", attempt=True)
                row = self.m.by_id(row_id)
                eng.submit(Job(row_id, row.input, str(staging_root(self.out) / f"{row_id}-{row.attempts}"),
                               row.attempts))
            for outcome in eng.wait(timeout=0.5):
                if outcome.fatal:
                    raise ModelError(f"the model cannot be loaded: {outcome.error}")
                if outcome.ok:
                    self._finish(outcome)
                elif self.m.by_id(outcome.row_id).attempts <= self.retries:
                    self.m.set_state(outcome.row_id, "pending", error=outcome.error)
                    queue.append(outcome.row_id)
                else:
                    self._fail(outcome.row_id, outcome.error or "failed")
            self._report_progress(total, start)

    def _report_progress(self, total: int, start: float) -> None:
        if self.progress is not None:
            self.progress(BatchProgress(self.n_done, total, self.n_failed, self.audio_done,
                                        time.perf_counter() - start))

    def _finish(self, outcome: Outcome) -> None:
        row = self.m.by_id(outcome.row_id)
        staged = staging_root(self.out) / f"{row.id}-{row.attempts}"
        try:
            staged_paths = {info["stem"]: staged / rel for rel, info in outcome.outputs.items()}
            info = {info["stem"]: info for info in outcome.outputs.values()}
            placed = self._place(row, staged_paths, info, outcome.model_label, move=True)
        except (UnbakeError, OSError) as exc:
            self._fail(row.id, one_line(exc))
            return
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self.m.mark_done(row.id, outputs=placed, model_label=outcome.model_label, how="separated",
                         audio_s=outcome.audio_s, elapsed_s=outcome.elapsed_s, worker=outcome.worker)
        self.actions[row.id] = "separated"
        self.n_done += 1
        self.audio_done += outcome.audio_s or 0.0
        done = self.m.by_id(row.id)
        for follower in self.followers.get(row.id, ()):
            try:
                self._copy_outputs(done, self.m.by_id(follower))
            except (UnbakeError, OSError) as exc:
                self._fail(follower, one_line(exc))

    def _fail(self, row_id: int, error: str) -> None:
        self.m.set_state(row_id, "failed", error=error)
        self.actions[row_id] = "failed"
        self.n_failed += 1
        leader = self.m.by_id(row_id).input
        for follower in self.followers.get(row_id, ()):
            self.m.set_state(follower, "failed", error=f"same content as {leader}: {error}")
            self.actions[follower] = "failed"
            self.n_failed += 1

    # ------------------------------------------------------------------------- placing outputs

    def _place(self, row: Row, sources: dict[str, Path], info: dict[str, dict], model_label: str, *,
               move: bool) -> dict[str, dict]:
        """Put each stem's file (``sources``) under its final name for ``row``: renamed when
        ``move``, else hard-linked or copied; returns the manifest's record of the outputs."""
        targets = output_paths(row.rel_dir, row.input, sorted(sources), self.options, model_label)
        for rel in targets.values():
            dst = self.out / rel
            # a file this batch did not write is the user's: kept unless --overwrite
            if dst.exists() and rel not in self.ours and not self.options.get("overwrite"):
                raise OutputExistsError(f"{dst} exists and was not written by this batch (use --overwrite)")
        placed = {rel: {"stem": stem, "sha256": info[stem]["sha256"]} for stem, rel in targets.items()}
        # claimed before the first rename: killed halfway, the next run knows these files are its own
        self.m.record_outputs(row.id, {**row.output_info(), **placed})
        self.ours.update(placed)
        for stem, rel in targets.items():
            dst = self.out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if move:
                os.replace(sources[stem], dst)
            else:
                # made in staging (emptied when a run starts), so a kill leaves nothing beside dst
                tmp = staging_root(self.out) / f"copy-{row.id}-{stem}"
                tmp.unlink(missing_ok=True)
                try:
                    os.link(sources[stem], tmp)  # same bytes: a hard link costs no space
                except OSError:
                    shutil.copyfile(sources[stem], tmp)
                os.replace(tmp, dst)
        self._remove_stale(row, set(placed))
        return placed

    def _copy_outputs(self, source: Row, row: Row) -> None:
        """Give ``row`` (same content and settings as ``source``) its own copy of the outputs."""
        outs = source.output_info()
        sources = {v["stem"]: self.out / p for p, v in outs.items()}
        info = {v["stem"]: v for v in outs.values()}
        placed = self._place(row, sources, info, source.model_label or "", move=False)
        self.m.mark_done(row.id, outputs=placed, model_label=source.model_label or "", how="copy",
                         audio_s=source.audio_s, elapsed_s=None)
        self.actions[row.id] = "copied"
        self.n_done += 1

    def _remove_stale(self, row: Row, placed: set[str]) -> None:
        """Outputs an earlier run wrote for this input that the new settings no longer make."""
        for rel, sha in row.output_map().items():
            if rel in placed:
                continue
            path = self.out / rel
            try:
                if path.is_file() and sha256_file(path) == sha:  # unchanged since we wrote it
                    path.unlink()
                    _remove_empty_parents(path.parent, self.out)
            except OSError:
                pass
            self.ours.discard(rel)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
