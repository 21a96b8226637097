"""Refusing text PostgreSQL cannot store: NUL (U+0000), wherever a request carries data.

PostgreSQL's text columns refuse U+0000 (`invalid byte sequence for encoding "UTF8": 0x00`), a driver error that
would otherwise surface as a 500 halfway through a request; SQLite would store it. Both databases get the same
answer, a 422 `/problems/unstorable-text`, before anything is read or written. Lone surrogates (`\\ud800`), which
UTF-8 cannot encode either, never get this far: orjson refuses them as invalid JSON (400 malformed-body), and
percent-decoding turns invalid UTF-8 into U+FFFD.

Where it is checked, once per kind of input rather than per field:
- the path, the query string and the header values: `refuse_in_request`, which `build_routes` runs before every
  handler (server.kernel.endpoints);
- JSON bodies: `refuse_in_json`, called by the kernel's `read_json` and by the handlers that parse JSON
  themselves (a batch of checks, a banner choice); it costs one `bytes.find` unless the raw body holds `\\u0000`;
- form bodies: `refuse_in_form`, called by `read_form` and the preference center's multipart reader;
- NDJSON stream lines need nothing more: a line's values reach the same validation as a single check, whose ref
  rule refuses control characters, and an undecodable line gets its error line (the stream is never buffered).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Scope

from server.errors import UnstorableText

NUL = "\x00"


def _refuse(location: str) -> UnstorableText:
    return UnstorableText(
        f"the {location} holds a NUL character (U+0000), a control character that cannot be stored", location=location
    )


def refuse_in_request(scope: Scope) -> None:
    """The path, the query string and every header value of the request."""
    if NUL in scope["path"]:
        raise _refuse("path")
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        raise _refuse("query string")
    for name, value in scope["headers"]:
        if b"\x00" in value:
            raise _refuse(f"header {name.decode('latin-1')}")


def refuse_in_json(raw: bytes, data: object) -> None:
    """`data`, the JSON value parsed from `raw`: a raw NUL byte is already invalid JSON, so only an escaped one can
    be in it, and only when `raw` holds `\\u0000` is the value walked."""
    if b"\\u0000" in raw and _holds_nul(data):
        raise _refuse("JSON body")


def _holds_nul(data: object) -> bool:
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def refuse_in_form(fields: Mapping[str, object]) -> None:
    """The names and text values of a decoded form."""
    for name, value in fields.items():
        if NUL in name or (isinstance(value, str) and NUL in value):
            raise _refuse("form")
