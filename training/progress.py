"""A rich progress bar shared by the training commands (hidden when not on a terminal)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def make_progress(disable: bool = False) -> Progress:
    """A progress bar with a free-text ``info`` field for losses and accuracy."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        disable=disable, transient=False,
    )
