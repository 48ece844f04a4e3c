"""Finding and masking card numbers (PANs) in raw input bytes, however they are written.

Pure, no service imports: the shard's decoder calls :func:`holds_card_number` on every record's key and
value (a record that holds one is dead-lettered as ``card_data`` before anything reaches state, an output
or a log), and :func:`mask_card_numbers` masks the copies that do leave (dead letters, their headers, log
lines).

What counts as a card number: 13-19 digits that pass the Luhn check and start with a major industry
identifier of the card networks (2-6: Mastercard 2-series and 5, Amex/Diners/JCB 3, Visa 4, Discover/
UnionPay/Maestro 6). The 2-6 rule keeps epoch-millisecond timestamps (13 digits starting with 1 until the
year 2286) from reading as card numbers. The digits may be written

- with separators between them: space, tab, dash, dot, slash (JSON ``\\/`` too), up to three in a row
  (``"4111 1111 1111 1111"``, ``"4111-1111-1111-1111"``, ``"4111 - 1111..."``), Unicode spaces and dashes
  (no-break space, en dash, ...) count as separators;
- as any Unicode decimal digit (full-width U+FF14, Arabic-Indic, Devanagari, ...);
- as JSON ``\\u0034``-style escapes, of digits or of separators.

A run of such digits is looked at group by group: a card number must start at the beginning of the run
or right after a separator, and end at its end or right before a separator, so a PAN followed by its
CVV or expiry date (``"4111111111111111 123"``, ``"4111 1111 1111 1111 12/27"``) is found, while a long
identifier made of digits is judged as a whole, not by every 16-digit window of it (which would flag most
of them). A digit run inside a UUID or a hex digest is not judged at all (see ``_in_hex_identifier``).
Luhn passes one random number in ten: a 13-19 digit identifier starting with 2-6 reads as a card number
with that probability, which is why identifiers should not be long digit strings.

Cost: ordinary ASCII records (no ``\\u`` escape) are cleared by a precheck of two C passes over the bytes
(about a microsecond for a typical event, see :func:`_no_candidate`); only a hit (13 digits with only
separators between them, e.g. an epoch-millisecond timestamp) runs the exact bytes regex, and only a
non-ASCII byte or an escape takes the slower path that normalises the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MIN_DIGITS = 13
MAX_DIGITS = 19
_MAX_SEPARATORS = 3
_CARD_FIRST_DIGITS = frozenset(b"23456")

_ASCII_SEP = rb"(?:[ \t./-]|\\/)"
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DELETED_BYTES = b" \t./-\\"
"""separators (the backslash of JSON's ``\\/`` too)"""
_THIRTEEN_ZEROS = b"0" * MIN_DIGITS
_ASCII_RUN = re.compile(rb"[0-9](?:" + _ASCII_SEP + rb"{0,%d}[0-9])*" % _MAX_SEPARATORS)
"""a maximal run of ASCII digits and separators, starting and ending with a digit"""

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\/")
_SEP_CHARS = frozenset(" \t./-")
_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _LETTERS | frozenset(b"0123456789-")
_HEX_ID = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    rb"|(?=[0-9]*[a-fA-F])[0-9a-fA-F]{24,}"
)


def _luhn_ok(digits: bytes) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ch - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(digits: bytes) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits[0] in _CARD_FIRST_DIGITS and _luhn_ok(digits)


def _card_spans(groups: list[bytes]) -> list[tuple[int, int]]:
    """(first group, end group) of every card number in a run split into its digit groups, leftmost and
    longest first; found numbers do not overlap."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(groups)
    while i < n:
        found = None
        length = 0
        for j in range(i, n):
            length += len(groups[j])
            if length > MAX_DIGITS:
                break
            if length >= MIN_DIGITS and _is_card(b"".join(groups[i : j + 1])):
                found = j + 1
        if found is None:
            i += 1
        else:
            spans.append((i, found))
            i = found
    return spans


def _groups(run: bytes) -> list[tuple[int, int]]:
    """(start, end) of each group of consecutive ASCII digits in ``run``."""
    return [m.span() for m in re.finditer(rb"[0-9]+", run)]


# --- normalising non-ASCII and escaped text ----------------------------------------------------------


def _normalise(raw: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """ASCII text where every escape is resolved, every digit-like character is an ASCII digit, every
    separator-like one an ASCII separator (any other non-ASCII character becomes ``_``), and for each of
    its bytes the span of ``raw`` it stands for. Invalid UTF-8 bytes stay non-digits."""
    text = raw.decode("utf-8", "surrogateescape")
    out = bytearray()
    spans: list[tuple[int, int]] = []
    pos = 0  # byte offset in raw
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            m = _ESCAPE.match(text, i)
            if m is not None:
                width = m.end() - m.start()  # escapes are ASCII: chars == bytes
                unescaped = chr(int(m.group(1), 16)) if m.group(1) else "/"
                out += _classify(unescaped)
                spans.append((pos, pos + width))
                pos += width
                i = m.end()
                continue
        width = 1 if ch < "\x80" else len(ch.encode("utf-8", "surrogateescape"))
        out += _classify(ch)
        spans.append((pos, pos + width))
        pos += width
        i += 1
    return bytes(out), spans


def _classify(ch: str) -> bytes:
    if ch < "\x80":
        return ch.encode()
    if "\udc80" <= ch <= "\udcff":  # an undecodable byte
        return b"_"
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit).encode()
    category = unicodedata.category(ch)
    if category == "Zs":
        return b" "
    if category == "Pd":
        return b"-"
    return b"_"


# --- the API -----------------------------------------------------------------------------------------


def _no_candidate(raw: bytes) -> bool:
    """The fast precheck of ASCII bytes without ``\\u`` escapes: with every separator byte deleted and
    every digit made ``0``, no 13 zeros in a row means no 13 digits separated only by separators, hence
    no card number. Two C passes over the bytes (``translate``, then a substring search)."""
    return _THIRTEEN_ZEROS not in raw.translate(_ZERO_DIGITS, _DELETED_BYTES)


def holds_card_number(raw: bytes) -> bool:
    """True when ``raw`` holds a card number in any of the forms the module docstring lists."""
    plain = raw.isascii() and b"\\u" not in raw
    if plain and _no_candidate(raw):
        return False
    buf = raw if plain else _normalise(raw)[0]
    return next(_card_spans_in(buf), None) is not None


def _in_hex_identifier(buf: bytes, start: int, end: int) -> bool:
    """Whether the digit run ``buf[start:end]`` is part of a hexadecimal identifier: the word around it
    (letters, digits and dashes) is a UUID, or 24 or more hex digits with a letter among them (an
    ObjectId, a digest).

    UUIDs and digests hold long digit runs often enough (a UUID whose first three groups are digits, a
    digest with 13 digits in a row) that judging those runs alone would dead-letter a valid event now and
    then. Anything else is judged by its digits: ``tok_4111...``, ``e-4111...``, ``pay 4111 ...``."""
    s, e = start, end
    while s > 0 and buf[s - 1] in _WORD:
        s -= 1
    while e < len(buf) and buf[e] in _WORD:
        e += 1
    return _HEX_ID.fullmatch(buf, s, e) is not None


def _card_spans_in(buf: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) in ``buf`` (ASCII, normalised) of every card number, in order."""
    for m in _ASCII_RUN.finditer(buf):
        if m.end() - m.start() < MIN_DIGITS or _in_hex_identifier(buf, m.start(), m.end()):
            continue
        for s, e in _run_spans(m.group()):
            yield m.start() + s, m.start() + e


def _run_spans(run: bytes) -> list[tuple[int, int]]:
    """Byte spans (within ``run``) of the card numbers in one run."""
    groups = _groups(run)
    spans = _card_spans([run[s:e] for s, e in groups])
    return [(groups[a][0], groups[b - 1][1]) for a, b in spans]


def mask_card_numbers(raw: bytes) -> tuple[bytes, bool]:
    """``raw`` with every digit of every card number replaced by ``*`` (an escaped or multi-byte digit by
    one ``*``), and whether there was any. Separators and everything else are kept, so masked JSON stays
    JSON and a reader still sees where the number was."""
    plain = raw.isascii() and b"\\u" not in raw
    if plain and _no_candidate(raw):
        return raw, False
    if plain:
        out = bytearray(raw)
        for s, e in _card_spans_in(raw):
            for k in range(s, e):
                if 48 <= out[k] <= 57:
                    out[k] = 42  # "*"
        return (bytes(out), True) if out != raw else (raw, False)
    normal, spans = _normalise(raw)
    masked_positions = [k for s, e in _card_spans_in(normal) for k in range(s, e) if 48 <= normal[k] <= 57]
    if not masked_positions:
        return raw, False
    masked = bytearray()
    last = 0
    for k in masked_positions:
        start, end = spans[k]
        masked += raw[last:start]
        masked += b"*"
        last = end
    masked += raw[last:]
    return bytes(masked), True


def mask_text(text: str) -> str:
    """:func:`mask_card_numbers` for a ``str`` (log lines)."""
    raw = text.encode("utf-8", "surrogateescape")
    masked, found = mask_card_numbers(raw)
    return masked.decode("utf-8", "surrogateescape") if found else text


CARD_DATA_DETAIL = (
    "holds what reads as a card number (13-19 digits passing the Luhn check); card data must be "
    "tokenised before it reaches clickcash, and the dead letter's copy is masked"
)


def card_data_field(key: bytes | None, value: bytes) -> str | None:
    """``"key"`` or ``"value"``: the part of a record that holds a card number, else None."""
    if key is not None and holds_card_number(key):
        return "key"
    return "value" if holds_card_number(value) else None
