"""How each tool runs on a model with asynchronous function calls (Gemini 3.8 Live), and why.

3.8 runs calls NON_BLOCKING by default: the model may keep talking while a tool runs. A
`behavior: BLOCKING` declaration keeps the old mode, and the service cancels a BLOCKING call
when new input arrives. Each answer carries a `scheduling`: SILENT (into the context, nothing
said), WHEN_IDLE (said once the current output is over) or INTERRUPT (said at once). Models
without async tools (3.1 Flash Live) get neither field; the table says so.

- **Reads** (`find_item`, `get_stock`, `get_next_pick`, `verify_location`): NON_BLOCKING,
  answered WHEN_IDLE. A lookup takes a few hundred milliseconds against the site API; the
  worker hears the model say a short "checking" line instead of silence, and then the answer,
  after that line and never over it. If the worker speaks meanwhile, the lookup is not
  cancelled: its answer joins the context and is said once the worker's turn is answered.
- **Write proposals** (`move_stock`, `record_count`, `report_damage`, `confirm_pick`):
  BLOCKING, WHEN_IDLE. The proposal's answer is the read-back the worker must hear word for
  word before anything changes, so the model must not talk ahead of it (it would guess the
  outcome). When the worker speaks while a proposal runs, the service cancels the call
  (`toolCallCancellation`); the device then drops the pending proposal through the
  confirmation's cancel path, so no read-back is pending and a later "confirm" commits nothing.
  The worker's new words are what the model answers; it proposes again if it still should.
- **The commit** (`confirm_pending_action`) and `handoff_to_human`: BLOCKING, WHEN_IDLE. The
  model must not say "done" before the inventory says so.
- **`end_session`**: NON_BLOCKING, SILENT. The goodbye is already being said; the answer only
  tells the model the device will close.
- Any other tool (camera, future ones): BLOCKING, WHEN_IDLE, the behaviour every tool had on
  3.1, until someone decides otherwise here.

Every answer keeps its `status`, `speakable`, `retryable` and `valid_options` (DESIGN §6): an
empty or vague answer makes 3.8 call again 2 to 5 times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from google.genai import types

from device.live.models import ModelCaps
from device.tools.declarations import CONFIRM_TOOL, DIRECT_WRITE_TOOLS, READ_TOOLS, WRITE_TOOLS

Behavior = Literal["BLOCKING", "NON_BLOCKING"]
Scheduling = Literal["SILENT", "WHEN_IDLE", "INTERRUPT"]


@dataclass(frozen=True)
class ToolMode:
    behavior: Behavior
    scheduling: Scheduling


_DEFAULT = ToolMode("BLOCKING", "WHEN_IDLE")
MODES: dict[str, ToolMode] = {
    **{name: ToolMode("NON_BLOCKING", "WHEN_IDLE") for name in READ_TOOLS},
    **{name: ToolMode("BLOCKING", "WHEN_IDLE") for name in WRITE_TOOLS},
    **{name: ToolMode("BLOCKING", "WHEN_IDLE") for name in DIRECT_WRITE_TOOLS},
    CONFIRM_TOOL: ToolMode("BLOCKING", "WHEN_IDLE"),
    "end_session": ToolMode("NON_BLOCKING", "SILENT"),
}


def mode(name: str) -> ToolMode:
    return MODES.get(name, _DEFAULT)


def with_behavior(caps: ModelCaps, declarations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The declarations with each tool's `behavior`, for a model with async tools."""
    if not caps.async_tools:
        return declarations
    return [{**d, "behavior": mode(str(d.get("name") or "")).behavior} for d in declarations]


def scheduling(caps: ModelCaps, name: str) -> types.FunctionResponseScheduling | None:
    """The scheduling an answer to `name` carries (None on a model without async tools)."""
    if not caps.async_tools:
        return None
    return types.FunctionResponseScheduling(mode(name).scheduling)
