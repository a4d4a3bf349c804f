"""JSON kept in a table property: how it is written, and how the table counts its size.

A table string property holds at most 64 KiB of UTF-16, that is 32K characters of the BMP; a write
over it is refused (PropertyValueTooLarge), so anything that grows (payloads, results, the errors
of a job's attempts) is measured the way the table measures it before it is written.
"""

from __future__ import annotations

import json
import re
from typing import Any

# What JSON kept in one property stays under, with a margin below the 32K the table allows.
PROPERTY_CHARS = 30_000
_SURROGATE = re.compile("[\ud800-\udfff]")


def property_json(value: Any) -> str:
    """A JSON value as a table property keeps it: compact, with text as is (`é` is 1 character,
    not the 6 of the `\\u00e9` escape Python writes by default). A lone surrogate, which JSON can
    carry but a store of UTF-16 text need not accept, is kept as its escape."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # only a surrogate cannot be: in a str, it is always a lone one
            return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
    return text


def property_chars(text: str) -> int:
    """A string's size as a table counts it: UTF-16 code units (a character past U+FFFF counts 2)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
