"""Bulk answers: thousands of questions, one query, each answer written straight to JSON bytes.

The batch and stream endpoints apply the same rule as `decide` (the tests ask every reason through the single, batch
and stream paths and compare the answers field by field), compiled once per catalog snapshot and instant so that a
row of the lookup costs a few comparisons and one bytes template: no Question, Lookup, StateView or Answer object,
no dict, no datetime parsing (on SQLite the stored UTC text compares in time order and is reformatted by slicing).
bench/check_bench.py prints the effect (stream checks/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson

from server.consent.check import Question, validate_question
from server.consent.reader import Key, Row, StateReader
from server.errors import ConsentError, InvalidRequest
from server.policies.catalog import CatalogSnapshot

_dumps = orjson.dumps
_NULLS = b',"valid_until":null,"policy_version":null,"event_id":null}'
_UNKNOWN = b'"allowed":false,"reason":"unknown_subject","status":"no_record","since":null' + _NULLS
_STATE = b'"allowed":%b,"reason":%b,"status":%b,"since":%b,"valid_until":%b,"policy_version":%b,"event_id":%b}'
_KEY = itemgetter("subject", "purpose", "channel")
_PAIR = itemgetter(1, 2)
_DENIED = {status: _dumps(status) for status in ("refused", "withdrawn", "expired", "pending_confirmation", "objected")}


class BulkRule:
    """The decision rule of `server.consent.decide`, compiled for one catalog snapshot, one instant, one dialect.

    `dialect` says how the reader returns instants: `sqlite` as Tortoise's UTC text (`isoformat(" ")`, which
    compares in time order), `postgres` as aware datetimes.
    """

    def __init__(self, catalog: CatalogSnapshot, now: datetime, dialect: str) -> None:
        self.catalog = catalog
        self._text = dialect == "sqlite"
        self._now = self._native(now)
        self._labels = {policy_id: _dumps(policy.label) for policy_id, policy in catalog.policies_by_id.items()}
        # Per purpose x channel offered: the JSON of the pair, the answer when nothing was recorded, and the
        # re-consent rule per granting policy: (stale for good, stale if granted before this instant).
        self._pairs: dict[tuple[str, str], tuple[bytes, bytes, dict[int, tuple[bool, Any]]]] = {}
        for code, purpose in catalog.purposes.items():
            stale = self._stale_rules(code, now)
            for channel in purpose.channels:
                basis = purpose.basis_for(channel)
                if basis in ("legitimate_interest", "necessary"):
                    empty = b'"allowed":true,"reason":"%b","status":"no_record","since":null' % basis.encode() + _NULLS
                else:
                    empty = b'"allowed":false,"reason":"no_record","status":"no_record","since":null' + _NULLS
                pair = b'"purpose":%b,"channel":%b,' % (_dumps(code), _dumps(channel))
                self._pairs[(code, channel)] = (pair, empty, stale)
        self._offered = frozenset(self._pairs)

    async def answers(self, reader: StateReader, keys: Sequence[Key], numbers: Sequence[int] | None) -> list[bytes]:
        """The answer line of each key, in order, prefixed with `"line":n,` when `numbers` (one per key) are given."""
        rows = await reader.rows(keys)
        line = self.line
        if numbers is None:
            return [line(b"", key, row) for key, row in zip(keys, rows, strict=True)]
        return [line(b'"line":%d,' % n, key, row) for n, key, row in zip(numbers, keys, rows, strict=True)]

    def _stale_rules(self, purpose: str, now: datetime) -> dict[int, tuple[bool, Any]]:
        """`CatalogSnapshot.reconsent_rules`, thresholds in the reader's form of an instant."""
        return {
            policy_id: (same_document, self._native(threshold))
            for policy_id, (same_document, threshold) in self.catalog.reconsent_rules(purpose, now).items()
        }

    def _native(self, value: datetime | None) -> Any:
        if value is None or not self._text:
            return value
        return value.astimezone(UTC).isoformat(" ")

    def _instant(self, value: Any) -> bytes:
        if value is None:
            return b"null"
        if self._text:
            text: str = value
            if text.endswith("+00:00") and len(text) > 19 and text[10] == " ":
                return b'"%b"' % (text[:10] + "T" + text[11:-6] + "Z").encode()
            value = datetime.fromisoformat(text)
        return _dumps(value, option=orjson.OPT_UTC_Z)

    def keys(self, block: bytes, count: int) -> list[Key] | None:
        """The keys of `count` NDJSON lines (`block`: the lines joined by newlines) when every line is one
        well-formed check that `question` would accept at once; None otherwise (then the caller goes line by line).

        The block is parsed with one `orjson.loads` and checked with C-level passes over the whole list, instead of
        a parse and a `question` call per line (bench/README.md, "Where a stream's time goes"). Each line is then
        exactly one element of the list: every line starts with `{` and ends with `}`, and the lines are joined by
        `,` and a newline. A value that ran from one line into the next would hold that newline either in a string
        (not JSON) or in a nested object or array (not a check: its three values must be strings), and the list has
        as many elements as there are lines. Any other block (a blank line, CRLF, a line of two values) takes the
        per-line path, which numbers the errors."""
        if not (block.startswith(b"{") and block.endswith(b"}") and block.count(b"}\n{") == count - 1):
            return None
        try:
            items = orjson.loads(b"[" + block.replace(b"\n", b",\n") + b"]")
            if len(items) != count or set(map(len, items)) != {3}:
                return None
            keys: list[Key] = list(map(_KEY, items))  # KeyError: a field is missing
            subjects = [key[0] for key in keys]
            if not all(map(str.isprintable, subjects)):  # TypeError: a subject that is not a string
                return None
            lengths = set(map(len, subjects))
            if min(lengths) < 1 or max(lengths) > 255 or not self._offered.issuperset(map(_PAIR, keys)):
                return None
        except (orjson.JSONDecodeError, KeyError, TypeError):  # TypeError also: an unhashable purpose or channel
            return None
        return keys

    def question(self, item: Any) -> Key | ConsentError:
        """A well-formed question as a key, or the error `validate_question` gives for it."""
        if type(item) is dict and len(item) == 3:
            subject, purpose, channel = item.get("subject"), item.get("purpose"), item.get("channel")
            if (
                type(purpose) is str
                and type(channel) is str
                and type(subject) is str
                and (purpose, channel) in self._pairs
                and 0 < len(subject) <= 255
                and subject.isprintable()  # no control character; a false one goes on to the full rule below
            ):
                return (subject, purpose, channel)
        if not isinstance(item, dict) or set(item) != {"subject", "purpose", "channel"}:
            return InvalidRequest('each check is {"subject", "purpose", "channel"}, all three and nothing else')
        try:
            question: Question = validate_question(
                self.catalog, item.get("subject"), item.get("purpose"), item.get("channel")
            )
        except ConsentError as exc:
            return exc
        return (question.subject, question.purpose, question.channel)

    def line(self, prefix: bytes, key: Key, row: Row | None) -> bytes:
        """`{` + prefix + subject, purpose, channel + the answer fields (allowed, reason, status, since, valid_until,
        policy_version, event_id) + `}`: what a single check answers, for the row the bulk read found (None: no
        such subject)."""
        pair, empty, stale = self._pairs[(key[1], key[2])]
        return b'{%b"subject":%b,%b%b' % (prefix, _dumps(key[0]), pair, self._answer(empty, stale, row))

    def _answer(self, empty: bytes, stale: dict[int, tuple[bool, Any]], row: Row | None) -> bytes:
        if row is None:
            return _UNKNOWN
        erased, restricted, status, since, valid_until, policy_id, event_id = row
        now = self._now
        if erased is not None and erased <= now:
            return b'"allowed":false,"reason":"erased","status":"erased","since":%b' % self._instant(erased) + _NULLS
        if restricted is not None and restricted <= now:
            shown = _dumps(status) if status is not None else b'"no_record"'
            return (
                b'"allowed":false,"reason":"restricted","status":%b,"since":%b' % (shown, self._instant(restricted))
                + _NULLS
            )
        if status is None:
            return empty
        if status == "granted" or status == "soft_opt_in":
            if valid_until is not None and now >= valid_until:
                allowed, reason = b"false", b'"expired"'
            elif status == "granted" and self._stale(stale, policy_id, since):
                allowed, reason = b"false", b'"reconsent_required"'
            else:
                allowed, reason = b"true", _dumps(status)
        else:
            allowed, reason = b"false", _DENIED.get(status, b'"no_record"')
        return _STATE % (
            allowed,
            reason,
            _dumps(status),
            self._instant(since),
            self._instant(valid_until),
            self._labels.get(policy_id, b"null"),
            _dumps(event_id),
        )

    @staticmethod
    def _stale(rules: dict[int, tuple[bool, Any]], policy_id: int, since: Any) -> bool:
        rule = rules.get(policy_id)
        if rule is None:
            return False
        same_document, threshold = rule
        return same_document or (threshold is not None and since < threshold)
