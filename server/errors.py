"""Domain errors, one hierarchy for the whole service.

Domain code raises these; `server.kernel.problems` maps each to an RFC 9457 problem+json answer whose `type` is
`/problems/<slug>` (stable, documented at that URL by the class's docstring) and whose status is the class's
`status`. The service desk, the preference center and the public request pages catch those they meet and show
them in pages of their own. Helpers never raise HTTP exceptions.

Every subclass is drawn here, wherever it is defined (its module named when it is not this one), with its status
and when it is raised; tests/kernel/test_error_tree.py holds the drawing to the code.

    ConsentError                      400  the base: raised only as one of its subclasses
    ├── InvalidRequest                422  a parameter, field or query value is refused (its type, its range, an
    │   │                                  unknown field, nothing to change)
    │   ├── MalformedBody             400  the body is not JSON or form data, or comes with another Content-Type
    │   ├── PayloadTooLarge           413  the body is over MAX_BODY_BYTES, or a batch holds more checks than MAX_BATCH
    │   ├── UnstorableText            422  a NUL character in a path, query, header, form field or JSON string
    │   ├── OriginRequired            400  server.banner.errors: a public banner call without an Origin header
    │   ├── UnknownSite               422  server.banner.errors: no site with this id in policy_docs/sites.yaml
    │   │                                  (404 when its banner configuration is asked for)
    │   ├── Suppressed                422  server.subjects.contact: the email or phone of an erased person, set or
    │   │                                  imported again (service desk correction, subject contact API)
    │   └── RecordDeclarationError    422  server.record.processing: the `record:` declarations of
    │                                      purposes.yaml cannot be read (the record page; `record` exits 2)
    ├── UnprocessableDecision         422  a well-formed decision the ledger refuses; itself: an unknown action
    │   ├── UnknownPurpose            422  a decision or a check names a purpose purposes.yaml does not declare
    │   ├── UnknownChannel            422  a decision or a check names a channel purposes.yaml does not declare
    │   ├── UnknownPolicyVersion      422  the policy version a record cites is not published
    │   ├── ChannelNotOffered         422  the purpose is not offered on that channel
    │   ├── InvalidTransition         422  the decision is not allowed from the current status (or a soft opt-in
    │   │                                  outside its rules)
    │   ├── ConfirmationByLinkOnly    422  `confirm` from an API client outside touchpoint `import`
    │   ├── NotUnsubscribable         422  an unsubscribe link for a `necessary` purpose x channel
    │   └── BannerTextMismatch        422  server.banner.errors: the hash of the banner text the browser showed is
    │                                      not that of the text served for the site, language and version
    ├── NotFound                      404  no subject, request, breach, notice, policy version... with this id
    │   └── UnknownClient             404  server.auth.lifecycle: no API client with this id (`/v1/clients/...`,
    │                                      `clients revoke | rotate-secret | set-scopes`, which exit 2)
    ├── AuthenticationRequired        401  missing, malformed, expired or untrusted token (+ WWW-Authenticate)
    ├── InsufficientScope             403  the token lacks the endpoint's scope (+ WWW-Authenticate)
    ├── SignInRefused                 401  server.staff.accounts: a staff sign-in with a wrong email or password,
    │                                      a locked or disabled account, or a provider identity whose email
    │                                      already has a local account
    ├── OidcError                     401  server.staff.oidc: the company's provider is unreachable or answers
    │                                      what it should not, the ID token does not verify, or it names no
    │                                      single desk role
    ├── LinkTokenRefused              403  server.links.tokens: a preference, confirmation or unsubscribe
    │                                      link token missing, malformed, tampered with, expired, or for another
    │                                      audience or use
    ├── LinkRefused                   403  server.console.public: the preference-center link of a public request page
    │                                      does not verify (the same problem type as LinkTokenRefused)
    ├── OriginNotAllowed              403  server.banner.errors: the Origin is not one of the site's origins
    ├── TooManyRequests               429  server.banner.errors: over BANNER_RATE_PER_CONSENT banner records for
    │                                      one consent id or BANNER_RATE_PER_NETWORK from one network (+ Retry-After)
    ├── ChoiceIdReused                409  server.banner.errors: a banner choice id already recorded with other
    │                                      content
    ├── RequestTimeout                408  the request's body did not all arrive within HTTP_BODY_TIMEOUT_SECONDS
    │                                      (server.middleware.body_timeout; its header, server.serving); the
    │                                      connection is closed
    ├── StaleBreach                   409  server.breaches.register: a breach form made from an older version of the
    │                                      breach; nothing changed
    ├── IdempotencyKeyInvalid         400  server.kernel.idempotency: an Idempotency-Key header that is not a key
    │                                      (1-255 printable characters), or none where the route requires one
    ├── IdempotencyKeyReused          422  server.kernel.idempotency: the client's key was used for another
    │                                      request (path, query or body); nothing done
    ├── IdempotencyKeyInFlight        409  server.kernel.idempotency: the first request with this key is still
    │                                      being carried out (+ Retry-After); nothing done
    ├── ClientRevoked                 409  server.auth.lifecycle: rotating the secret or setting the scopes of a
    │                                      revoked API client (revocation is final)
    ├── OwnClient                     409  server.auth.lifecycle: an admin client revoking itself, or taking
    │                                      `admin` away from itself, over the API
    ├── SubjectErased                 409  a grant or a confirmation for a subject whose data were erased
    ├── WriteWindowExceeded           503  a write outlasted `server.visibility.WRITE_WINDOW`; nothing kept
    │                                      (+ Retry-After)
    ├── DatabaseBusy                  503  the database's locks did not come free in time; rolled back
    │                                      (+ Retry-After)
    └── ServiceUnavailable            503  the database could not be reached (connection lost, refused, pool
                                           exhausted) or the disk is full; nothing kept (+ Retry-After)

Errors outside the tree reach no caller as a problem: each is caught where it is raised and told in other words,
or stops a command or the server's start with its message.

    ValueError
    ├── SettingsError                      server.settings: a variable is malformed (or SECRET_KEY missing in
    │                                      production); the CLI prints it and exits 2
    ├── ClientRefused                      server.auth.clients: `clients create` with a bad name or no scope;
    │   │                                  it exits 2
    │   └── UnknownScope                   server.auth.clients: a scope that does not exist: `clients create`
    │                                      exits 2, the token endpoint answers OAuth's invalid_scope (400)
    ├── PolicySourceError                  server.policies.documents: a file under policy_docs/ is malformed:
    │                                      `policies sync` exits 1, a bad sites.yaml stops the server's start,
    │                                      the record page reports it as RecordDeclarationError
    ├── PublishedPolicyChanged             server.policies.sync: the bytes of a published policy file changed:
    │                                      `policies sync` exits 1 (publish a new version instead)
    ├── AnswerSourceError                  server.console.answers: an approved answer file is malformed, or lacks a
    │                                      language: the server does not start
    ├── DeadlineError                      server.dsr.deadlines: a deadline extension the rules refuse; the desk
    │                                      raises it again as InvalidRequest (422)
    └── ExportLinkRefused                  server.dsr.export: an export download link tampered with (a 404
                                           page) or expired (a 410 page)
    RuntimeError
    └── MigrationError                     server.migrate: migrating left the database inconsistent, or the
                                           server found migrations not applied: it does not start
    Exception
    ├── WorkerReadError                    server.consent.stream_workers: a stream worker could not read a
    │                                      chunk's keys; the server answers that chunk itself
    └── MailNotSent                        server.mail.mailer: the SMTP server refused a mail or could not
                                           be reached, or the outbox's disk is full: logged; a page that sent a
                                           confirmation says it was not sent (the grant stays pending), a link
                                           request answers as ever
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
    """A parameter, a field or a query value is refused: its type, its range, an unknown field, or nothing to
    change. `detail` says what is wrong; `parameter`, when present, names it.

    A subject ref (`parameter` `ref`) is 1-255 characters, compared in Unicode NFC (a ref sent in another
    normalisation form is the same ref), without `/` and without characters that cannot be seen or told apart:
    control characters (Unicode category Cc), format characters such as zero-width spaces or direction marks (Cf),
    line and paragraph separators (Zl, Zp), spaces other than U+0020 (Zs) and lone surrogates (Cs); `value` shows
    the refused ref escaped."""

    status = 422
    slug = "invalid-request"
    title = "The request is not valid"


class MalformedBody(InvalidRequest):
    """The body is not valid JSON (or form data, where the endpoint reads a form), or it comes with a Content-Type
    the endpoint does not read."""

    status = 400
    slug = "malformed-body"
    title = "The body is not valid JSON or form data"


class PayloadTooLarge(InvalidRequest):
    """The body is over the server's limit (MAX_BODY_BYTES), or a batch holds more checks than one request may;
    `limit` gives the limit."""

    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class UnstorableText(InvalidRequest):
    """The request carries a character that cannot be stored: NUL (U+0000, `%00` in a path, query or form, `\\u0000`
    in a JSON string, a NUL byte in a header), which PostgreSQL's text columns refuse. It is refused on every
    database alike, before anything is read or written; `location` says where it was found. (A lone surrogate in
    JSON, `\\ud800`, is not valid JSON: `/problems/malformed-body`.)"""

    slug = "unstorable-text"
    title = "The request holds a character that cannot be stored"


class UnprocessableDecision(ConsentError):
    """A well-formed decision the ledger refuses; the more precise types below say why, this one is an action
    that does not exist. Nothing is recorded."""

    status = 422
    slug = "unprocessable-decision"
    title = "The decision cannot be recorded"


class UnknownPurpose(UnprocessableDecision):
    """The purpose (`purpose`) is not one the controller declares."""

    slug = "unknown-purpose"
    title = "Unknown purpose"


class UnknownChannel(UnprocessableDecision):
    """The channel (`channel`) is not one the controller declares."""

    slug = "unknown-channel"
    title = "Unknown channel"


class UnknownPolicyVersion(UnprocessableDecision):
    """The policy version cited (`policy_version`) is not published: a consent points at the exact text the person
    was shown, so that text must be a published version."""

    slug = "unknown-policy-version"
    title = "Unknown or unpublished policy version"


class ChannelNotOffered(UnprocessableDecision):
    """The purpose exists but is not offered on that channel."""

    slug = "channel-not-offered"
    title = "The purpose is not offered on that channel"


class InvalidTransition(UnprocessableDecision):
    """The decision is not allowed from the current status (`current_status`) of that purpose and channel, such as
    withdrawing what was never granted, or a soft opt-in outside the company's own marketing by email or SMS."""

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
    """Nothing exists with this address or id: a subject, a policy version, a checkpoint, a request, a breach..."""

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
    """The access token is valid but lacks the scope the endpoint requires (named in `detail` and in the
    WWW-Authenticate header)."""

    status = 403
    slug = "insufficient-scope"
    title = "The access token lacks the required scope"

    def __init__(self, detail: str, *, scope: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.scope = scope


class RequestTimeout(ConsentError):
    """The request did not all arrive in time: its header within HTTP_HEADER_TIMEOUT_SECONDS of the connection's
    opening (or of the request's first byte), or its body within HTTP_BODY_TIMEOUT_SECONDS of the request's start.
    Nothing was done and the connection is closed; send the request again, all of it at once."""

    status = 408
    slug = "request-timeout"
    title = "The request took too long to arrive"


class SubjectErased(ConsentError):
    """The subject's data were erased at their request (GDPR 17): a decision that would allow processing again (a
    grant, a confirmation, a soft opt-in) is not recorded, whatever touchpoint sends it. The ledger keeps the
    subject's earlier events as proof; a refusal, a withdrawal or an objection may still be recorded. A person who
    comes back is a new subject, with a new ref."""

    status = 409
    slug = "subject-erased"
    title = "The subject's data were erased; nothing can be granted for them"


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


class ServiceUnavailable(ConsentError):
    """The service could not reach what it stores to: the database connection was lost or refused, the database
    does not accept connections, or the disk is full. The transaction that met it was rolled back, so as a rule
    nothing was recorded. One case the server cannot know: a connection lost during the commit itself, when the
    database may have kept the write. Send the same request again after Retry-After, with the same
    Idempotency-Key for a write, so that it is recorded once either way; `/readyz` says when the service is ready
    again."""

    status = 503
    slug = "service-unavailable"
    title = "The service is unavailable for a moment; send the request again"

    @classmethod
    def now(cls) -> ServiceUnavailable:
        return cls("The service could not reach its database or disk; the request did not go through. Send it again.")


# Nothing was kept and the same request may simply be sent again (503 with Retry-After): every surface that answers
# these in its own form catches both.
SEND_AGAIN: tuple[type[ConsentError], ...] = (WriteWindowExceeded, DatabaseBusy, ServiceUnavailable)
