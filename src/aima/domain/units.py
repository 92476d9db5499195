"""Sizes as people write them."""

from __future__ import annotations


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
