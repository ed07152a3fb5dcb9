"""java.util.Properties.load semantics for config/properties.py.

Every expectation in JAVA_CASES was produced by java.util.Properties.load (JDK 17) on the
same text when these tests were written (and a 3000-input random differential run agreed
with the parser); the tests themselves need no Java.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybroker.config.properties import PropertiesError, load_properties, parse_properties

# (case id, .properties text, what Properties.load produced)
JAVA_CASES = [
    ("basic", "a=1\nb:2\nc 3\n", {"a": "1", "b": "2", "c": "3"}),
    (
        "seps_ws",
        "key = value\nkey2 : v2\nkey3\t\tv3\nkey4  =  =v4\nkey5 :=v5\nkey6 ==v6\n",
        {"key": "value", "key2": "v2", "key3": "v3", "key4": "=v4", "key5": "=v5", "key6": "=v6"},
    ),
    ("leading_ws", "   indented=yes\n\t\x0cx=y\n", {"indented": "yes", "x": "y"}),
    (
        "comments",
        "# c1\n! c2\n   # indented comment\nk=v # not a comment\n#k2=v2\n",
        {"k": "v # not a comment"},
    ),
    ("comment_cont", "# comment \\\nnext=line\n", {"next": "line"}),
    ("cont", "k=a\\\n   b\\\n\tc\n", {"k": "abc"}),
    ("cont_hash", "k=a\\\n#b\n", {"k": "a#b"}),
    ("lone_bs_then_hash", "\\\n#x=1\ny=2\n", {"y": "2"}),
    (
        "escapes",
        "t=a\\tb\nn=a\\nb\nr=a\\rb\nf=a\\fb\nbs=a\\\\b\nother=\\b\\z\\#\\!\nu=\\u0041\\u00e9\\u20AC\n",
        {
            "bs": "a\\b",
            "f": "a\x0cb",
            "n": "a\nb",
            "other": "bz#!",
            "r": "a\rb",
            "t": "a\tb",
            "u": "A\u00e9\u20ac",
        },
    ),
    (
        "esc_keys",
        "my\\ key=1\na\\=b=2\nc\\:d:3\ne\\\\=4\n",
        {"a=b": "2", "c:d": "3", "e\\": "4", "my key": "1"},
    ),
    ("dupes", "a=1\na=2\nb=x\na=3\n", {"a": "3", "b": "x"}),
    ("empty_value", "a=\nb\nc   \nd:\n", {"a": "", "b": "", "c": "", "d": ""}),
    ("trailing_ws", "a=value   \nb=v\\ \n", {"a": "value   ", "b": "v "}),
    ("crlf", "a=1\r\nb=2\r\nc=x\\\r\n  y\r\n", {"a": "1", "b": "2", "c": "xy"}),
    ("cr", "a=1\rb=2\rc=x\\\r  y\r", {"a": "1", "b": "2", "c": "xy"}),
    ("eof_bs", "a=1\\", {"a": "1"}),
    ("eof_bs2", "a=1\\\n", {"a": "1"}),
    ("lone_bs", "\\", {"": ""}),
    ("even_bs_eol", "a=x\\\\\nb=y\n", {"a": "x\\", "b": "y"}),
    ("odd_bs_eol", "a=x\\\\\\\nb=y\n", {"a": "x\\b=y"}),
    ("blank_cont", "a=x\\\n\nb=y\n", {"a": "x", "b": "y"}),
    ("blank_cont_ws", "a=x\\\n   \nb=y\n", {"a": "x", "b": "y"}),
    ("surrogates", "e=\\uD83D\\uDE00\n", {"e": "\U0001f600"}),
    ("nonascii", "k\u00e9=v\u20ac\n", {"k\u00e9": "v\u20ac"}),
    ("key_only_ws", "   \n\t\nkey\n", {"key": ""}),
    (
        "colon_in_value",
        "listeners=PLAINTEXT://:9092\nurl=http://x:1/y=z\n",
        {"listeners": "PLAINTEXT://:9092", "url": "http://x:1/y=z"},
    ),
    ("sep_escaped_ws", "a\\ b c\n", {"a b": "c"}),
    ("formfeed_sep", "a\x0cb\n", {"a": "b"}),
    ("bang_mid", "a=!x\n!b=1\n", {"a": "!x"}),
    ("ws_then_sep_only", "a :\n", {"a": ""}),
    ("unicode_sep", "a\\u003db=c\n", {"a=b": "c"}),
    ("cont_leading_eq", "a\\\n=b\n", {"a": "b"}),
    ("key_cont", "ke\\\n  y=v\n", {"key": "v"}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in JAVA_CASES], ids=[c[0] for c in JAVA_CASES]
)
def test_matches_java_properties_load(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1", {"a": "1"}),
        ("a:1", {"a": "1"}),
        ("a 1", {"a": "1"}),
        ("a\\ 1", {"a 1": ""}),  # an escaped blank is part of the key, not a separator
        ("a\\ =1", {"a ": "1"}),
        ("a\\=b=1", {"a=b": "1"}),
        ("a:b=c", {"a": "b=c"}),  # the first unescaped separator wins
        ("a=b:c", {"a": "b:c"}),
        ("a b=c", {"a": "b=c"}),  # blank separator; the value starts at 'b', '=' is data
    ],
)
def test_first_unescaped_separator(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


def test_separator_whitespace_then_one_equals_is_consumed() -> None:
    # After a whitespace separator, blanks and ONE '=' or ':' are skipped (Java load0).
    assert parse_properties("k \t = v") == {"k": "v"}
    assert parse_properties("k   =   v") == {"k": "v"}
    assert parse_properties("k   :   v") == {"k": "v"}
    assert parse_properties("k = = v") == {"k": "= v"}


def test_comment_only_at_start_of_line() -> None:
    text = "# comment\n  ! also a comment\nkey=value#not-a-comment\nk2 = !bang\n"
    assert parse_properties(text) == {"key": "value#not-a-comment", "k2": "!bang"}


def test_comment_does_not_continue_even_with_trailing_backslash() -> None:
    assert parse_properties("# comment \\\nk=v\n") == {"k": "v"}


def test_continuation_drops_leading_whitespace_of_next_line() -> None:
    text = "listeners=PLAINTEXT://:9092,\\\n          PLAINTEXT2://:9093\n"
    assert parse_properties(text) == {"listeners": "PLAINTEXT://:9092,PLAINTEXT2://:9093"}


def test_continuation_keeps_trailing_whitespace_before_backslash() -> None:
    assert parse_properties("k=a \\\n   b") == {"k": "a b"}


def test_escapes() -> None:
    text = "k=\\t\\n\\r\\f\\\\\\u0041\\=\\:\\ \\#\\!\\q\n"
    assert parse_properties(text) == {"k": "\t\n\r\f\\A=: #!q"}


def test_unicode_escape_is_case_insensitive_hex() -> None:
    assert parse_properties("k=\\u00E9\\u00e9") == {"k": "\u00e9\u00e9"}


def test_surrogate_pair_escape_becomes_one_code_point() -> None:
    assert parse_properties("k=\\uD83D\\uDE00") == {"k": "\U0001f600"}


@pytest.mark.parametrize("text", ["a=\\u12", "a=\\uZZZZ", "a=\\u00g0", "\\u004=x"])
def test_malformed_unicode_escape_is_an_error(text: str) -> None:
    # Java: IllegalArgumentException("Malformed \\uxxxx encoding.")
    with pytest.raises(PropertiesError, match="Malformed"):
        parse_properties(text)


def test_properties_error_is_a_value_error() -> None:
    assert issubclass(PropertiesError, ValueError)


def test_escaped_separators_in_key() -> None:
    text = "listener.name\\=x=1\nhost\\:port:2\nwith\\ space 3\n"
    assert parse_properties(text) == {"listener.name=x": "1", "host:port": "2", "with space": "3"}


def test_later_duplicate_wins() -> None:
    assert parse_properties("num.partitions=1\nnum.partitions=3\n") == {"num.partitions": "3"}


def test_empty_text() -> None:
    assert parse_properties("") == {}
    assert parse_properties("\n\n   \n# only comments\n") == {}


def test_value_keeps_trailing_whitespace() -> None:
    # Properties keeps it; Kafka trims when it parses the typed value.
    assert parse_properties("k=v  \t") == {"k": "v  \t"}


def test_load_properties_utf8(tmp_path: Path) -> None:
    p = tmp_path / "server.properties"
    p.write_bytes("log.dirs=/data/caf\u00e9\n# \u00fcber\nk=\\u00e9\n".encode())
    assert load_properties(p) == {"log.dirs": "/data/caf\u00e9", "k": "\u00e9"}


def test_load_properties_strips_utf8_bom(tmp_path: Path) -> None:
    p = tmp_path / "server.properties"
    p.write_bytes(b"\xef\xbb\xbfbroker.id=1\n")
    assert load_properties(p) == {"broker.id": "1"}


def test_load_properties_latin1_fallback(tmp_path: Path) -> None:
    # Not UTF-8: read as ISO-8859-1, which is what Properties.load(InputStream) does.
    p = tmp_path / "server.properties"
    p.write_bytes(b"k=caf\xe9\n")
    assert load_properties(p) == {"k": "caf\u00e9"}


def test_load_properties_crlf(tmp_path: Path) -> None:
    p = tmp_path / "server.properties"
    p.write_bytes(b"a=1\r\nb=2\\\r\n  3\r\n")
    assert load_properties(p) == {"a": "1", "b": "23"}


def test_load_properties_accepts_str_path(tmp_path: Path) -> None:
    p = tmp_path / "x.properties"
    p.write_text("a=b\n")
    assert load_properties(str(p)) == {"a": "b"}


def test_load_properties_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_properties(tmp_path / "nope.properties")


def test_error_names_the_line() -> None:
    with pytest.raises(PropertiesError, match="logical line 2"):
        parse_properties("ok=1\nbad=\\uXYZ1\n")
