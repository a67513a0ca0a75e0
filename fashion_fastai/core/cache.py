"""Where the package keeps what it makes once and reuses: the generated demo data (demo.py) and converted starting
weights (lite_weights.py).  One place, so a user moves or clears it with one variable, `FASHION_FASTAI_CACHE`."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    "Where generated data and converted weights are kept: $FASHION_FASTAI_CACHE, or ~/.cache/fashion_fastai."
    env = os.environ.get("FASHION_FASTAI_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fashion_fastai"
