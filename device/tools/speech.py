"""Turning numbers and bin codes into words a text-to-speech voice reads unambiguously."""

from __future__ import annotations

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
         "ninety"]  # fmt: skip
_DIGITS = _ONES[:10]


def number_words(n: int) -> str:
    """0 -> "zero", 38 -> "thirty-eight", 1205 -> "one thousand two hundred five"."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")
    return " ".join(_DIGITS[int(d)] for d in str(n))


def digits_words(text: str) -> str:
    """Digit by digit, the way check digits and SKUs are read out: "104417" -> "one zero ..."."""
    return " ".join(_DIGITS[int(c)] if c.isdigit() else c for c in text)


def _segment(segment: str) -> str:
    if segment.isdigit():
        return number_words(int(segment))
    return " ".join(segment)


def spoken_location(code: str) -> str:
    """ "A-12-03" -> "aisle A, bay twelve, level three"; other shapes are read part by part."""
    parts = code.split("-")
    if len(parts) == 3 and parts[0].isalpha() and parts[1].isdigit() and parts[2].isdigit():
        return f"aisle {_segment(parts[0])}, bay {_segment(parts[1])}, level {_segment(parts[2])}"
    return ", ".join(_segment(part) for part in parts)
