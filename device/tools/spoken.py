"""Reading numbers, SKUs and bin codes back out of transcribed speech.

Transcripts say the same thing many ways: "500", "five hundred"; "A-12-03", "A twelve oh
three", "aisle A, bay twelve, level three"; "104417", "one zero four four one seven". This
module turns a transcript into tokens (words, numbers, breaks) and finds codes and quantities
in them, so the consent rules can compare what was said with the change that will be made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9}  # fmt: skip
_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_ZERO_LETTERS = ("oh", "o")
_NATO = {"alpha": "a", "alfa": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e",
         "foxtrot": "f", "golf": "g", "hotel": "h", "india": "i", "juliet": "j", "juliett": "j",
         "kilo": "k", "lima": "l", "mike": "m", "november": "n", "oscar": "o", "papa": "p",
         "quebec": "q", "romeo": "r", "sierra": "s", "tango": "t", "uniform": "u",
         "victor": "v", "whiskey": "w", "xray": "x", "yankee": "y", "zulu": "z"}  # fmt: skip
# Words people put around the parts of a bin code or a SKU when they read it out.
CODE_FILLERS = frozenset(
    ("aisle", "bay", "level", "shelf", "row", "bin", "slot", "position", "location", "dash",
     "sku", "item", "number", "task", "pick", "from", "in", "at")
)  # fmt: skip
BREAK = ","


@dataclass(frozen=True)
class Token:
    """A word, a number (`value` and the digits as written or spoken), or a break (`,`)."""

    text: str
    value: int | None = None
    digits: str = ""

    @property
    def is_number(self) -> bool:
        return self.value is not None


def _raw(text: str) -> list[str]:
    text = text.lower().replace("'", "").replace("\u2019", "")
    # Letters and digits split apart ("a12" is "a 12"); sentence punctuation is a break.
    return re.findall(r"[a-z]+|[0-9]+|[.,;:!?]", text)


def _below_100(words: list[str], i: int) -> tuple[int, int] | None:
    if i >= len(words):
        return None
    w = words[i]
    if w in _TEENS:
        return _TEENS[w], i + 1
    if w in _TENS:
        if i + 1 < len(words) and words[i + 1] in _UNITS and _UNITS[words[i + 1]] > 0:
            return _TENS[w] + _UNITS[words[i + 1]], i + 2
        return _TENS[w], i + 1
    if w in _UNITS and _UNITS[w] > 0:
        return _UNITS[w], i + 1
    return None


def _below_1000(words: list[str], i: int) -> tuple[int, int] | None:
    head: tuple[int, int] | None
    if i < len(words) and words[i] == "a" and i + 1 < len(words) and words[i + 1] == "hundred":
        head = (1, i + 1)
    else:
        head = _below_100(words, i)
    if head is None:
        return None
    value, j = head
    if value < 10 and j < len(words) and words[j] == "hundred":
        value, j = value * 100, j + 1
        j2 = j + 1 if j < len(words) and words[j] == "and" else j
        rest = _below_100(words, j2)
        if rest is not None:
            value, j = value + rest[0], rest[1]
    return value, j


def _number(words: list[str], i: int) -> tuple[int, int] | None:
    """The longest number spelled out in words starting at `i`, and where it ends."""
    if i < len(words) and words[i] == "a" and i + 1 < len(words) and words[i + 1] == "thousand":
        head: tuple[int, int] | None = (1, i + 1)
    else:
        head = _below_1000(words, i)
    if head is None:
        return None
    value, j = head
    if j < len(words) and words[j] == "thousand":
        value, j = value * 1000, j + 1
        j2 = j + 1 if j < len(words) and words[j] == "and" else j
        rest = _below_1000(words, j2)
        if rest is not None:
            value, j = value + rest[0], rest[1]
    return value, j


def tokens(text: str) -> list[Token]:
    """Words with spelled-out numbers joined: "move five hundred" -> move, 500.

    Single digits stay apart ("one zero four" is 1, 0, 4), so a SKU read digit by digit is
    found by joining digits; "oh" is a zero only next to another number.
    """
    words = _raw(text)
    out: list[Token] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ".,;:!?":
            out.append(Token(BREAK))
            i += 1
        elif w.isdigit():
            out.append(Token(w, int(w), w))
            i += 1
        elif w == "zero":
            out.append(Token(w, 0, "0"))
            i += 1
        elif (found := _number(words, i)) is not None:
            value, j = found
            out.append(Token(" ".join(words[i:j]), value, str(value)))
            i = j
        else:
            out.append(Token(w))
            i += 1
    # "Oh" is a zero only next to another number ("twelve oh three"), never "oh, confirm".
    for k, tok in enumerate(out):
        if tok.text in _ZERO_LETTERS:
            before = k > 0 and out[k - 1].is_number
            after = k + 1 < len(out) and out[k + 1].is_number
            if before or after:
                out[k] = Token(tok.text, 0, "0")
    return out


def _letters(tok: Token) -> str | None:
    if tok.is_number or tok.text == BREAK:
        return None
    return _NATO.get(tok.text, tok.text) if tok.text.isalpha() else None


def _code_parts(code: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+", code.lower())


def _match_part(toks: list[Token], i: int, part: str) -> list[int]:
    """Every index where `part` of a code can end, when it starts at token `i`."""
    ends: list[int] = []
    if part.isdigit():
        joined = ""
        for j in range(i, len(toks)):
            tok = toks[j]
            if not tok.is_number:
                break
            joined += tok.digits
            if joined == part or (j == i and tok.value == int(part)):
                ends.append(j + 1)
            if len(joined) >= len(part):
                break
    else:
        joined = ""
        for j in range(i, len(toks)):
            letters = _letters(toks[j])
            if letters is None:
                break
            joined += letters
            if joined == part:
                ends.append(j + 1)
            if not part.startswith(joined):
                break
    return ends


def _skip_fillers(toks: list[Token], i: int) -> int:
    while i < len(toks) and (toks[i].text == BREAK or toks[i].text in CODE_FILLERS):
        i += 1
    return i


def _match_from(toks: list[Token], i: int, parts: list[str]) -> int | None:
    if not parts:
        return i
    for end in _match_part(toks, i, parts[0]):
        rest = _match_from(toks, _skip_fillers(toks, end) if parts[1:] else end, parts[1:])
        if rest is not None:
            return rest
    return None


def find_code(toks: list[Token], code: str) -> list[tuple[int, int]]:
    """Every span [start, end) of `toks` that reads `code` (a SKU, bin code or task id)."""
    parts = _code_parts(code)
    spans: list[tuple[int, int]] = []
    i = 0
    while parts and i < len(toks):
        end = _match_from(toks, i, parts)
        if end is not None and end > i:
            spans.append((i, end))
            i = end
        else:
            i += 1
    return spans


# Words said between the parts of one code ("aisle A, bay twelve"), unlike those that start one
# ("from", "sku"): speech cut off among them may have stopped inside a code.
_WITHIN_CODE = frozenset(("aisle", "bay", "level", "shelf", "row", "bin", "slot", "position",
                          "location", "dash", "number"))  # fmt: skip
_NUMBER_WORDS = (*_UNITS, *_TEENS, *_TENS, "hundred", "thousand")


def _inside_code(tok: Token) -> bool:
    return (
        tok.is_number
        or tok.text == BREAK
        or tok.text in _WITHIN_CODE
        or (tok.text.isalpha() and (len(tok.text) == 1 or tok.text in _NATO))
    )


def before_cut(toks: list[Token]) -> list[Token]:
    """The tokens of speech cut off mid-way, without what the cut may have split: a number or
    a code it stopped inside ("five" of "five hundred", "A 12" of "A-12-03", "hun" of
    "hundred"). Speech cut after a break ended a clause and loses nothing."""
    end = len(toks)
    if end and toks[-1].text.isalpha() and not toks[-1].is_number:
        last = toks[-1].text
        if any(w.startswith(last) and w != last for w in _NUMBER_WORDS):
            end -= 1
    if end and toks[end - 1].text == BREAK:
        return toks[:end]
    while end and _inside_code(toks[end - 1]):
        end -= 1
    return toks[:end]


def numbers_outside(toks: list[Token], spans: list[tuple[int, int]]) -> list[int]:
    """The numbers said outside the given spans (quantities, not parts of codes)."""
    inside = {k for start, end in spans for k in range(start, end)}
    return [t.value for k, t in enumerate(toks) if t.value is not None and k not in inside]


def words_outside(toks: list[Token], spans: list[tuple[int, int]]) -> list[str]:
    inside = {k for start, end in spans for k in range(start, end)}
    return [
        t.text
        for k, t in enumerate(toks)
        if k not in inside and not t.is_number and t.text != BREAK
    ]
