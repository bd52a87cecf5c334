"""The pieces every page is built from: the page frame and its style, escaping, numbers, tables, file links and
the sorting script.

Pages are plain HTML files with relative links, readable from the file system with no server and no network:
no external stylesheet, font or script. Every piece of text that comes from a file name, a report or a config
goes through :func:`text` (or :func:`link` for a URL), so a file called ``<b>.png`` shows as it is named, and one
whose name holds a control character or bytes that are not UTF-8 shows them as escapes.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from string import Template
from urllib.parse import quote

from inr_cli.figures.layout import printable
from inr_cli.files import atomic_write_text
from inr_cli.reports import package_version

PAGE = "index.html"

_FRAME = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>$title</title>
<style>$style</style>
</head>
<body>
<header>
<h1>$title</h1>
<p class="lead">$lead</p>
</header>
<main>
$body
</main>
<footer>Written by inr $version. Links are relative: the folder can be moved, zipped or served as it is.</footer>
$script
</body>
</html>
""")

_STYLE = """
:root { --ink: #1d232a; --muted: #5b6673; --line: #d8dde3; --tint: #f3f5f8; --accent: #2d6cb5; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1180px; padding: 0 20px 40px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
h1 { font-size: 22px; margin: 22px 0 4px; word-break: break-all; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.lead, footer, .hint { color: var(--muted); }
footer { border-top: 1px solid var(--line); margin-top: 36px; padding-top: 8px; font-size: 13px; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: 6px 0; }
.wide { overflow-x: auto; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 12px 4px 0; text-align: left; vertical-align: middle; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th::after { content: " \\2195"; color: #aab2bc; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--ink); }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: var(--ink); }
tfoot td { font-weight: 600; border-top: 2px solid var(--line); }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
img.figure { max-width: 100%; border: 1px solid var(--line); }
img.thumb { height: 64px; max-width: 128px; object-fit: contain; image-rendering: pixelated; background: var(--tint); }
.compare { position: relative; display: inline-block; max-width: 100%; line-height: 0; }
.compare img { display: block; max-width: 100%; image-rendering: pixelated; }
.compare img.over { position: absolute; top: 0; left: 0; width: 100%; height: 100%;
                    clip-path: inset(0 0 0 var(--split, 50%)); }
.controls { margin: 6px 0 0; display: flex; gap: 12px; align-items: center; }
.controls input[type=range] { width: 260px; }
dl.pairs { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dl.pairs dt { color: var(--muted); }
dl.pairs dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
.failed { color: #a12828; }
ul.notes li { margin: 2px 0; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: var(--muted); }
"""

# Click (or Enter on) a column head to sort by it; again to reverse. Cells sort by their data-sort value:
# numerically where both are numbers, else as text; empty values always last.
SORT_SCRIPT = """<script>
(function () {
  function key(cell) {
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null) { raw = cell ? cell.textContent.trim() : ""; }
    return raw;
  }
  function order(a, b, ascending) {
    if (a === "" || b === "") { return a === b ? 0 : (a === "" ? 1 : -1); }
    var x = Number(a), y = Number(b);
    var result = (!isNaN(x) && !isNaN(y)) ? x - y : a.localeCompare(b, undefined, {numeric: true});
    return ascending ? result : -result;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    heads.forEach(function (head, column) {
      head.tabIndex = 0;
      function sort() {
        var ascending = head.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
        head.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) { return order(key(a.cells[column]), key(b.cells[column]), ascending); });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      head.addEventListener("click", sort);
      head.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
})();
</script>"""


def text(value) -> str:
    """Any value as HTML text, escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(printable(str(value)), quote=True)


def link(relative_path: str) -> str:
    """A relative path as an href value: percent-encoded (a '#' or '?' in a file name stays part of the name, and
    its bytes that are not UTF-8 are encoded as the bytes they are), then escaped for the attribute."""
    return text(quote(str(relative_path).replace(os.sep, "/"), safe="/", errors="surrogateescape"))


def anchor(relative_path: str, label: str | None = None) -> str:
    return f'<a href="{link(relative_path)}">{text(label if label is not None else relative_path)}</a>'


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value, key: str = "") -> str:
    """A value as a person reads it: PSNRs and SNRs in dB with 2 decimals, counts with separators, other
    numbers to 4 significant digits; '–' for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not is_number(value):
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return "∞ dB" if _in_decibels(key) else "∞"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if _in_decibels(key):
        return f"{value:.2f} dB"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _in_decibels(key: str) -> bool:
    return "psnr" in key or key.startswith("snr") or key.endswith("_snr")


def sort_value(value) -> str:
    """The data-sort attribute of a cell: the exact number (so sorting never reads rounded text), or ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if is_number(value):
        return repr(float(value)) if math.isfinite(value) else ("1e308" if value > 0 else "-1e308")
    return text(value)


def number_cell(value, key: str = "", element_id: str | None = None) -> str:
    """A right-aligned table cell for a number, with its exact value in data-sort (and data-value)."""
    identity = f' id="{text(element_id)}"' if element_id else ""
    exact = sort_value(value)
    return f'<td class="num"{identity} data-sort="{exact}" data-value="{exact}">{text(number(value, key))}</td>'


def pairs(entries: list[tuple[str, str]]) -> str:
    """A two-column list of (name, HTML value) pairs; the names are escaped here, the values are HTML already."""
    rows = "".join(f"<dt>{text(name)}</dt><dd>{value}</dd>" for name, value in entries)
    return f'<dl class="pairs">{rows}</dl>'


def flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts as dotted (key, value) pairs; short lists kept, long ones summarised."""
    if isinstance(value, dict):
        items = []
        for key, inner in value.items():
            items += flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return [(prefix, f"{len(value)} values: {', '.join(number(v) for v in value[:4])}, …")]
    if isinstance(value, (list, tuple)):
        return [(prefix, ", ".join(number(v) for v in value) if value else "–")]
    return [(prefix, value)]


def value_pairs(value: dict) -> str:
    """A nested dict (a config, solver statistics) as a flat two-column list."""
    return pairs([(key, text(number(inner, key))) for key, inner in flatten(value)])


def section(title: str, body: str, element_id: str | None = None) -> str:
    identity = f' id="{text(element_id)}"' if element_id else ""
    return f"<section{identity}><h2>{text(title)}</h2>\n{body}\n</section>"


MIN_FIGURE_WIDTH = 320  # narrower pictures (a strip of tiny frames) are shown enlarged by whole pixels


def figure(relative_path: str, caption: str, folder: Path | None = None) -> str:
    """A picture with its caption, linking to itself; with ``folder``, a small one is enlarged."""
    size = ""
    width = picture_width(folder / relative_path) if folder is not None else None
    if width and width < MIN_FIGURE_WIDTH:
        size = f' style="width: {width * -(-MIN_FIGURE_WIDTH // width)}px; image-rendering: pixelated"'
    return (f'<figure><a href="{link(relative_path)}"><img class="figure"{size} src="{link(relative_path)}" '
            f'alt="{text(caption)}"></a><figcaption>{text(caption)}</figcaption></figure>')


def picture_width(path: Path) -> int | None:
    """A picture's width in pixels, read from its header (None when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.width
    except (OSError, ValueError):
        return None


def thumbnail(relative_path: str | None, target: str | None = None, alt: str = "") -> str:
    """A small picture linking to ``target`` (its own file by default); '' when there is none."""
    if not relative_path:
        return ""
    return (f'<a href="{link(target or relative_path)}"><img class="thumb" loading="lazy" '
            f'src="{link(relative_path)}" alt="{text(alt or relative_path)}"></a>')


def file_size(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def file_table(folder: Path, files: dict[str, str]) -> str:
    """Every file (or sub-folder) a report names, by its role, linked, with its size."""
    rows = []
    for role, name in files.items():
        path = folder / str(name)
        size = "folder" if path.is_dir() else file_size(path)
        rows.append(f"<tr><td>{text(role)}</td><td>{anchor(str(name))}</td><td class=\"num\">{text(size)}</td></tr>")
    return ("<table><thead><tr><th>role</th><th>file</th><th class=\"num\">size</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def notes_list(notes: list[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{text(note)}</li>" for note in notes) + "</ul>"


def write_page(path: Path, title: str, lead: str, body: str, script: str = "") -> None:
    """Fill the page frame and write it atomically. ``title`` and ``lead`` are plain text; ``body`` and
    ``script`` are HTML built from the escaped pieces above."""
    page = _FRAME.substitute(title=text(title), lead=text(lead), style=_STYLE, body=body, script=script,
                             version=text(package_version()))
    atomic_write_text(path, page)
