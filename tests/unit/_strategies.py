"""Hypothesis strategies and constants shared by several unit-test modules."""

from __future__ import annotations

from hypothesis import strategies as st

VISA_TEST_PAN = "4111111111111111"
"""A Luhn-valid card number (the well-known Visa test PAN)."""


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check (computed independently of the product)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == number[-1]


@st.composite
def pans(draw: st.DrawFn, separators: bool = True) -> str:
    """A Luhn-valid card number of 13 to 19 digits, sometimes grouped with spaces or dashes."""
    length = draw(st.integers(min_value=13, max_value=19))
    first = draw(st.sampled_from("3456"))
    body = first + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2, max_size=length - 2))
    )
    digits = body + luhn_check_digit(body)
    if not separators or not draw(st.booleans()):
        return digits
    sep = draw(st.sampled_from([" ", "-"]))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())
