"""`python -m ml train|evaluate|compare [options]` (the commands are in ml/cli.py).

The settings are read before ml/cli.py is imported: it brings scikit-learn,
which takes seconds to import, and a bad setting should answer at once, with
one line and exit code 2.
"""

from __future__ import annotations

from app.settings import load_settings

if __name__ == "__main__":
    load_settings()
    from ml.cli import main

    main()
