"""Keep the server process lean: it refuses to import pandas and the offline packages.

scikit-learn imports pandas whenever pandas is installed (`sklearn.utils.fixes`
does `try: import pandas`), so loading the click model would add about 60 MiB of
pandas and pyarrow to every server process, though serving never touches a
DataFrame. `python -m app` installs this finder first: an import of a refused
package raises `ModuleNotFoundError`, which scikit-learn takes as "pandas is not
installed". It also turns the layout rule (`app/` imports nothing from `ml/`,
`seed/`, `bench/` or `tools/`) into an error at run time, should a lazy import
ever slip past the tests. Tools and tests that import `app` run without it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

#: Top-level packages the server never needs.
REFUSED = frozenset({"pandas", "pyarrow", "matplotlib", "ml", "seed", "bench", "tools"})


class RefuseOffline(importlib.abc.MetaPathFinder):
    """A meta path finder that answers every refused package with ModuleNotFoundError."""

    def __init__(self, refused: frozenset[str] = REFUSED) -> None:
        self.refused = refused

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """Refuse `fullname` if its top-level package is refused; else let others look."""
        if fullname.partition(".")[0] in self.refused:
            raise ModuleNotFoundError(
                f"the Hometown server does not load {fullname!r} (see app/lean.py)", name=fullname
            )
        return None


def refuse_offline_imports() -> None:
    """Install the finder (once) ahead of the normal ones."""
    if not any(isinstance(finder, RefuseOffline) for finder in sys.meta_path):
        sys.meta_path.insert(0, RefuseOffline())
