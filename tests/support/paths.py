"""Where things are: the repository, the Python running the tests, MovieLens 100k."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Never committed (its licence forbids shipping it); tests that need it skip without it.
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
