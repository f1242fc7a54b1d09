"""Suite-wide checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from device import state_table


@pytest.fixture(autouse=True)
def no_illegal_state_transitions() -> Iterator[None]:
    """Any state change the appliance's table does not allow fails the test that caused it."""
    state_table.ILLEGAL.clear()
    yield
    illegal = list(state_table.ILLEGAL)
    state_table.ILLEGAL.clear()
    assert not illegal, f"illegal state transitions: {illegal}"
