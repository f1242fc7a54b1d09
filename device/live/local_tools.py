"""Tools the live layer answers itself, never the inventory: `end_session`.

Their declarations are merged with the warehouse tools' when the session is configured; the
conversation handles the calls (see `Conversation`).
"""

from __future__ import annotations

from typing import Any

END_SESSION = "end_session"

END_SESSION_DECLARATION: dict[str, Any] = {
    "name": END_SESSION,
    "description": (
        "End the conversation when the worker says they are done, for example \"that's all, "
        'thanks" or "bye". Say one short goodbye first; the device closes the session as soon '
        "as you finish speaking. Do not call it while a stock change waits for confirmation."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "A few words on why, for the device log, e.g. 'worker done'.",
            }
        },
    },
}


def with_local_tools(declarations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The given declarations plus the local ones they do not already name."""
    names = {d.get("name") for d in declarations}
    return [*declarations, *([END_SESSION_DECLARATION] if END_SESSION not in names else [])]
