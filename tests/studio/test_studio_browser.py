"""End to end in a real browser: Debian's Chromium, headless, driven by Playwright, against the
studio served by uvicorn on a free loopback port. A new user's path: pick a song, separate it with
the ``center`` model (the default model preselected), mute a stem, compare A/B, look at a spectrogram, export, and check the
downloaded file against the server-side render of the same settings.

Screenshots go to ``results/studio/`` in the repository root.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "results" / "studio"
CHROMIUM = Path(os.environ.get("UNBAKE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
pytestmark = pytest.mark.browser

WAIT_MS = 60_000  # generous upper bounds for waits, never asserted as durations

pytest.importorskip("fastapi", reason="the studio needs fastapi (pip install 'unbake[studio]')")
pytest.importorskip("uvicorn", reason="the studio needs uvicorn (pip install 'unbake[studio]')")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs the Python playwright package (see .ci/browser-deps.sh)")
if not CHROMIUM.is_file():
    pytest.skip(f"the browser test needs Chromium at {CHROMIUM} (apt-get install chromium; see .ci/browser-deps.sh)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def studio_url(tmp_path):
    """The studio on 127.0.0.1:<free port> in a thread, with its data under ``tmp_path``."""
    from unbake.studio.server import build_server

    server = build_server(host="127.0.0.1", port=_free_port(), data_dir=tmp_path / "data")
    thread = threading.Thread(target=server.run, name="studio-under-test", daemon=True)
    thread.start()
    ready = threading.Event()
    while not ready.wait(0.05):
        if server.started or not thread.is_alive():
            break
    assert server.started, "the studio server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/", tmp_path / "data"
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def page(tmp_path):
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, accept_downloads=True, viewport={"width": 1440, "height": 900})
        try:
            pg = context.pages[0] if context.pages else context.new_page()
            pg.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            pg.js_errors = errors
            yield pg
        finally:
            context.close()


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_separate_mix_export_in_browser(studio_url, page, tmp_path, example_song):
    from unbake.audio import read_audio
    from unbake.remix import Remix
    from unbake.stems import StemSet

    url, data_dir = studio_url
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#model-select option[value='center']").count() == 1
    assert "built in" in page.locator("#model-select option[value='center']").inner_text()
    # the model preselected is the one `unbake separate` uses when none is named
    from unbake.separate import default_model

    assert page.input_value("#model-select") == default_model()
    _shot(page, "01-start.png")

    # a text file dressed up as an mp3, dropped on the drop zone, is refused with the reason
    dropped = page.evaluate_handle(
        "text => { const dt = new DataTransfer();"
        " dt.items.add(new File([text], 'song.mp3', {type: 'audio/mpeg'})); return dt; }",
        "not audio at all\n" * 20)
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert page.inner_text("#picked").startswith("Ready: song.mp3")
    page.click("#separate-btn")
    page.wait_for_selector("#upload-error:not([hidden])")
    assert "not a readable audio or video file" in page.inner_text("#upload-error")
    assert page.locator("#job-list li.job").count() == 0

    # pick the song, keep the built-in model, separate
    page.set_input_files("#file-input", str(example_song))
    page.select_option("#model-select", "center")
    page.click("#separate-btn")
    page.wait_for_selector("#job-list li.job[data-status='done']")
    # the mixer opens by itself once the song just submitted is separated
    page.wait_for_selector("body[data-audio-ready='1']")
    rows = page.locator("#tracks .track")
    assert rows.count() == 3  # the original plus two stems
    assert page.locator("#tracks .track[data-stem='vocals'] canvas.wave").is_visible()
    assert page.locator("#q-snr, #quality .hint").count() >= 1
    # the full report is tables of rounded figures, not raw JSON
    page.click("#quality details.full-report summary")
    assert page.locator("#quality details.full-report table.report").count() >= 3
    assert page.locator("#quality pre").count() == 0
    cells = page.locator("#quality details.full-report td").all_inner_texts()
    assert cells and all(len(c) <= 12 for c in cells), cells
    _shot(page, "02-mixer.png")

    # mute vocals, compare with the original and back, play a little
    page.click("#tracks .track[data-stem='vocals'] button.mute")
    assert page.get_attribute("#tracks .track[data-stem='vocals'] button.mute", "aria-pressed") == "true"
    page.click("#ab-orig")
    assert page.get_attribute("#ab-orig", "aria-pressed") == "true"
    assert "match the mix" in page.inner_text("#ab-info")
    assert "LUFS" in page.inner_text("#ab-info")  # the server's loudness figures, not RMS
    page.click("#ab-mix")
    # drag across a waveform: a loop region from about 1 s to 3 s, then play inside it
    lane = page.locator("#tracks .track[data-stem='original'] .lane").bounding_box()
    y = lane["y"] + lane["height"] / 2
    page.mouse.move(lane["x"] + lane["width"] / 6, y)
    page.mouse.down()
    page.mouse.move(lane["x"] + lane["width"] / 2, y, steps=5)
    page.mouse.up()
    assert page.is_checked("#loop-check")
    assert page.inner_text("#loop-info").startswith("region 0:01.0")
    page.click("#play-btn")
    sync_api.expect(page.locator("#play-btn")).to_have_text("Pause")
    sync_api.expect(page.locator("#time")).not_to_have_text("0:00.0 / 0:06.1", timeout=WAIT_MS)
    page.click("#play-btn")
    assert page.inner_text("#play-btn") == "Play"
    page.click("#loop-clear")
    assert page.inner_text("#loop-info").startswith("drag")

    # a spectrogram picture, rendered by the server
    page.click("#tracks .track[data-stem='accompaniment'] button.spec-toggle")
    page.wait_for_selector("#tracks .track[data-stem='accompaniment'] img.spec[data-loaded='1']")
    _shot(page, "03-muted-spectrogram.png")

    # export as wav through the remix engine; the browser downloads it
    page.select_option("#export-format", "wav")
    with page.expect_download() as info:
        page.click("#export-btn")
    download = info.value
    assert download.suggested_filename.endswith(" - mix.wav")
    saved = tmp_path / "export.wav"
    download.save_as(str(saved))
    page.wait_for_selector("#export-status:has-text('Exported')")
    _shot(page, "04-exported.png")

    # the settings as a project file, and back after a reset
    with page.expect_download() as info:
        page.click("#save-project")
    project = tmp_path / "mix.unbake.yaml"
    info.value.save_as(str(project))
    assert "mute: true" in project.read_text()
    page.click("#reset-mix")
    assert page.get_attribute("#tracks .track[data-stem='vocals'] button.mute", "aria-pressed") == "false"
    page.set_input_files("#load-project", str(project))
    sync_api.expect(page.locator("#tracks .track[data-stem='vocals'] button.mute")).to_have_attribute(
        "aria-pressed", "true")
    assert page.js_errors == []

    exported, sr = read_audio(saved)
    assert sr == 44100 and exported.shape[0] == 2 and exported.shape[1] > sr
    assert float(np.abs(exported).max()) > 0.01, "the exported file is silent"

    # the same settings rendered on the server; and the mix with vocals in, for contrast
    job_dirs = list((data_dir / "jobs").iterdir())
    assert len(job_dirs) == 1
    stems = StemSet.load(job_dirs[0] / "stems")
    expected = Remix(stems).mute("vocals").render()
    with_vocals = Remix(stems).render()
    n = min(expected.shape[1], exported.shape[1])
    assert abs(expected.shape[1] - exported.shape[1]) <= 1
    err_muted = float(np.max(np.abs(exported[:, :n] - expected[:, :n])))
    err_full = float(np.max(np.abs(exported[:, :n] - with_vocals[:, :n])))
    assert err_muted < 1e-4, f"the export differs from the server-side render of the same settings ({err_muted})"
    assert err_full > 0.05, "the muted stem is still in the export"
    # with vocals muted and the master untouched, the mix is the accompaniment stem alone
    err_alone = float(np.max(np.abs(exported[:, :n] - stems["accompaniment"][:, :n])))
    assert err_alone < 1e-4, f"the export is not the accompaniment alone ({err_alone})"
