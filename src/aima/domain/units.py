"""Sizes as people write them."""

from __future__ import annotations

# What ``parse_bytes`` takes, as a JSON Schema pattern clients can read: a byte count from 1 to 18 digits, up to
# 999999 of K/M/G/T (B, iB), or a fraction of at least 0.001 M/G/T, so every size it allows is in range.
SIZE_PATTERN = (r"^(0*[1-9][0-9]{0,17}(\.[0-9]+)?\s*[bB]?|0*[1-9][0-9]{0,5}(\.[0-9]+)?\s*[kKmMgGtT]([iI]?[bB])?"
                r"|0*\.[0-9]{0,2}[1-9][0-9]*\s*[mMgGtT]([iI]?[bB])?)$")


def parse_bytes(text: str) -> int:
    """``2GiB``, ``512MB`` or a plain number of bytes; ``ValueError`` saying what is wrong."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        n = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise ValueError(f"{text!r} is not a size like 2GiB or 512MiB") from None
    if n <= 0 or n >= 2**62:
        raise ValueError(f"{text!r} is out of range")
    return n


def size_text(n: int) -> str:
    """A byte count in GiB or MiB, for messages."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
