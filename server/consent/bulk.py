"""Bulk answers: thousands of questions, one query, each answer written straight to JSON text.

The batch and stream endpoints apply the same rule as `decide` (the tests ask every reason through the single, batch
and stream paths and compare the answers field by field), compiled once per catalog snapshot and instant so that a
row of the lookup costs a few comparisons and one f-string: no Question, Lookup, StateView or Answer object,
no dict, no datetime parsing (both readers return instants as UTC text, which compares in time order and is
reformatted by slicing).
bench/check_bench.py prints the effect (stream checks/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

import orjson

from server.consent.check import Question, validate_question
from server.consent.read_model import instant_text
from server.consent.reader import Key, Row, StateReader
from server.errors import ConsentError, InvalidRequest, MalformedBody
from server.policies.snapshot import CatalogSnapshot

_dumps = orjson.dumps
_quote = encode_basestring  # a str as a JSON string (C): escapes `"`, `\\` and control characters, as orjson does
_NULLS = ',"valid_until":null,"policy_version":null,"event_id":null}'
_UNKNOWN = '"allowed":false,"reason":"unknown_subject","status":"no_record","since":null' + _NULLS
_KEY = itemgetter("subject", "purpose", "channel")
_PAIR = itemgetter(1, 2)
_DENIED = {status: _quote(status) for status in ("refused", "withdrawn", "expired", "pending_confirmation", "objected")}
_STATUSES = {status: _quote(status) for status in ("granted", "soft_opt_in", *_DENIED)}
MAX_LINE = 64 * 1024  # bytes in one stream line


class BulkRule:
    """The decision rule of `server.consent.decide`, compiled for one catalog snapshot and one instant.

    Rows hold their instants as UTC text in the form SQLite stores them (`isoformat(" ")`, which compares in time
    order): SQLite's columns as they are, PostgreSQL's read model (`server.consent.read_model`) in the same form.
    """

    def __init__(self, catalog: CatalogSnapshot, now: datetime) -> None:
        self.catalog = catalog
        self._now = instant_text(now)
        self._labels = {policy_id: _quote(policy.label) for policy_id, policy in catalog.policies_by_id.items()}
        # Per purpose x channel offered: the JSON of the pair, the answer when nothing was recorded, and the
        # re-consent rule per granting policy: (stale for good, stale if granted before this instant).
        self._pairs: dict[tuple[str, str], tuple[str, str, dict[int, tuple[bool, Any]]]] = {}
        for code, purpose in catalog.purposes.items():
            stale = self._stale_rules(code, now)
            for channel in purpose.channels:
                basis = purpose.basis_for(channel)
                if basis in ("legitimate_interest", "necessary"):
                    empty = f'"allowed":true,"reason":"{basis}","status":"no_record","since":null{_NULLS}'
                else:
                    empty = f'"allowed":false,"reason":"no_record","status":"no_record","since":null{_NULLS}'
                pair = f'"purpose":{_quote(code)},"channel":{_quote(channel)},'
                self._pairs[(code, channel)] = (pair, empty, stale)
        self._offered = frozenset(self._pairs)

    async def answers(self, reader: StateReader, keys: Sequence[Key], numbers: Sequence[int] | None) -> list[str]:
        """The answer line of each key, in order (JSON text, no newline), starting with `"line":n,` when `numbers`
        (one per key) are given."""
        return self.lines(keys, await reader.rows(keys), numbers)

    def lines(self, keys: Sequence[Key], rows: Sequence[Row | None], numbers: Sequence[int] | None) -> list[str]:
        """`{` + `"line":n,` when numbered + subject, purpose, channel + the answer fields (allowed, reason, status,
        since, valid_until, policy_version, event_id) + `}`: what a single check answers, for the row the bulk read
        found (None: no such subject).

        The common row (a state, no erasure or restriction) is written inline, as text with one f-string: the stream
        spends most of its event-loop time here, with the GIL that the bulk reads also need (bench/README.md, "Where a
        stream's time goes"). Every other row goes through `_answer`."""
        pairs, now, labels, instant, stale_of = self._pairs, self._now, self._labels, self._instant, self._stale
        out: list[str] = []
        append = out.append
        numbered = numbers if numbers is not None else repeat(None, len(keys))
        for number, (ref, purpose, channel), row in zip(numbered, keys, rows, strict=True):
            pair, empty, stale = pairs[(purpose, channel)]
            head = "{" if number is None else f'{{"line":{number},'
            if row is None or row[0] is not None or row[1] is not None or row[2] is None:
                append(f'{head}"subject":{_quote(ref)},{pair}{self._answer(purpose, channel, empty, row)}')
                continue
            _, _, status, since, valid_until, policy_id, event_id = row
            if status == "granted" or status == "soft_opt_in":
                if valid_until is not None and now >= valid_until:
                    allowed, reason = "false", '"expired"'
                elif status == "granted" and policy_id in stale and stale_of(stale, policy_id, since):
                    allowed, reason = "false", '"reconsent_required"'
                else:
                    allowed, reason = "true", _STATUSES[status]
            else:
                allowed, reason = "false", _DENIED.get(status, '"no_record"')
            append(
                f'{head}"subject":{_quote(ref)},{pair}"allowed":{allowed},"reason":{reason},'
                f'"status":{_STATUSES.get(status) or _quote(status)},"since":{instant(since)},'
                f'"valid_until":{instant(valid_until)},"policy_version":{labels.get(policy_id, "null")},'
                f'"event_id":{_quote(event_id)}}}'
            )
        return out

    def _stale_rules(self, purpose: str, now: datetime) -> dict[int, tuple[bool, Any]]:
        """`CatalogSnapshot.reconsent_rules`, thresholds as UTC text (the rows' form of an instant)."""
        return {
            policy_id: (same_document, instant_text(threshold))
            for policy_id, (same_document, threshold) in self.catalog.reconsent_rules(purpose, now).items()
        }

    @staticmethod
    def _instant(value: str | None) -> str:
        """An instant as its JSON text (`null`, or UTC with a `Z`), as a single check writes it."""
        if value is None:
            return "null"
        if value[-6:] == "+00:00" and len(value) > 19 and value[10] == " ":
            return f'"{value[:10]}T{value[11:-6]}Z"'
        return _dumps(datetime.fromisoformat(value), option=orjson.OPT_UTC_Z).decode()

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

    def parse(
        self, first: int, block: bytes | None, count: int, numbers: list[int], items: list[Key | ConsentError]
    ) -> None:
        """Append the questions of `count` stream lines (`block`: the lines joined by newlines, the first numbered
        `first`) to `items`, with their line numbers to `numbers`: a key, or the error its line gets. Blank lines are
        skipped. `block` None stands for one line longer than MAX_LINE, already cut away."""
        if block is None:
            items.append(InvalidRequest(f"line longer than {MAX_LINE} bytes"))
            numbers.append(first)
            return
        keys = self.keys(block, count)
        if keys is not None:  # every line a well-formed check: parsed and validated at once
            items.extend(keys)
            numbers.extend(range(first, first + count))
            return
        loads = orjson.loads
        for number, raw in enumerate(block.split(b"\n"), first):
            try:
                item = loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw.strip():
                    continue  # blank lines are allowed and not answered
                items.append(MalformedBody(f"not valid JSON: {exc}"))
            else:
                items.append(self.question(item))
            numbers.append(number)

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
                and subject.isascii()  # else normalised to NFC by the full rule below
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

    def _answer(self, purpose: str, channel: str, empty: str, row: Row | None) -> str:
        """The answer fields of a row that `lines` does not write inline: unknown subject, erased, restricted, no
        state for the pair."""
        if row is None:
            return _UNKNOWN
        erased, restricted, status = row[0], row[1], row[2]
        now = self._now
        if erased is not None and erased <= now:
            return f'"allowed":false,"reason":"erased","status":"erased","since":{self._instant(erased)}{_NULLS}'
        if restricted is not None and restricted <= now:
            shown = _quote(status) if status is not None else '"no_record"'
            return f'"allowed":false,"reason":"restricted","status":{shown},"since":{self._instant(restricted)}{_NULLS}'
        if status is None:
            return empty
        # A flag set after `now` does not apply yet (as in `decide`): the state decides, as `lines` writes it.
        line = self.lines([("", purpose, channel)], [[None, None, *row[2:]]], None)[0]
        return line[len('{"subject":"",') + len(self._pairs[(purpose, channel)][0]) :]

    @staticmethod
    def _stale(rules: dict[int, tuple[bool, Any]], policy_id: int, since: Any) -> bool:
        rule = rules.get(policy_id)
        if rule is None:
            return False
        same_document, threshold = rule
        return same_document or (threshold is not None and since < threshold)


def problem(error: ConsentError) -> dict[str, Any]:
    """The `error` member of a batch or stream answer: the problem's type, title and detail."""
    return {"type": f"/problems/{error.slug}", "title": error.title, "detail": error.detail}


def stream_body(lines: list[str], numbers: Sequence[int], items: Sequence[Key | ConsentError]) -> bytes:
    """The NDJSON of one stream chunk: the answer `lines` of its keys, in order, with an error line (numbered) in
    place of each question that was not one; a newline after every line."""
    if len(lines) == len(items):  # no error line to put in between
        lines.append("")
        return "\n".join(lines).encode()
    answers = iter(lines)
    out = []
    for number, item in zip(numbers, items, strict=True):
        if type(item) is tuple:
            out.append(next(answers))
        else:
            assert isinstance(item, ConsentError)
            out.append(orjson.dumps({"line": number, "error": problem(item)}).decode())
    out.append("")
    return "\n".join(out).encode()


def numbered_keys(numbers: list[int], items: Sequence[Key | ConsentError]) -> tuple[list[Key], list[int]]:
    """The well-formed questions of a chunk and their line numbers."""
    keys: list[Key] = [q for q in items if type(q) is tuple]
    if len(keys) == len(items):
        return keys, numbers
    return keys, [n for n, q in zip(numbers, items, strict=True) if type(q) is tuple]
