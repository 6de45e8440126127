"""Where the public data sets live (snips, clinc150, cais, toxicity_en/zh, crosswoz, rasa_projects...): one definition.

``$KEFU_SHARED_DATA`` when set (``$KEFU_DATA_DIR``, its older name, still counts), else ``../shared/data`` beside the
checkout. It is defined here, in the safety package, because safety is the lowest package that needs it (its CLI's
training defaults); nlu and safety may not import each other and nothing lies below them, so kefu, the tests and the
benchmarks import it from here rather than each spelling the path again.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "KEFU_SHARED_DATA"


def shared_data_dir() -> Path:
    """The shared data folder (absolute; it may not exist: callers say what is missing and skip or stop)."""
    env = os.environ.get(ENV_VAR) or os.environ.get("KEFU_DATA_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2] / "shared" / "data"
