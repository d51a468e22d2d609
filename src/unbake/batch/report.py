"""What a batch did (:class:`BatchReport`, one row per input, CSV or JSON) and where a batch
folder stands (:func:`status`: counts, throughput, ETA, failures), read from the manifest."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._common import write_text_atomic
from ..errors import OutputError
from .manifest import Manifest, Row

# what happened to an input in a run
ACTIONS = ("separated", "copied", "skipped", "failed", "pending")
COLUMNS = ("input", "state", "action", "attempts", "error", "sha256", "model", "audio_s", "elapsed_s",
           "x_realtime", "outputs")


def row_dict(row: Row, action: str | None = None) -> dict:
    return {
        "input": row.input, "state": row.state, "action": action, "attempts": row.attempts,
        "error": row.error, "sha256": row.sha256, "model": row.model, "audio_s": row.audio_s,
        "elapsed_s": row.elapsed_s, "x_realtime": row.x_realtime, "outputs": sorted(row.output_map()),
    }


@dataclass
class BatchReport:
    """One row per input of a run (see :data:`COLUMNS`); ``wall_s`` the run's wall time."""

    out: Path
    rows: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    engine: str = "local"
    workers: int = 1

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r["action"] == action)

    @property
    def separated(self) -> int:
        return self.count("separated")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def ok(self) -> bool:
        """Every input done."""
        return all(r["state"] == "done" for r in self.rows)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(r["input"], r["error"] or "") for r in self.rows if r["state"] == "failed"]

    @property
    def audio_s(self) -> float:
        """Seconds of audio separated in this run."""
        return sum(r["audio_s"] or 0.0 for r in self.rows if r["action"] == "separated")

    @property
    def x_realtime(self) -> float | None:
        return self.audio_s / self.wall_s if self.wall_s > 0 and self.audio_s else None

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(a)} {a}" for a in ACTIONS if self.count(a) or a in ("separated", "failed"))
        speed = f", {self.x_realtime:.1f}x real time" if self.x_realtime else ""
        return (f"{len(self.rows)} inputs: {counts}; {self.audio_s / 3600:.2f} h of audio in "
                f"{self.wall_s:.1f} s{speed} ({self.engine}, {self.workers} workers)")

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({**r, "outputs": ";".join(r["outputs"])})
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({"out": str(self.out), "engine": self.engine, "workers": self.workers,
                           "wall_s": self.wall_s, "rows": self.rows}, indent=2)

    def write(self, path: str | os.PathLike) -> Path:
        """``.csv`` or ``.json`` by the file's suffix, written atomically."""
        path = Path(path)
        kind = path.suffix.lower()
        if kind not in (".csv", ".json"):
            raise OutputError(f"--report {path}: the name must end in .csv or .json")
        try:
            write_text_atomic(path, self.to_csv() if kind == ".csv" else self.to_json())
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        return path


def report_from_manifest(out: str | os.PathLike) -> BatchReport:
    """Every input the manifest of ``out`` knows, as a report (the action is the state)."""
    with Manifest(out) as m:
        rows = [row_dict(r, r.state if r.state != "done" else (r.how or "separated")) for r in m.rows()]
    return BatchReport(Path(out), rows)


@dataclass
class BatchStatus:
    out: Path
    counts: dict[str, int]
    active: bool
    started: float | None
    elapsed_s: float
    done_in_run: int
    audio_s_in_run: float
    failures: list[tuple[str, str]]

    @property
    def x_realtime(self) -> float | None:
        return self.audio_s_in_run / self.elapsed_s if self.elapsed_s > 0 and self.audio_s_in_run else None

    @property
    def eta_s(self) -> float | None:
        left = self.counts.get("pending", 0) + self.counts.get("running", 0)
        if not self.active or not self.done_in_run:
            return None
        return left * self.elapsed_s / self.done_in_run

    def text(self) -> str:
        c = self.counts
        total = sum(c.values())
        lines = [f"{self.out}: {total} inputs: " + ", ".join(f"{c.get(s, 0)} {s}" for s in ("done", "running", "pending", "failed"))]
        when = "running now" if self.active else "last run"
        if self.started is not None:
            speed = f", {self.x_realtime:.1f}x real time" if self.x_realtime else ""
            lines.append(f"{when}: {self.done_in_run} files, {self.audio_s_in_run / 3600:.2f} h of audio "
                         f"in {hms(self.elapsed_s)}{speed}")
        if self.eta_s is not None:
            lines.append(f"ETA: {hms(self.eta_s)}")
        if self.failures:
            lines.append(f"failed ({len(self.failures)}):")
            lines += [f"  {err}" if err.startswith(inp) else f"  {inp}: {err}" for inp, err in self.failures]
        return "\n".join(lines)


def status(out: str | os.PathLike) -> BatchStatus:
    """Where the batch in ``out`` stands; readable while a run is going on."""
    with Manifest(out) as m:
        rows = m.rows()
        run = m.last_run()
        active = m.run_active()
    counts = {s: 0 for s in ("done", "running", "pending", "failed")}
    for r in rows:
        counts[r.state] += 1
    started = run["started"] if run else None
    elapsed = 0.0
    done_in_run, audio = 0, 0.0
    if run:
        end = time.time() if active else (run["finished"] or run["started"])
        elapsed = max(end - run["started"], 0.0)
        for r in rows:
            if r.state == "done" and r.how == "separated" and (r.updated or 0) >= run["started"]:
                done_in_run += 1
                audio += r.audio_s or 0.0
    return BatchStatus(Path(out), counts, active, started, elapsed, done_in_run, audio,
                       [(r.input, r.error or "") for r in rows if r.state == "failed"])


def hms(seconds: float) -> str:
    """``H:MM:SS``"""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
