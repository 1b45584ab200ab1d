"""What is wrong with an import file, said so a person can find and fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: How many problems `str(InvalidDataError)` lists before summarising the rest.
PRINT_LIMIT = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file, row or value.

    Attributes:
        file: the path as it was given.
        row: 1-based data row (the first row after the header is row 1); None when
            the problem concerns the whole file (unreadable, a missing column).
        column: the column in the file, or None.
        reason: what is wrong, including the offending value.
        line: for CSV, the physical line where the row starts (header = line 1);
            it differs from `row + 1` when quoted values span lines or blank lines
            are skipped.
    """

    file: str
    row: int | None
    column: str | None
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
            if self.line is not None:
                where += f" (line {self.line})"
        elif self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


def format_problems(problems: Sequence[Problem], limit: int = PRINT_LIMIT) -> str:
    """One problem per line, at most `limit` of them, then how many were left out."""
    lines = [f"  {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit:,} more")
    return "\n".join(lines)


class InvalidDataError(Exception):
    """The input was refused; `problems` lists everything found, in file and row order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        files = list(dict.fromkeys(problem.file for problem in self.problems))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        head = f"invalid input: {count:,} {noun} in {', '.join(files)}"
        return f"{head}\n{format_problems(self.problems)}"
