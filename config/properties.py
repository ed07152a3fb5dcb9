"""Java ``.properties`` files, parsed exactly as ``java.util.Properties.load`` does.

Kafka reads ``server.properties`` with ``Properties.load``; operators copy files between
Kafka and pybroker, so a file must mean the same thing to both. This is a port of the
JDK's ``LineReader``/``load0``/``loadConvert``, quirks included:

- a natural line whose first non-blank character (space, tab, form feed) is ``#`` or
  ``!`` is a comment; a comment never continues onto the next line;
- a line ending in an odd number of backslashes continues on the next line, whose
  leading blanks are dropped; a continuation line that starts with ``#`` is data,
  unless everything before it was a lone ``\\`` (then the logical line is still empty
  and Java treats it as a comment);
- the key ends at the first unescaped ``=``, ``:`` or blank; blanks after the key and
  then one ``=`` or ``:`` (and the blanks after it) are skipped; the rest is the value,
  trailing blanks included;
- escapes: ``\\t \\n \\r \\f \\uXXXX``; a backslash before any other character is that
  character (``\\=``, ``\\:``, ``\\ ``, ``\\\\``, ``\\#``, ``\\b`` -> ``b``); a malformed
  ``\\uXXXX`` is an error, as in Java;
- a later duplicate key wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

_BLANKS = " \t\f"
_EOL = "\r\n"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class PropertiesError(ValueError):
    """The text cannot be loaded (Java throws IllegalArgumentException for the same input)."""


def _logical_lines(text: str) -> Iterator[str]:
    """Yield logical lines as JDK ``Properties.LineReader.readLine`` returns them."""
    i, n = 0, len(text)
    buf: list[str] = []
    skip_blanks = True  # at the start of a natural line: drop leading blanks
    appended = False  # the natural line being started continues the previous one
    backslash = False  # the last char in buf is an unpaired backslash
    while True:
        if i >= n:
            if buf:
                if backslash:
                    buf.pop()
                yield "".join(buf)
            return
        c = text[i]
        i += 1
        if skip_blanks:
            if c in _BLANKS:
                continue
            if not appended and c in _EOL:
                continue
            skip_blanks = False
            appended = False
        if not buf and c in "#!":
            # Comment: skip the rest of the natural line; the EOL is skipped as a blank.
            while i < n and text[i] not in _EOL:
                i += 1
            skip_blanks = True
            continue
        if c not in _EOL:
            buf.append(c)
            backslash = not backslash if c == "\\" else False
            continue
        # End of a natural line.
        if not buf:
            skip_blanks = True
            continue
        if i >= n:
            if backslash:
                buf.pop()
            yield "".join(buf)
            return
        if backslash:
            buf.pop()  # the continuation backslash is not part of the line
            skip_blanks = True
            appended = True
            backslash = False
            if c == "\r" and text[i] == "\n":
                i += 1
        else:
            yield "".join(buf)
            buf = []
            skip_blanks = True
            appended = False
            backslash = False


def _unescape(raw: str) -> str:
    """JDK ``loadConvert``: resolve backslash escapes in a key or value."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        c = raw[i]  # in range: the line reader drops an unpaired trailing backslash
        i += 1
        if c == "u":
            digits = raw[i : i + 4]
            if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(c, c))
    text = "".join(out)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        # Java strings are UTF-16: "\ud83d\ude00" is one character there, so join pairs.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def _split(line: str) -> tuple[str, str]:
    """JDK ``load0``: split one logical line into its raw key and raw value."""
    limit = len(line)
    key_len = 0
    value_start = limit
    has_sep = False
    backslash = False
    while key_len < limit:
        c = line[key_len]
        if c in "=:" and not backslash:
            value_start = key_len + 1
            has_sep = True
            break
        if c in _BLANKS and not backslash:
            value_start = key_len + 1
            break
        backslash = not backslash if c == "\\" else False
        key_len += 1
    while value_start < limit:
        c = line[value_start]
        if c not in _BLANKS:
            if not has_sep and c in "=:":
                has_sep = True
            else:
                break
        value_start += 1
    return line[:key_len], line[value_start:]


def parse_properties(text: str) -> dict[str, str]:
    """Parse ``.properties`` text into a dict; a later duplicate key wins."""
    props: dict[str, str] = {}
    for number, line in enumerate(_logical_lines(text), 1):
        raw_key, raw_value = _split(line)
        try:
            props[_unescape(raw_key)] = _unescape(raw_value)
        except PropertiesError as e:
            raise PropertiesError(f"{e} (logical line {number}: {line!r})") from None
    return props


def load_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """Load a ``.properties`` file.

    Java's ``Properties.load(InputStream)`` (what Kafka uses) decodes ISO-8859-1, which
    turns UTF-8 paths and values into mojibake. We decode UTF-8 (a leading BOM is dropped)
    and fall back to ISO-8859-1 only for bytes that are not UTF-8, so every ASCII file
    reads exactly as Kafka reads it and every file Kafka can load, we can load.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")
    return parse_properties(text)
