"""`unbake data synth OUT`: make a synthetic multitrack training set (see :mod:`unbake.data.synth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, handle_errors, out

data_app = typer.Typer(help="Make and inspect training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
@handle_errors
def synth(
    outdir: Path = typer.Argument(..., help="Folder to write the tracks into (one sub-folder per track)."),
    count: int = typer.Option(100, "--count", "-n", help="Number of tracks."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed makes the same tracks."),
    start: int = typer.Option(0, "--start", help="Index of the first track (to extend a set)."),
    duration_s: float = typer.Option(6.0, "--duration-s", help="Length of each track in seconds."),
    vocals: Optional[Path] = typer.Option(None, "--vocals", help="Folder of tracks whose vocal stems are "
                                          "mixed in (e.g. the training previews); silent vocals without it."),
    valid_every: int = typer.Option(9, "--valid-every", help="Tracks of --vocals held out as in training "
                                    "(data.valid_every): their vocals are not used."),
    valid_count: int = typer.Option(10, "--valid-count", help="data.valid_count of that rule (0: use all)."),
    folds: int = typer.Option(0, "--folds", help="Hold out by the k-fold rule instead (data.folds)."),
    fold: int = typer.Option(0, "--fold", help="The fold whose held-out tracks are left out (data.fold)."),
    soundfont: Optional[Path] = typer.Option(None, "--soundfont", help="General MIDI .sf2 (default: "
                                             "FluidR3_GM from the Debian package fluid-soundfont-gm)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-audio cache for --vocals."),
    match_vocals: bool = typer.Option(False, "--match-vocals", help="Compose each track in the tempo and key "
                                      "of the song its vocals come from, the vocals starting on a beat."),
) -> None:
    """Render drums, bass and accompaniment composed from SEED with a GM soundfont (fluidsynth)."""
    from ..data.datasets import find_tracks, fold_split, split_tracks
    from ..data.synth import make_synth_set

    vocal_tracks = None
    if vocals is not None:
        paths = find_tracks(vocals)
        vocal_tracks = fold_split(paths, folds, fold)[0] if folds else split_tracks(paths, valid_every, valid_count)[0]
    made = make_synth_set(outdir, count, seed=seed, duration_s=duration_s, vocal_tracks=vocal_tracks,
                          soundfont=soundfont, cache_dir=cache_dir, start=start, match_vocals=match_vocals)
    out.print(f"{len(made)} tracks in {outdir}", highlight=False)
