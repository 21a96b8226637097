"""Domain errors, one hierarchy for the whole service.

Domain code raises these; `server.kernel.problems` maps each to an RFC 9457 problem+json answer whose `type` is
`/problems/<slug>` (stable, documented at that URL). Helpers never raise HTTP exceptions.

    ConsentError                      base; status 400
    ├── InvalidRequest                malformed JSON, wrong types, unknown fields (400 / 422)
    │   └── PayloadTooLarge           body over the configured limit (413)
    ├── UnprocessableDecision         a well-formed request the ledger refuses (422)
    │   ├── UnknownPurpose
    │   ├── UnknownChannel
    │   ├── UnknownPolicyVersion      not published (invariant 2, docs/design.md)
    │   ├── ChannelNotOffered         purpose not offered on that channel
    │   ├── InvalidTransition         decision not allowed from the current status
    │   ├── ConfirmationByLinkOnly    `confirm` from an API client outside an import
    │   └── NotUnsubscribable         an unsubscribe link for a `necessary` purpose x channel
    ├── NotFound                      (404)
    ├── AuthenticationRequired        missing/invalid/expired token (401 + WWW-Authenticate)
    ├── InsufficientScope             token lacks the scope (403 + WWW-Authenticate)
    ├── WriteWindowExceeded           a write outlasted `server.visibility.WRITE_WINDOW`; nothing kept (503)
    └── DatabaseBusy                  the database's locks did not come free in time; rolled back (503)
"""

from __future__ import annotations

from typing import Any


class ConsentError(Exception):
    """Base of every error the service reports to a caller."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidRequest(ConsentError):
    status = 422
    slug = "invalid-request"
    title = "The request is not valid"


class MalformedBody(InvalidRequest):
    status = 400
    slug = "malformed-body"
    title = "The body is not valid JSON or form data"


class PayloadTooLarge(InvalidRequest):
    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class UnprocessableDecision(ConsentError):
    status = 422
    slug = "unprocessable-decision"
    title = "The decision cannot be recorded"


class UnknownPurpose(UnprocessableDecision):
    slug = "unknown-purpose"
    title = "Unknown purpose"


class UnknownChannel(UnprocessableDecision):
    slug = "unknown-channel"
    title = "Unknown channel"


class UnknownPolicyVersion(UnprocessableDecision):
    slug = "unknown-policy-version"
    title = "Unknown or unpublished policy version"


class ChannelNotOffered(UnprocessableDecision):
    slug = "channel-not-offered"
    title = "The purpose is not offered on that channel"


class InvalidTransition(UnprocessableDecision):
    slug = "invalid-transition"
    title = "The decision is not allowed from the current status"


class ConfirmationByLinkOnly(UnprocessableDecision):
    """A double opt-in (GDPR 7(1)) is confirmed by the person's click on the link the service mails: the mail's text
    and Message-ID and the click are the proof, recorded with the `confirm` event. An API client may record `confirm`
    only with touchpoint `import`, for a confirmation collected elsewhere (its evidence in `evidence`)."""

    slug = "confirmation-by-link-only"
    title = "A double opt-in is confirmed by the person's click on the mailed link"


class NotUnsubscribable(UnprocessableDecision):
    """An unsubscribe link was asked for a purpose x channel whose legal basis is `necessary`: there is no consent to
    withdraw and no objection to record, so its one-click POST would change nothing while the check API goes on
    answering `necessary`. Unsubscribe links exist for consent, soft opt-in and legitimate-interest channels (an
    unsubscribe from a legitimate-interest channel records an objection, GDPR 21(3))."""

    slug = "not-unsubscribable"
    title = "There is nothing to unsubscribe from on this purpose and channel"


class NotFound(ConsentError):
    status = 404
    slug = "not-found"
    title = "Not found"


class AuthenticationRequired(ConsentError):
    """Missing, malformed, expired or untrusted credentials."""

    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str, *, error: str | None = "invalid_token", **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.error = error


class InsufficientScope(ConsentError):
    status = 403
    slug = "insufficient-scope"
    title = "The access token lacks the required scope"

    def __init__(self, detail: str, *, scope: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.scope = scope


class WriteWindowExceeded(ConsentError):
    """Nothing was recorded: the write took longer than 30 seconds from its start to its commit, so it was rolled
    back. Audience change feeds read the last minute again at every poll; a change committed later than that could
    reach none of them. Send the same request again (Retry-After gives the delay)."""

    status = 503
    slug = "write-window-exceeded"
    title = "The write took too long and was not kept; send it again"


class DatabaseBusy(ConsentError):
    """The database stayed busy: another process held its write lock longer than the wait allows, or PostgreSQL
    gave up a lock or a transaction to let another go on. The transaction that met it was rolled back, so a
    decision, a banner choice or a preference change was not recorded. Send the same request again (Retry-After
    gives the delay)."""

    status = 503
    slug = "database-busy"
    title = "The database is busy; send the request again"

    @classmethod
    def now(cls) -> DatabaseBusy:
        return cls("The database stayed busy and the request did not go through. Send it again.")


# Nothing was kept and the same request may simply be sent again (503 with Retry-After): every surface that answers
# these in its own form catches both.
SEND_AGAIN: tuple[type[ConsentError], ...] = (WriteWindowExceeded, DatabaseBusy)


ALL_ERRORS: tuple[type[ConsentError], ...] = (
    ConsentError,
    InvalidRequest,
    MalformedBody,
    PayloadTooLarge,
    UnprocessableDecision,
    UnknownPurpose,
    UnknownChannel,
    UnknownPolicyVersion,
    ChannelNotOffered,
    InvalidTransition,
    ConfirmationByLinkOnly,
    NotUnsubscribable,
    NotFound,
    AuthenticationRequired,
    InsufficientScope,
    WriteWindowExceeded,
    DatabaseBusy,
)
