"""A code's own checks: what lets one read at full size be trusted without a second view.

An EAN/UPC carries a mod-10 check digit; a GS1 element string has a fixed grammar (known
application identifiers, fixed lengths, numeric fields, check digits, dates); a bin label
follows the site's location pattern. A payload that passes none of these (a free-text Code 128)
has only the symbology's own checksum, so it still needs two views that agree.
"""

from __future__ import annotations

import re

# The warehouse's location grammar (DESIGN.md §6), as printed on bin labels.
LOCATION = re.compile(r"^[A-Z0-9]{1,4}(-[A-Z0-9]{1,4}){1,4}$")
GS = "\x1d"

# Application identifiers we check: AI -> (fixed length or None for variable, max length,
# numeric only, has a mod-10 check digit, is a YYMMDD date). Covers what warehouse labels carry
# (SSCC, GTIN, batch, dates, serial, counts, weights, ship-to); any other AI fails the check and
# the code falls back to the vote.
_AI: dict[str, tuple[int | None, int, bool, bool, bool]] = {
    "00": (18, 18, True, True, False),
    "01": (14, 14, True, True, False),
    "02": (14, 14, True, True, False),
    "10": (None, 20, False, False, False),
    "11": (6, 6, True, False, True),
    "12": (6, 6, True, False, True),
    "13": (6, 6, True, False, True),
    "15": (6, 6, True, False, True),
    "16": (6, 6, True, False, True),
    "17": (6, 6, True, False, True),
    "20": (2, 2, True, False, False),
    "21": (None, 20, False, False, False),
    "22": (None, 20, False, False, False),
    "30": (None, 8, True, False, False),
    "37": (None, 8, True, False, False),
    "240": (None, 30, False, False, False),
    "241": (None, 30, False, False, False),
    "250": (None, 30, False, False, False),
    "400": (None, 30, False, False, False),
    "410": (13, 13, True, True, False),
    "411": (13, 13, True, True, False),
    "412": (13, 13, True, True, False),
    "413": (13, 13, True, True, False),
    "414": (13, 13, True, True, False),
    "420": (None, 20, False, False, False),
}
# Measures (31nn-36nn): four-digit AIs with six digits; the last AI digit is the decimals.
_MEASURE = re.compile(r"^3[1-6][0-9][0-9]$")
# GS1 character set 82 (ISO 646 subset) for alphanumeric fields.
_CSET82 = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]*$")


def mod10_ok(digits: str) -> bool:
    """The GS1 check digit (EAN-8/13, UPC-A, GTIN-14, SSCC, GLN) of `digits` holds."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def gs1_elements(payload: str) -> list[tuple[str, str]] | None:
    """The (AI, value) pairs of a GS1 element string (GS-separated), or None if any rule fails."""
    elements: list[tuple[str, str]] = []
    rest = payload.removeprefix(GS)
    while rest:
        ai = next((a for a in (rest[:2], rest[:3], rest[:4]) if a in _AI), None)
        if ai is None and _MEASURE.match(rest[:4]):
            ai = rest[:4]
        if ai is None:
            return None
        fixed, longest, numeric, check, date = _AI.get(ai, (6, 6, True, False, False))
        rest = rest[len(ai) :]
        if fixed is not None:
            value, rest = rest[:fixed], rest[fixed:]
            if len(value) != fixed:
                return None
            rest = rest.removeprefix(GS)  # an encoder may put a needless separator here
        else:
            value, _, rest = rest.partition(GS)
            if not 1 <= len(value) <= longest:
                return None
        if numeric and not value.isdigit():
            return None
        if not numeric and not _CSET82.match(value):
            return None
        if check and not mod10_ok(value):
            return None
        if date and not _date_ok(value):
            return None
        elements.append((ai, value))
    return elements or None


def _date_ok(yymmdd: str) -> bool:
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= month <= 12 and 0 <= day <= 31  # day 00: the end of the month


def gs1_hri(elements: list[tuple[str, str]]) -> str:
    """The human-readable form printed under a GS1 symbol: (01)09506000134352(10)ABC123."""
    return "".join(f"({ai}){value}" for ai, value in elements)


def escape(text: str) -> str:
    """Control characters as visible backslash escapes (\\n, \\t, \\x1d), a backslash doubled:
    nothing a payload carries is lost, and nothing in it garbles speech or a log line."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)
