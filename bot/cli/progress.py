"""Progress on the command line: a tqdm bar on a terminal; on anything else (a pipe, a
log file, CI) plain lines, the first step and then one per tenth of the way."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import NoReturn, TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """One task's progress (`unit` steps or files of `desc`), shown on `stream`."""

    def __init__(
        self,
        desc: str,
        unit: str = "step",
        *,
        stream: TextIO | None = None,
        bar: bool | None = None,
    ) -> None:
        self.desc, self.unit = desc, unit
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self._tqdm: tqdm[NoReturn] | None = None
        self._tenths = -1  # the tenths of the way written as plain lines

    def update(self, done: int, total: int, detail: str = "") -> None:
        """`done` of `total` are done; `detail` (the loss, the time left) is shown beside."""
        if self.bar:
            bar = self._tqdm
            if bar is None or bar.total != total:
                self._close_bar()
                bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream)
                self._tqdm = bar
            bar.set_postfix_str(detail, refresh=False)
            bar.update(done - bar.n)
            return
        tenths = done * 10 // total if total else 10
        if tenths > self._tenths or done == 1:
            self._tenths = tenths
            extra = f", {detail}" if detail else ""
            print(f"  {self.unit} {done}/{total}{extra}", file=self.stream)

    def note(self, text: str) -> None:
        """A line of its own (paused, retrying...), above the bar on a terminal."""
        if self._tqdm is not None:
            self._tqdm.write(f"  {text}", file=self.stream)
        else:
            print(f"  {text}", file=self.stream)

    def close(self) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
