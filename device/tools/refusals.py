"""The answers the model gets when a stock change is not committed, and why not.

Each says what the worker hears (`speakable`) and what the model must do next (`detail`):
read back again, wait for the worker, propose again, or sign on first.
"""

from __future__ import annotations

from typing import Any

from device.tools import results
from device.tools.consent import PendingAction, Stage
from device.tools.declarations import WRITE_TOOLS


def not_confirmed(pending: PendingAction) -> dict[str, Any]:
    again = f"Not done yet. {pending.readback} {results.CONFIRM_PROMPT}"
    if pending.stage == Stage.PROPOSED and pending.misses:
        return results.result(
            "refused",
            "READBACK_MISMATCH",
            again,
            valid_options=["confirm", "cancel"],
            detail="what you said did not match the change (its quantity and its SKU or bins); "
            "read back `speakable` word for word, then wait for the worker",
        )
    if pending.stage == Stage.PROPOSED:
        return results.result(
            "refused",
            "NOT_READ_BACK",
            again,
            valid_options=["confirm", "cancel"],
            detail="the change was not read back yet (not confirmed); say `speakable` word for "
            "word, then wait for the worker to say confirm or press the button",
        )
    return results.result(
        "refused",
        "NOT_CONFIRMED",
        again,
        valid_options=["confirm", "cancel"],
        detail="the worker has not confirmed; wait for them to say confirm or press the "
        "button, then call again",
    )


def closed_result(last: PendingAction | None) -> dict[str, Any]:
    if last is not None and last.stage == Stage.DECLINED:
        return results.result(
            "refused",
            "DECLINED",
            "Okay, not done. What should I change?",
            valid_options=list(WRITE_TOOLS),
            detail="the worker did not confirm the change as read back; nothing was changed. "
            "Ask what they want, then propose the change again with its tool",
        )
    if last is not None and last.stage == Stage.HANDED_OFF:
        return results.result(
            "refused",
            "HANDED_OFF",
            "I couldn't read that change back correctly, so I've asked a supervisor to help.",
            detail="the read-back did not match the change twice; the change was dropped and "
            "a person was called",
        )
    return nothing_pending()


def sign_on_first() -> dict[str, Any]:
    return results.error(
        "SIGN_ON_REQUIRED",
        "Please sign on first: scan your badge or say your operator number.",
        valid_options=["sign_on"],
        detail="nobody is signed on to this device and it refuses unsigned writes; call "
        "sign_on with the operator number the worker says, or badge=true",
    )


def nothing_pending() -> dict[str, Any]:
    return results.error(
        "NO_PENDING_ACTION",
        "There is nothing waiting for confirmation.",
        detail="propose the change again with its tool first",
    )
