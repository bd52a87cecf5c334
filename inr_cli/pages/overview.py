"""Overview pages: one table for a run over many inputs (`inr fit` with several paths), for `inr compare` and for
`inr jiio-invert`. Each is a sortable table of the inputs (or models) and their metrics, with thumbnails,
linking to each run's own page or picture."""

from __future__ import annotations

from pathlib import Path

import torch

from inr_cli.pages.html import (PAGE, SORT_SCRIPT, anchor, figure, file_table, notes_list, number, number_cell,
                                section, sort_value, text, thumbnail, value_pairs, write_page)
from inr_cli.pages.run_page import PICTURE_SUFFIXES

# The picture that stands for a run in an overview, by the role its report gives the file, best first.
THUMBNAIL_ROLES = ("reconstruction", "preview", "frames", "comparison")
# A run summary's spread (summary.md, the overview page): the population std, as `inr compare` says of its own.
MEAN_STD = "mean ± std (population)"
# What a summary's seconds are for inputs fitted together (their reports' seconds are the whole group's).
GROUPED_SECONDS = ("{count} were fitted in groups, as one stacked network: their seconds are each one's share of "
                   "its group's training time (the group's seconds divided by its size; each report's `seconds` "
                   "is the whole group's, see its `group_size`).")


def sortable_table(heads: list[tuple[str, bool]], rows: list[str], footer: str = "") -> str:
    """A table whose columns sort on a click. ``heads``: (title, numeric); ``rows``: each row's cells as HTML."""
    numeric_class = ' class="num"'
    head = "".join(f'<th{numeric_class if numeric else ""} scope="col">{text(title)}</th>' for title, numeric in heads)
    body = "".join(f"<tr>{cells}</tr>" for cells in rows)
    foot = f"<tfoot><tr>{footer}</tr></tfoot>" if footer else ""
    return (f'<div class="wide"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}'
            '</table></div><p class="hint">Click a column head to sort by it; click again to reverse.</p>')


def text_cell(value, sort=None) -> str:
    return f'<td data-sort="{sort_value(value if sort is None else sort)}">{text(value)}</td>'


def _thumbnail_of(report: dict, folder: str) -> str:
    files = report.get("files", {})
    for role in THUMBNAIL_ROLES:
        name = files.get(role)
        if name and str(name).lower().endswith(PICTURE_SUFFIXES):
            return thumbnail(f"{folder}/{name}", f"{folder}/{PAGE}", alt=f"{report.get('input', '')} {role}")
    return ""


def write_summary_page(root: Path, summary: dict, outcomes: dict[int, dict | str], metrics: tuple[str, ...],
                       title: str, files: dict[str, str]) -> None:
    """The overview of a run over several inputs, beside its summary.json: a row per input linking to its page."""
    columns = [key for key in metrics if summary["metrics"][key]["count"]] + ["seconds"]
    rows = []
    for index, row in enumerate(summary["rows"]):
        report = outcomes.get(index)
        if row["status"] == "fitted" and isinstance(report, dict):
            folder = Path(str(row["output_dir"])).name
            cells = (f'<td data-sort="{sort_value(row["input"])}">{anchor(f"{folder}/{PAGE}", row["input"])}</td>'
                     f"<td>{_thumbnail_of(report, folder)}</td>" + text_cell("fitted")
                     + "".join(number_cell(row.get(key), key) for key in columns))
        else:
            cells = (text_cell(row["input"]) + "<td></td>"
                     + f'<td class="failed" data-sort="failed">failed: {text(row.get("error", ""))}</td>'
                     + "".join('<td data-sort=""></td>' for _ in columns))
        rows.append(cells)
    stats = summary["metrics"]
    footer = (f'<td colspan="3">{text(MEAN_STD)}</td>' + "".join(
        _mean_std_cell(stats[key]["mean"], stats[key]["std"], key) for key in columns))
    table = sortable_table([("input", False), ("picture", False), ("status", False),
                            *((key, True) for key in columns)], rows, footer)
    parts = [section("Inputs", table, "inputs")]
    pictures = [figure(name, role) for role, name in files.items() if name.lower().endswith(PICTURE_SUFFIXES)]
    if pictures:
        parts.append(section("Distribution", '<div class="grid">' + "".join(pictures) + "</div>"))
    parts.append(section("Files", file_table(root, {**files, "page": PAGE}), "files"))
    lead = (f"{summary['fitted']} of {summary['inputs']} inputs fitted"
            + (f", {summary['failed']} failed" if summary["failed"] else "")
            + (f". {GROUPED_SECONDS.format(count=summary['grouped']).replace('`', '')}" if summary.get("grouped")
               else ""))
    write_page(root / PAGE, title, lead, "\n".join(parts), SORT_SCRIPT)


def _slug(text_value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text_value)


def write_compare_page(out: Path, summary: dict, targets: list[torch.Tensor],
                       reconstructions: list[list[torch.Tensor]], files: dict[str, str]) -> None:
    """`inr compare`'s page: a row per model, size and variant, with its reconstruction of every image (written
    under pictures/, full size) beside the metrics. ``targets``/``reconstructions[row]``: (H, W, C) in [0, 1]."""
    from inr_cli.media.images import write_png

    (out / "pictures").mkdir(exist_ok=True)
    target_names = []
    for index, target in enumerate(targets):
        target_names.append(f"pictures/target-{index}.png")
        write_png(out / target_names[-1], target, 8)
    holdout = summary["holdout"] != "none"
    heads = [("model", False), ("size", False), ("variant", False), ("reconstructions", False), ("PSNR", True),
             *([("held-out PSNR", True)] if holdout else []), ("ms/step", True), ("params", True),
             ("step MB", True), ("peak MB", True), ("eval iterations", True)]
    rows = []
    for row, pictures in zip(summary["rows"], reconstructions):
        names = []
        for index, picture in enumerate(pictures):
            names.append(f"pictures/{_slug(row['model'])}-{_slug(row['size'])}-{row['variant']}-{index}.png")
            write_png(out / names[-1], picture, 8)
        thumbs = "".join(thumbnail(name, alt=f"{row['model']} {row['size']} {row['variant']}") for name in names)
        cells = (text_cell(row["model"]) + text_cell(row["size"], row["layers"] * 1e6 + row["hidden"])
                 + text_cell(row["variant"]) + f"<td>{thumbs}</td>"
                 + _mean_std_cell(row["psnr_mean"], row["psnr_std"])
                 + (_mean_std_cell(row["psnr_holdout_mean"], row["psnr_holdout_std"]) if holdout else "")
                 + "".join(number_cell(row[key], key) for key in ("ms_per_step", "params", "step_mb", "peak_mb",
                                                                   "eval_iterations")))
        rows.append(cells)
    images = '<div class="grid">' + "".join(
        f"<figure>{thumbnail(name, alt=str(path))}<figcaption>{text(path)}</figcaption></figure>"
        for name, path in zip(target_names, summary["images"])) + "</div>"
    parts = [section("Images", images, "images"), section("Models", sortable_table(heads, rows), "models"),
             section("Settings", value_pairs({key: summary[key] for key in ("steps", "holdout", "device",
                                                                            "precision", "compile")})),
             section("Files", file_table(out, {**files, "pictures": "pictures/", "page": PAGE}), "files")]
    count = len(summary["images"])
    lead = (f"{count} image{'s' if count > 1 else ''} · {summary['steps']} steps per fit · {summary['device']}, "
            f"{summary['precision']}" + (" · PSNR mean ± std (population) over the images" if count > 1 else ""))
    write_page(out / PAGE, "inr compare", lead, "\n".join(parts), SORT_SCRIPT)


def _mean_std_cell(mean, std, key: str = "psnr") -> str:
    shown = "–" if mean is None else number(mean, key) + ("" if std is None else f" ± {number(std, key)}")
    return f'<td class="num" data-sort="{sort_value(mean)}">{text(shown)}</td>'


INVERT_METHOD_KEYS = ("psnr", "psnr_std", "psnr_masked", "psnr_gain", "psnr_masked_gain", "decoded_psnr",
                      "decoded_psnr_masked", "cost_mean", "seconds_per_image", "iterations",
                      "final_state_residual_max")


def _decoder_body(decoder: dict) -> str:
    """The decoder's description, and its training history as a table of epochs (a list of records would show
    as one line of raw dictionaries, a wall of text after many epochs)."""
    history = [entry for entry in decoder.get("history") or [] if isinstance(entry, dict)]
    body = value_pairs({key: value for key, value in decoder.items() if key != "history"})
    if not history:
        return body
    keys = ["epoch"] + [key for key in dict.fromkeys(k for entry in history for k in entry) if key != "epoch"]
    rows = ["".join(number_cell(entry.get(key), key) for key in keys) for entry in history]
    return body + "<h3>Training history</h3>\n" + sortable_table([(key, True) for key in keys], rows)


def write_invert_page(out: Path, report: dict) -> None:
    """`inr jiio-invert`'s page: each method's means, then a row per test image with every method's restoration
    (linked to the full-size PNG) and its PSNR."""
    methods = list(report["methods"])
    files = report["files"]
    keys = [key for key in INVERT_METHOD_KEYS if any(key in report["methods"][m] for m in methods)]
    # (Which spread psnr_std is: the population's, as every spread inr reports.)
    summary_heads = [("method", False)] + [("psnr_std (population)" if key == "psnr_std" else key, True)
                                           for key in keys]
    summary_rows = [text_cell(method) + "".join(number_cell(report["methods"][method].get(key), key)
                                                  for key in keys) for method in methods]
    masked = report["per_image"] and any("psnr_masked" in report["per_image"][0].get(m, {}) for m in methods)
    heads = [("image", True)] + ([("corrupted PSNR", True)] if report["corrupted_psnr"] is not None else [])
    for method in methods:
        heads += [(method, False), (f"{method} PSNR", True)] + ([(f"{method} hole PSNR", True)] if masked else [])
    rows = []
    for entry in report["per_image"]:
        index = entry["index"]
        cells = number_cell(index)
        if report["corrupted_psnr"] is not None:
            cells += number_cell(entry.get("corrupted_psnr"), "psnr")
        for method in methods:
            folder = files.get(f"restored_{method}")
            picture = f"{folder.rstrip('/')}/{index:04d}.png" if folder else None
            cells += f"<td>{thumbnail(picture, alt=f'{method} {index}')}</td>"
            cells += number_cell(entry[method].get("psnr"), "psnr")
            if masked:
                cells += number_cell(entry[method].get("psnr_masked"), "psnr")
        rows.append(cells)
    parts = [section("Methods", sortable_table(summary_heads, summary_rows), "methods")]
    if "grid" in files:
        parts.append(section("Grid", figure(files["grid"], " / ".join(report.get("grid_rows", []))), "grid"))
    parts.append(section("Images", sortable_table(heads, rows), "images"))
    for title, key in (("JIIO against Adam", "comparison"), ("FID", "fid")):
        if report.get(key):
            parts.append(section(title, value_pairs(report[key])))
    if report.get("decoder"):
        parts.append(section("Decoder", _decoder_body(report["decoder"]), "decoder"))
    if report.get("notes"):
        parts.append(section("Notes", notes_list(report["notes"]), "notes"))
    parts.append(section("Config", value_pairs(report.get("config", {})), "config"))
    parts.append(section("Files", file_table(out, files), "files"))
    images = report["images"]
    lead = (f"{images['count']} images of {images['size']} px"
            + ("" if report["corrupted_psnr"] is None else
               f" · corrupted input PSNR {number(report['corrupted_psnr'], 'psnr')}")
            + f" · {report['device']}")
    write_page(out / PAGE, f"jiio-invert {report['task']}", lead, "\n".join(parts), SORT_SCRIPT)

