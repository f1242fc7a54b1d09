"""The appliance rigs from tests/live, shared (loaded under another name to avoid a clash)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).parents[1] / "live" / "conftest.py"
_spec = importlib.util.spec_from_file_location("live_rigs", _PATH)
assert _spec is not None and _spec.loader is not None
live_rigs = importlib.util.module_from_spec(_spec)
sys.modules["live_rigs"] = live_rigs
_spec.loader.exec_module(live_rigs)

rig_factory = live_rigs.rig_factory
mic_script = live_rigs.mic_script
