"""The pages: a run's index.html and a multi-input run's overview, opened from the file system in headless
Chromium (Debian's chromium and chromium-driver, driven by selenium; nothing is downloaded). Each must load
with no console error, every picture and player must resolve, and the PSNR shown must be the report's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities import FitCommandConfig
from inr_cli.modalities.image import ImageOptions
from inr_cli.pages.html import figure, link, write_page
from training.fitting.config import FitConfig

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ODD_NAME = "cam <b>&#1"  # markup, an entity and a URL fragment sign in one file name


@pytest.fixture(scope="module")
def run(tmp_path_factory, camera_u8, astronaut_u8):
    """Two small images (one with an awkward name) and a missing one, fitted as one run: per-input pages and
    the overview, with one failed row."""
    folder = tmp_path_factory.mktemp("pages")
    Image.fromarray(np.ascontiguousarray(camera_u8[180:204, 200:224])).save(folder / f"{ODD_NAME}.png")
    Image.fromarray(np.ascontiguousarray(astronaut_u8[::32, ::32])).save(folder / "astro.png")
    config = FitCommandConfig("image", FitConfig(hidden=16, layers=1, steps=15, device="cpu", eval_every=5),
                              ImageOptions())
    sources = [str(folder / f"{ODD_NAME}.png"), str(folder / "astro.png"), str(folder / "missing.png")]
    code = run_fit_command(config, sources, OutputOptions(out=folder / "run", as_json=True, show_progress=False))
    assert code == 1  # the missing input failed; the others were fitted
    return folder / "run"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (installed by .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                     "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


# Waits (up to 5 s) until every picture and player has settled, then reports each one's outcome.
MEDIA_STATE = """
const done = arguments[arguments.length - 1];
const started = Date.now();
function settled() {
  const pictures = Array.from(document.images);
  const players = Array.from(document.querySelectorAll("audio, video"));
  const ready = pictures.every(i => i.complete) && players.every(m => m.readyState >= 1 || m.error);
  if (!ready && Date.now() - started < 5000) { setTimeout(settled, 50); return; }
  done({pictures: pictures.map(i => [i.getAttribute("src"), i.naturalWidth]),
        players: players.map(m => [m.getAttribute("src"), m.readyState, m.error ? m.error.code : null])});
}
settled();
"""


def _open(browser, page: Path, screenshot: Path) -> dict:
    """Load ``page`` from the file system; returns its pictures' and players' states, after a screenshot."""
    browser.get_log("browser")  # start from an empty console
    browser.get(page.resolve().as_uri())
    state = browser.execute_async_script(MEDIA_STATE)
    assert browser.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] > 0
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    assert state["pictures"] and all(width > 0 for _, width in state["pictures"]), state["pictures"]
    assert all(ready >= 1 and error is None for _, ready, error in state["players"]), state["players"]
    return state


def test_the_run_page_shows_the_fit_and_its_report(run, browser, tmp_path):
    folder = run / ODD_NAME
    report = json.loads((folder / "report.json").read_text())
    assert report["files"]["page"] == "index.html" and report["files"]["target"] == "target.png"
    # The target beside the reconstruction is the fitted image itself.
    expected = np.asarray(Image.open(run.parent / f"{ODD_NAME}.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(folder / "target.png")), expected)

    state = _open(browser, folder / "index.html", tmp_path / "run.png")
    assert [src for src, _ in state["pictures"]][:2] == ["target.png", "reconstruction.png"]
    shown = browser.find_element("id", "metric-psnr")
    assert float(shown.get_attribute("data-value")) == report["psnr"]
    assert shown.text == f"{report['psnr']:.2f} dB"
    assert browser.title == report["input"]  # the odd file name as text, not markup
    # The slider moves the split between target and reconstruction.
    split = browser.execute_script("""
        const range = document.querySelector(".compare-block input[type=range]");
        range.value = 20; range.dispatchEvent(new Event("input"));
        return document.querySelector(".compare").style.getPropertyValue("--split");""")
    assert split == "20%"


def test_the_overview_page_links_every_run_and_sorts(run, browser, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    _open(browser, run / "index.html", tmp_path / "overview.png")
    rows = browser.execute_script("""return Array.from(document.querySelectorAll("table.sortable tbody tr"))
        .map(row => [row.cells[0].textContent, row.cells[3].getAttribute("data-sort"),
                     (row.querySelector("a") || {}).getAttribute
                         ? row.querySelector("a").getAttribute("href") : null])""")
    assert [text for text, _, _ in rows] == [row["input"] for row in summary["rows"]]
    fitted = [row for row in summary["rows"] if row["status"] == "fitted"]
    assert [float(value) for _, value, _ in rows[:2]] == [row["psnr"] for row in fitted]
    for _, _, href in rows[:2]:  # each links to that input's page (names percent-encoded)
        assert (run / unquote(href)).is_file() and href.endswith("/index.html")
    assert rows[2][2] is None  # the failed input has no page to link
    # A click on the PSNR column sorts by it; a second reverses.
    header = browser.find_elements("css selector", "table.sortable th")[3]
    ordered = []
    for _ in range(2):
        header.click()
        ordered.append(browser.execute_script("""return Array.from(document.querySelectorAll(
            "table.sortable tbody tr")).map(row => row.cells[3].getAttribute("data-sort"))"""))
    values = sorted(row["psnr"] for row in fitted)
    assert [float(v) for v in ordered[0][:2]] == values and ordered[0][2] == ""  # missing values last
    assert [float(v) for v in ordered[1][:2]] == values[::-1] and ordered[1][2] == ""


def test_names_with_control_characters_or_undecodable_bytes_are_shown_as_escapes_and_linked_as_they_are(tmp_path):
    name = "cr\rhere" + b"\xff".decode("utf-8", "surrogateescape") + ".png"  # Python's form of the byte 0xff
    write_page(tmp_path / "index.html", name, f"fitted {name}", figure(name, name))
    page = (tmp_path / "index.html").read_bytes().decode("utf-8")  # valid UTF-8, with no control characters
    assert "<title>cr\\rhere\\xff.png</title>" in page and "\r" not in page
    # The link keeps the file's own bytes, percent-encoded, so the browser finds the file.
    assert f'href="{link(name)}"' in page and link(name) == "cr%0Dhere%FF.png"


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_the_page_s_target_of_a_clip_is_written_without_a_copy_of_the_whole_signal(tmp_path, monkeypatch, modality):
    """write_target mapped every signal to [0, 1] whole (unit_grid) before looking at its modality: audio never
    used that copy, and video encodes a frame at a time; for an hour of stereo or 48 frames of 1080p it was the
    run's peak (2.4 GB with its temporary). The files are those the whole copy gave."""
    import torch

    from inr_cli.pages.run_page import write_target
    from training.fitting.signal import GridSignal, audio_signal, video_signal

    generator = torch.Generator().manual_seed(0)
    if modality == "audio":
        signal, info = audio_signal(torch.rand(4000, 2, generator=generator) * 2 - 1), {"rate": 8000}
    else:
        signal, info = video_signal(torch.rand(3, 16, 18, 3, generator=generator)), {"fps": 12}
    # What the whole [0, 1] copy gave: the video encoded from it; the clip's samples written as they are.
    whole = tmp_path / "whole"
    whole.mkdir()
    if modality == "audio":
        from inr_cli.media.audio import write_wav

        files = {"target": "target.wav"}
        write_wav(whole / files["target"], signal.values, info["rate"], "PCM_16", 1.0)
    else:
        from inr_cli.media.video import write_viewable

        files = {"target": "target.mp4"}
        write_viewable(whole / files["target"], signal.unit_grid(), info["fps"])

    def refused(self):
        raise AssertionError("a copy of the whole signal")

    monkeypatch.setattr(GridSignal, "unit_grid", refused)
    streamed = tmp_path / "streamed"
    streamed.mkdir()
    assert write_target(streamed, modality, signal, info) == files
    if modality == "audio":
        assert (streamed / files["target"]).read_bytes() == (whole / files["target"]).read_bytes()
    else:  # (x264 does not reproduce its stream exactly across runs: the same video within a lossy encoding's reach)
        from helpers import same_h264_stream

        assert same_h264_stream((streamed / files["target"]).read_bytes(), (whole / files["target"]).read_bytes())
