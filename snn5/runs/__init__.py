"""L6 runs: a config becomes a run folder (train, select, measure, report); the quickstart."""

from snn5.runs.quickstart import QUICKSTART, quickstart, quickstart_config
from snn5.runs.report import markdown_table, summary_row, text_table
from snn5.runs.run import RunExistsError, evaluate_run, train_run

__all__ = [
    "QUICKSTART", "RunExistsError", "evaluate_run", "markdown_table", "quickstart",
    "quickstart_config", "summary_row", "text_table", "train_run",
]
