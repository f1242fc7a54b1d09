from __future__ import annotations

import pytest

from device.tools.speech import digits_words, number_words, spoken_location


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (5, "five"),
        (13, "thirteen"),
        (38, "thirty-eight"),
        (40, "forty"),
        (105, "one hundred five"),
        (1205, "one thousand two hundred five"),
        (9999, "nine thousand nine hundred ninety-nine"),
        (-2, "minus two"),
    ],
)
def test_numbers_are_read_as_words(n: int, words: str) -> None:
    assert number_words(n) == words


def test_bins_and_digits_are_read_unambiguously() -> None:
    assert spoken_location("A-12-03") == "aisle A, bay twelve, level three"
    assert spoken_location("QA-1-B") == "Q A, one, B"
    assert digits_words("104417") == "one zero four four one seven"
