"""The page of one `inr fit` run: its index.html, built from the report and the files beside it.

What a colleague looks at first: the reconstruction against the target (a split slider for images, players for
audio and video, the three-view preview for shapes), then the numbers: metrics, training curves, solver
statistics for implicit models, notes, the config and every file. The target is written into the folder (as
target.png, target.wav or target.mp4) so the page, and anyone the folder is sent to, has both sides at hand.
"""

from __future__ import annotations

from pathlib import Path

from inr_cli.pages.chart import line_chart
from inr_cli.pages.html import (PAGE, anchor, figure, file_table, is_number, link, notes_list, number_cell, pairs,
                                section, text, value_pairs, write_page)
from training.fitting.signal import GridSignal

TARGET_FILES = {"image": "target.png", "audio": "target.wav", "video": "target.mp4"}
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
# Report entries that describe how the run went rather than how good the result is.
RUN_KEYS = ("report_version", "params", "steps", "seconds", "group_size", "steps_per_second", "eval_seconds",
            "compile_seconds", "startup_seconds")
SMALL_SIDE = 512  # small images are shown enlarged (whole pixels, no smoothing) up to about this many pixels


def write_target(out_dir: Path, modality: str, signal, info: dict) -> dict[str, str]:
    """The fitted target as a file the page can show beside the reconstruction: {"target": name}, or {} for a
    modality whose own figures already show it (shapes) or that this page does not know."""
    name = TARGET_FILES.get(modality)
    if name is None or not isinstance(signal, GridSignal):
        return {}
    if modality == "image":
        from inr_cli.media.images import write_png

        write_png(out_dir / name, signal.unit_grid(), 16 if info.get("bit_depth") == 16 else 8)
    elif modality == "audio":
        from inr_cli.media.audio import write_wav

        # At the input's scale, as the reconstruction is written, so the two players sound alike: 16-bit PCM (for
        # listening, at half the size of float samples) unless a float input beyond [-1, 1] needs float to hold it.
        gain = info.get("gain", 1.0)
        write_wav(out_dir / name, signal.values, info["rate"], "PCM_16" if gain == 1.0 else "FLOAT", gain)
    else:
        from inr_cli.media.video import UnitFrames, write_viewable

        # The signal's values mapped to [0, 1] a frame at a time as the frames are encoded: no copy of the clip.
        write_viewable(out_dir / name, UnitFrames(signal.values, signal.grid_shape), info["fps"])
    return {"target": name}


def _image_view(report: dict, files: dict) -> str:
    height, width = report["image"]["height"], report["image"]["width"]
    scale = max(1, SMALL_SIDE // max(height, width))
    return (f'<div class="compare-block"><div class="compare" style="--split: 50%; width: {width * scale}px">'
            f'<img src="{link(files["target"])}" width="{width * scale}" height="{height * scale}" alt="target">'
            f'<img class="over" src="{link(files["reconstruction"])}" alt="reconstruction"></div>'
            f'<div class="controls"><span>target</span><input type="range" min="0" max="100" value="50" '
            f'aria-label="split: target on the left, reconstruction on the right"><span>reconstruction</span>'
            f'<button type="button">show the other whole</button></div>'
            f'<p class="hint">Drag the slider: left of it the target, right of it the reconstruction '
            f'({width}×{height}{f", shown {scale}× enlarged" if scale > 1 else ""}).</p></div>')


_IMAGE_SCRIPT = """<script>
document.querySelectorAll(".compare-block").forEach(function (block) {
  var view = block.querySelector(".compare"), range = block.querySelector("input[type=range]");
  function split(value) { range.value = value; view.style.setProperty("--split", value + "%"); }
  range.addEventListener("input", function () { split(range.value); });
  block.querySelector("button").addEventListener("click", function () { split(Number(range.value) < 50 ? 100 : 0); });
});
</script>"""


def _players(tag: str, files: dict, attributes: str) -> str:
    players = []
    for role in ("target", "reconstruction"):
        if role in files:
            players.append(f'<figure><{tag} controls preload="metadata" {attributes} src="{link(files[role])}">'
                           f'</{tag}><figcaption>{text(role)} · {anchor(files[role])}</figcaption></figure>')
    return '<div class="grid players">' + "".join(players) + "</div>"


# Both videos start, pause and seek together; one the browser cannot decode is replaced by a note (the frame
# strip below shows the same frames).
_VIDEO_SCRIPT = """<script>
(function () {
  var videos = Array.prototype.slice.call(document.querySelectorAll(".players video"));
  videos.forEach(function (video) {
    video.addEventListener("error", function () {
      var note = document.createElement("p");
      note.className = "hint";
      note.textContent = "This browser cannot play " + video.getAttribute("src") + "; the frame strip shows it.";
      video.replaceWith(note);
    });
  });
  var button = document.getElementById("play-both");
  if (button) {
    button.addEventListener("click", function () {
      var playing = videos.some(function (video) { return !video.paused; });
      videos.forEach(function (video) {
        if (playing) { video.pause(); } else { video.currentTime = 0; video.play().catch(function () {}); }
      });
    });
  }
})();
</script>"""


def _result_view(out_dir: Path, modality: str, report: dict, files: dict) -> tuple[str, str, set[str]]:
    """The section showing the result, its script, and the files it shows (left out of the figures below)."""
    if modality == "image" and "target" in files and "reconstruction" in files:
        return _image_view(report, files), _IMAGE_SCRIPT, {"target", "reconstruction"}
    if modality == "audio":
        return _players("audio", files, ""), "", set()
    if modality == "video":
        side = max(report["video"]["width"], report["video"]["height"])
        width = report["video"]["width"] * max(1, (SMALL_SIDE // 2) // side)  # tiny clips enlarged
        body = (_players("video", files, f'muted loop playsinline width="{width}" '
                                         'style="max-width: 540px; image-rendering: pixelated"')
                + '<div class="controls"><button type="button" id="play-both">play / pause both</button></div>')
        return body, _VIDEO_SCRIPT, set()
    if modality == "shape" and "preview" in files:
        mesh = files.get("reconstruction")
        body = figure(files["preview"], "preview: target and reconstruction", out_dir) + (
            f'<p>Extracted mesh: {anchor(mesh)}</p>' if mesh else "")
        return body, "", {"preview"}
    return "", "", set()


def _metrics(report: dict) -> str:
    rows = []
    for key, value in report.items():
        if key in RUN_KEYS or not is_number(value):
            continue
        rows.append(f"<tr><th>{text(key)}</th>{number_cell(value, key, element_id=f'metric-{key}')}</tr>")
    return "<table>" + "".join(rows) + "</table>" if rows else '<p class="hint">no metrics</p>'


def _run_facts(report: dict) -> str:
    fit = report.get("config", {}).get("fit", {})
    entries = [("model", text(f"{report['model']} ({fit.get('layers')} layers of {fit.get('hidden')})")),
               ("parameters", text(f"{report['params']:,}")), ("steps", text(_steps(report))),
               ("training", text(f"{report['seconds']:.2f} s"
                                 + (f", {report['steps_per_second']:.1f} steps/s" if report["steps_per_second"]
                                    else "")
                                 + (f" (a group of {report['group_size']} inputs trained together)"
                                    if (report.get("group_size") or 1) > 1 else ""))),
               ("evaluation", text(f"{report['eval_seconds']:.2f} s")),
               ("device", text(f"{report['device']}, {report['precision']}"
                               + (", compiled" if report["compiled"] else ""))),
               ("learning rate", text(f"{fit['lr']:.3g}" if isinstance(fit.get("lr"), float) else fit.get("lr"))),
               ("input", text(report["input"]))]
    return pairs(entries)


def _steps(report: dict) -> str:
    """The step count, and the step whose network is shown when it is not the last one (``--keep best``)."""
    steps, kept = report["steps"], report.get("kept_step")
    return f"{steps:,}" if kept in (None, steps) else f"{steps:,} (network of step {kept:,}, the best measured)"


def _curves(history: list[dict]) -> str:
    """The evaluations along the run as one chart: every numeric entry (IoU groups of a shape included)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in history:
        for key, value in entry.items():
            if key == "step":
                continue
            inner = value.items() if isinstance(value, dict) else [("", value)]
            for part, number in inner:
                if number is None or is_number(number):
                    series.setdefault(f"{key} {part}".strip(), []).append((entry["step"], number))
    decibels = series and all("psnr" in name for name in series)
    return line_chart(series, "step", "PSNR (dB)" if decibels else "value", key="psnr" if decibels else "")


def _figures(out_dir: Path, files: dict, shown: set[str]) -> str:
    pictures = [figure(name, role, out_dir) for role, name in files.items()
                if role not in shown and str(name).lower().endswith(PICTURE_SUFFIXES)]
    return '<div class="grid">' + "".join(pictures) + "</div>" if pictures else ""


def run_page_body(out_dir: Path, report: dict) -> tuple[str, str]:
    """The page's body and script for a finished report (its files in ``out_dir``)."""
    modality = report.get("config", {}).get("modality", "")
    files = report["files"]
    view, script, shown = _result_view(out_dir, modality, report, files)
    parts = []
    if view:
        parts.append(section("Result", view, "result"))
    parts.append(section("Metrics", '<div class="grid">' + _metrics(report) + _run_facts(report) + "</div>",
                         "metrics"))
    chart = _curves(report.get("history") or [])
    training = (chart or '<p class="hint">One evaluation only (--eval-every 0): no curve.</p>')
    parts.append(section("Training", training, "training"))
    pictures = _figures(out_dir, files, shown)
    if pictures:
        parts.append(section("Figures", pictures, "figures"))
    if report.get("solver"):
        parts.append(section("Fixpoint solver", value_pairs(report["solver"]), "solver"))
    if report.get("notes"):
        parts.append(section("Notes", notes_list(report["notes"]), "notes"))
    parts.append(section("Config", value_pairs(report.get("config", {})), "config"))
    parts.append(section("Files", file_table(out_dir, files), "files"))
    return "\n".join(parts), script


def write_run_page(out_dir: Path, report: dict, signal, info: dict) -> dict:
    """Write the run's target file (where the page shows one) and its index.html. Returns the report with both
    added to its ``files``; writing the report stays the caller's (it goes last)."""
    modality = report.get("config", {}).get("modality", "")
    files = {**report["files"], **write_target(out_dir, modality, signal, info), "page": PAGE}
    report = {**report, "files": files}
    body, script = run_page_body(out_dir, report)
    fit = report.get("config", {}).get("fit", {})
    lead = (f"{modality} fit · {report['model']} {fit.get('layers')}L-{fit.get('hidden')}D · {report['steps']:,} "
            f"steps in {report['seconds']:.1f} s on {report['device']}")
    write_page(out_dir / PAGE, str(report["input"]), lead, body, script)
    return report
