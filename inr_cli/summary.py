"""The dataset summary of a run over several inputs: summary.json, summary.md and a histogram.

Per input its modality's headline metrics (``Modality.summary_metrics``), training seconds (an input fitted in a
group: its share of the group's, the group's seconds divided by its size) and whether it failed; per metric its
mean ± standard deviation over the inputs that were fitted (the population std, as `inr compare` gives it, and
said so): the table a paper prints.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from inr_cli.figures.charts import histogram_chart
from inr_cli.figures.layout import save_png
from inr_cli.files import atomic_write_text, remove_written_on_failure
from inr_cli.pages import write_summary_page
from inr_cli.pages.overview import GROUPED_SECONDS, MEAN_STD
from inr_cli.reports import clean, to_json

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
SUMMARY_PLOT = "summary.png"


def _stats(values: list) -> dict:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "count": 0}
    # One value has no spread to show: its std is None (not 0), and the tables print the value alone.
    return {"mean": statistics.fmean(finite), "std": statistics.pstdev(finite) if len(finite) > 1 else None,
            "count": len(finite)}


def summarize(sources: list[str], outcomes: dict[int, dict | str], metrics: tuple[str, ...]) -> dict:
    """``outcomes[i]``: input i's report, or the message of its failure."""
    rows = []
    for index, source in enumerate(sources):
        outcome = outcomes.get(index, "not run")
        if isinstance(outcome, dict):
            group = outcome.get("group_size") or 1
            rows.append({"input": source, "status": "fitted", "output_dir": outcome["output_dir"],
                         **{key: outcome.get(key) for key in metrics},
                         # each input's share of its group's training time (a report's seconds are the group's)
                         "seconds": outcome["seconds"] / group, "group_size": group,
                         "kept_step": outcome.get("kept_step", outcome.get("steps")), "steps": outcome.get("steps"),
                         "stopped_early": bool(outcome.get("stopped_early"))})
        else:
            rows.append({"input": source, "status": "failed", "error": outcome})
    fitted = [row for row in rows if row["status"] == "fitted"]
    return {"inputs": len(rows), "fitted": len(fitted), "failed": len(rows) - len(fitted),
            # inputs whose outputs are of an earlier network than their last step's (--keep best)
            "kept_earlier": sum(row["kept_step"] != row["steps"] and not row["stopped_early"] for row in fitted),
            # inputs whose training stopped short, their loss running away after every rollback (counted as failed)
            "stopped_early": sum(row["stopped_early"] for row in fitted),
            # inputs fitted in a group of several, whose seconds are their share of the group's
            "grouped": sum(row["group_size"] > 1 for row in fitted),
            "metrics": {key: _stats([row[key] for row in fitted]) for key in (*metrics, "seconds")},
            "rows": rows}


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def markdown(summary: dict, metrics: tuple[str, ...], title: str) -> str:
    # Metrics no input has (held-out PSNR without --holdout) stay in summary.json but not in the table.
    columns = (*(key for key in metrics if summary["metrics"][key]["count"]), "seconds")
    lines = [f"# {title}", "",
             f"{summary['fitted']} of {summary['inputs']} inputs fitted"
             + (f", {summary['failed']} failed" if summary["failed"] else "") + "."
             + (f" {summary['kept_earlier']} kept an earlier network than their last step's, the best measured "
                "along the run (`--keep best`; see each report's `kept_step`)." if summary.get("kept_earlier") else "")
             + (f" {summary['stopped_early']} stopped short of their steps, their loss running away after every "
                "rollback: their rows are of their last good network (see each report's `stopped_early`)."
                if summary.get("stopped_early") else "")
             + (f" {GROUPED_SECONDS.format(count=summary['grouped'])}" if summary.get("grouped") else ""),
             "",
             "| input | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in summary["rows"]:
        if row["status"] == "fitted":
            lines.append(f"| {row['input']} | " + " | ".join(_cell(row[key]) for key in columns) + " |")
        else:
            lines.append(f"| {row['input']} | failed: {row['error']} |" + " |" * (len(columns) - 1))
    stats = summary["metrics"]
    lines.append(f"| **{MEAN_STD}** | " + " | ".join(
        "–" if stats[key]["mean"] is None else _cell(stats[key]["mean"])
        + ("" if stats[key]["std"] is None else f" ± {_cell(stats[key]['std'])}") for key in columns) + " |")
    return "\n".join(lines) + "\n"


def write_histogram(path: Path, values: list[float], metric: str, title: str) -> None:
    """How ``metric`` is spread over the fitted inputs: 5 to 30 bins, about two inputs a bin."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    chart = histogram_chart(finite, bins=min(30, max(5, len(finite) // 2)), title=title, x_label=metric,
                            y_label="inputs", size=(600, 350))
    save_png(path, chart, f"{metric} over {len(finite)} inputs · {title}")


def write_summary(root: Path, sources: list[str], outcomes: dict[int, dict | str], metrics: tuple[str, ...],
                  title: str) -> dict:
    """Write summary.json, summary.md, summary.png (histogram of the first metric) and the overview page
    (index.html, linking to each input's page) into ``root``."""
    summary = summarize(sources, outcomes, metrics)
    root.mkdir(parents=True, exist_ok=True)
    # All four or none (a full disk): a summary.json without its table and page would pass for a whole summary,
    # and --resume writes the summary again anyway.
    with remove_written_on_failure():
        atomic_write_text(root / SUMMARY_JSON, to_json(clean(summary)) + "\n")
        atomic_write_text(root / SUMMARY_MD, markdown(summary, metrics, title))
        headline = metrics[0]
        write_histogram(root / SUMMARY_PLOT, [row.get(headline) for row in summary["rows"]
                                              if row["status"] == "fitted"], headline, title)
        write_summary_page(root, summary, outcomes, metrics, title,
                           {"summary": SUMMARY_JSON, "table": SUMMARY_MD, "histogram": SUMMARY_PLOT})
    return summary
