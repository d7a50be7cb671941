"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests never read the operator's environment config.
for _name in list(os.environ):
    if _name.startswith("HEDGERD_"):
        del os.environ[_name]
