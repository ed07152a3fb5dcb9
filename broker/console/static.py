"""The console's static files: this package's own directory, flat, by a strict name pattern.

A name must match ``[a-z0-9_.-]+``, must not start with a dot and must have a known
extension: no path separator or ``..`` can reach anything outside this directory, and the
package's Python sources are not served.
"""

from __future__ import annotations

import re
from pathlib import Path

DIRECTORY = Path(__file__).parent

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
    ".woff2": "font/woff2",
}

SECURITY_HEADERS = (
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'"),
    ("X-Frame-Options", "DENY"),
    # not no-referrer: with it Chromium posts the login form with "Origin: null", which
    # the same-origin check of POST /login must refuse.
    ("Referrer-Policy", "same-origin"),
)

_NAME = re.compile(r"[a-z0-9_.-]{1,100}")


def content_type(name: str) -> str | None:
    """The type of a servable name, or None when the name may not be served."""
    if not _NAME.fullmatch(name) or name.startswith("."):
        return None
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:]) if dot > 0 else None


def read(name: str) -> tuple[bytes, str] | None:
    """(content, type) of a console file, or None (refused name or no such file)."""
    ctype = content_type(name)
    if ctype is None:
        return None
    path = DIRECTORY / name
    try:
        return path.read_bytes(), ctype
    except OSError:  # absent, or a directory
        return None
