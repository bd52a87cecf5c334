"""Pages to look at a run with: one index.html per run folder, and an overview page for a run over many inputs,
for `inr compare` and for `inr jiio-invert`. Self-contained HTML with relative links: open them from the file
system, no server, no network."""

from inr_cli.pages.html import PAGE
from inr_cli.pages.overview import write_compare_page, write_invert_page, write_summary_page
from inr_cli.pages.run_page import write_run_page

__all__ = ["PAGE", "write_compare_page", "write_invert_page", "write_run_page", "write_summary_page"]
