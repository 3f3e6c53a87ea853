"""L6 runs: a config becomes a run folder (train, select, measure, report); the quickstart;
benchmark suites with a leaderboard."""

from snn5.runs.bench import BenchEntry, BenchSuite, leaderboard_table, load_suite, run_bench
from snn5.runs.quickstart import QUICKSTART, quickstart, quickstart_config
from snn5.runs.report import markdown_table, summary_row, text_table
from snn5.runs.run import RunExistsError, evaluate_run, train_run

__all__ = [
    "QUICKSTART", "BenchEntry", "BenchSuite", "RunExistsError", "evaluate_run",
    "leaderboard_table", "load_suite", "markdown_table", "quickstart", "quickstart_config",
    "run_bench", "summary_row", "text_table", "train_run",
]
