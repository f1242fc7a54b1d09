"""BCM pin names as the panel accepts them from config."""

from __future__ import annotations

import re

_BCM = re.compile(r"^(?:GPIO|BCM)(\d{1,2})$")
# The 40-pin header exposes BCM 0-27; anything above is a typo or a board we do not support.
MAX_BCM = 27


class PanelConfigError(ValueError):
    """A panel setting a person must fix; the message names the key and the fix."""


def bcm_pin(name: str, key: str) -> str:
    """Return `name` in gpiozero's canonical 'GPIOn' spelling, or explain what is wrong."""
    match = _BCM.match(name.strip().upper()) if isinstance(name, str) else None
    if match is None or int(match.group(1)) > MAX_BCM:
        raise PanelConfigError(
            f"{key}: {name!r} is not a BCM pin name; write it like 'GPIO17' "
            f"(BCM numbering, GPIO0-GPIO{MAX_BCM}, not the physical header position)"
        )
    return f"GPIO{int(match.group(1))}"
