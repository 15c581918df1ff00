"""Progress bars for the long phases of a training's set-up: loading an image folder, fitting the prior, the warm start.

Like the training bar (:class:`gmmgan.gan.run_folder.TrainingLog`): rich, on the console train() was
given, left on screen when done (a console that is not a terminal, e.g. a log file, gets the final
line). A bar that is not ``enabled`` (``quiet=True``, ranks other than 0) shows nothing.

    with PhaseProgress(console, "warm start", total=steps, enabled=show) as bar:
        for i in range(steps):
            ...
            bar.update(i + 1, info=f"MSE {loss:.3g}")
"""

from __future__ import annotations

__all__ = ["PhaseProgress"]


class PhaseProgress:
    """One bar: ``description``, done/``total`` and ``unit`` (a pulse while ``total`` is None), ``info``, the time."""

    def __init__(self, console, description: str, total: float | None = None, *, enabled: bool = True,
                 unit: str = ""):
        self.description, self.total, self.unit = description, total, unit
        self.console, self.enabled = console, enabled and console is not None
        self._progress = self._task = None

    def __enter__(self) -> PhaseProgress:
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn(f"[bold]{self.description}"), BarColumn(), _count_column(),
                                  TextColumn(self.unit), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=self.console, transient=False)
        self._task = self._progress.add_task(self.description, total=self.total, info="")
        self._progress.start()
        return self

    def update(self, completed: float | None = None, *, total: float | None = None, info: str | None = None) -> None:
        """Move the bar to ``completed`` (and/or change its total or the text beside it)."""
        if self._progress is None:
            return
        if total is not None:
            self.total = total
        fields = {k: v for k, v in (("completed", completed), ("total", total), ("info", info)) if v is not None}
        self._progress.update(self._task, **fields)

    def count(self, done: int, total: int) -> None:
        """``progress(done, total)`` callback of a loop (e.g. :func:`gmmgan.data.load_image_folder`)."""
        self.update(done, total=total)

    def __exit__(self, exc_type, *exc) -> None:
        if self._progress is None:
            return
        if exc_type is None and self.total is not None:  # done: full, even if EM converged early
            self._progress.update(self._task, completed=self._progress.tasks[0].total)
        self._progress.stop()
        self._progress = None


def _count_column():
    """'done/total', or nothing while the total is unknown."""
    from rich.progress import MofNCompleteColumn
    from rich.text import Text

    class Count(MofNCompleteColumn):
        def render(self, task):
            return Text("") if task.total is None else super().render(task)

    return Count()
