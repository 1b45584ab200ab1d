"""What is wrong with an import file, said so a person can find and fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: How many problems `str(InvalidDataError)` lists before summarising the rest.
PRINT_LIMIT = 50
#: How many problems an import keeps in full (file, row, line, column and value).
#: The rest are only counted, by file, column and reason (`Tally`), so that the
#: memory an import needs is bounded by its files, not by how much is wrong with
#: them: ten million rows of empty cells once took 23.5 GB as one `Problem` each.
DETAIL_LIMIT = 2_000


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


@dataclass(frozen=True)
class Tally:
    """How many problems of one kind one column of one file has.

    Attributes:
        file: the path as it was given.
        column: the column in the file, or None.
        reason: the kind of problem, without a value ("out of range (must be ...)").
        count: how many rows have it.
    """

    file: str
    column: str | None
    reason: str
    count: int

    def __str__(self) -> str:
        where = self.file if self.column is None else f"{self.file}, column {self.column}"
        return f"{where}: {self.count:,} x {self.reason}"


def format_problems(
    problems: Sequence[Problem],
    limit: int = PRINT_LIMIT,
    *,
    total: int | None = None,
    tallies: Sequence[Tally] = (),
) -> str:
    """One problem per line, at most `limit` of them, then how many were left out.

    Args:
        problems: the problems known in full, in file and row order.
        limit: how many of them to list.
        total: how many problems there are in all, when `problems` holds only
            the first ones; defaults to `len(problems)`.
        tallies: every problem counted by file, column and reason, listed after
            the problems when some were left out.
    """
    count = len(problems) if total is None else total
    lines = [f"  {problem}" for problem in problems[:limit]]
    shown = len(lines)
    if count > shown:
        lines.append(f"  ... and {count - shown:,} more")
        if tallies:
            lines.append("  all of them by column and reason:")
            lines.extend(f"    {tally}" for tally in tallies)
    return "\n".join(lines)


class InvalidDataError(Exception):
    """The input was refused.

    Attributes:
        problems: the first `DETAIL_LIMIT` problems found, in file and row order.
        tallies: every problem counted by file, column and reason (empty when
            `problems` is complete and was not counted).
        total: how many problems were found, including those left out of `problems`.
    """

    def __init__(self, problems: Sequence[Problem], tallies: Sequence[Tally] = ()) -> None:
        self.problems = list(problems)
        self.tallies = list(tallies)
        self.total = max(len(self.problems), sum(tally.count for tally in self.tallies))
        super().__init__(self._message())

    def _message(self) -> str:
        files = list(
            dict.fromkeys(
                [problem.file for problem in self.problems] + [t.file for t in self.tallies]
            )
        )
        noun = "problem" if self.total == 1 else "problems"
        head = f"invalid input: {self.total:,} {noun} in {', '.join(files)}"
        body = format_problems(self.problems, total=self.total, tallies=self.tallies)
        return f"{head}\n{body}"
