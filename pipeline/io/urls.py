"""URLs as the product shows them: never with the user name and password a source URL may carry.

`redact_urls(text)` replaces the credentials of every URL in `text` (`rtsp://admin:s3cret@cam/live` ->
`rtsp://***@cam/live`), so a message, summary.json, state.json or a line on stderr can name the source
without leaking its password. Light (no heavy imports): the CLI applies it to every line it prints.
"""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def redact_urls(text: str) -> str:
    """`text` with the user information of every URL in it replaced by `***`."""
    return _CREDENTIALS.sub(r"\1***@", text)
