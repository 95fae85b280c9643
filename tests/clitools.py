"""Running the installed ``archsmith`` command as a user does, in a private home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "archsmith"


def env_for(tmp_path: Path) -> dict[str, str]:
    """The environment without API keys, with archsmith's home (and run store) under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("ARCHSMITH_STORE", None)
    return {**env, "ARCHSMITH_HOME": str(tmp_path / "home"), "COLUMNS": "200", "NO_COLOR": "1"}
