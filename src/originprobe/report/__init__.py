"""Stage 7: run directories — results.json, results.md, config.json, errors.csv, report.html —
the tables they share (`tables`) and the answers of predict and the service (`documents`)."""

from .results import (
    REQUIRED_KEYS,
    get_key,
    results_markdown,
    write_errors_csv,
    write_json,
    write_run,
)
from .tables import markdown_table

__all__ = [
    "REQUIRED_KEYS",
    "get_key",
    "markdown_table",
    "results_markdown",
    "write_errors_csv",
    "write_json",
    "write_run",
]
