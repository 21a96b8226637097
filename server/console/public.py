"""Customer-facing routes of the service desk (no staff session):

- `GET /requests?token=...`, `POST /requests`: a person opens a data-subject request from the preference center.
  The token is a preference-center link token (ES256 JWS from this server's key store, audience
  "preference-center", `use` "preferences", `sub` = the subject ref). It travels in the form body, not in a
  cookie, so the form needs no other CSRF protection. An objection to direct marketing takes effect at once.
- `GET /dsr/export/{token}?format=json|csv`: the person downloads their access / portability export through the
  signed, expiring link they were mailed (itsdangerous, salt "dsr-export").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.accesslog import log_access
from server.auth.keys import ALGORITHM
from server.console.web import HEADERS, desk_of, form_of
from server.db import busy_as_domain_error
from server.dsr.deadlines import received_on
from server.dsr.export import FORMATS, ExportLinkRefused, subject_export, to_csv_zip, to_json
from server.errors import SEND_AGAIN, ConsentError, InvalidRequest
from server.i18n import choose_language
from server.models import DataSubjectRequest, Subject
from server.services import services_of

AUDIENCE = "preference-center"
# The same request sent again this soon is the same submission (a double click, the form sent again from the
# browser's history): answered with the first request's page, not opened twice.
REPEAT = timedelta(minutes=10)
PUBLIC_KINDS = ("access", "portability", "rectification", "erasure", "restriction", "objection")
TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "skip": "Skip to main content",
        "controller": "Data controller",
        "dpo": "Data protection officer",
        "title": "Make a request about your data",
        "intro": "We answer within one month. It is free. We may ask you to confirm your identity.",
        "kind": "What do you want?",
        "kinds": {
            "access": "A copy of the data you hold about me (access)",
            "portability": "My data in a reusable format, JSON and CSV (portability)",
            "rectification": "Correct my data (rectification)",
            "erasure": "Erase my data (erasure)",
            "restriction": "Stop using my data for now (restriction)",
            "objection": "Stop all marketing on every channel (objection, at once)",
        },
        "details": "Anything we should know (optional)",
        "send": "Send my request",
        "choose": "Choose what you want.",
        "too_long": "Your message is longer than 2,000 characters. Please shorten it and send your request again.",
        "done_title": "Request received",
        "received": "We received your request #{id} on {received}. We will answer by {due} at the latest.",
        "objected": "Done: you will receive no more marketing from us, on any channel (request #{id}).",
        "link_title": "This link does not work",
        "link_bad": "This link is not valid or has expired. Open your preferences again from a recent email.",
        "busy": "Your request could not be recorded just now. Please send it again in a moment.",
        "export_bad": "This download link is not valid or has expired. Contact us to receive a new one.",
        "erased": "Your data was erased at your request: there is nothing left to download.",
        "format_bad": "This download format is unknown: the link offers JSON (format=json) or CSV (format=csv).",
        "erased_title": "Your data was erased",
        "erased_request": "At your request, we erased your personal data. We keep no preferences for you and send "
        "you nothing. To make another request about your data, write to us at the address below.",
    },
    "fr": {
        "skip": "Aller au contenu principal",
        "controller": "Responsable du traitement",
        "dpo": "Délégué à la protection des données",
        "title": "Faire une demande sur vos données",
        "intro": "Nous répondons dans un délai d'un mois. C'est gratuit. Nous pouvons vous demander de confirmer "
        "votre identité.",
        "kind": "Que souhaitez-vous ?",
        "kinds": {
            "access": "Une copie des données que vous détenez sur moi (accès)",
            "portability": "Mes données dans un format réutilisable, JSON et CSV (portabilité)",
            "rectification": "Corriger mes données (rectification)",
            "erasure": "Effacer mes données (effacement)",
            "restriction": "Cesser d'utiliser mes données pour l'instant (limitation)",
            "objection": "Arrêter toute prospection sur tous les canaux (opposition, immédiate)",
        },
        "details": "Ce que nous devrions savoir (facultatif)",
        "send": "Envoyer ma demande",
        "choose": "Choisissez ce que vous souhaitez.",
        "too_long": "Votre message dépasse 2 000 caractères. Merci de le raccourcir et d'envoyer de nouveau votre "
        "demande.",
        "done_title": "Demande reçue",
        "received": "Nous avons reçu votre demande n° {id} le {received}. Nous vous répondrons au plus tard le {due}.",
        "objected": "C'est fait : vous ne recevrez plus aucune prospection de notre part, sur aucun canal "
        "(demande n° {id}).",
        "link_title": "Ce lien ne fonctionne pas",
        "link_bad": "Ce lien n'est pas valide ou a expiré. Ouvrez de nouveau vos préférences depuis un e-mail récent.",
        "busy": "Votre demande n'a pas pu être enregistrée à l'instant. Merci de l'envoyer de nouveau dans un moment.",
        "export_bad": "Ce lien de téléchargement n'est pas valide ou a expiré. Contactez-nous pour en recevoir un "
        "nouveau.",
        "erased": "Vos données ont été effacées à votre demande : il n'y a plus rien à télécharger.",
        "format_bad": "Ce format de téléchargement est inconnu : le lien propose JSON (format=json) ou CSV "
        "(format=csv).",
        "erased_title": "Vos données ont été effacées",
        "erased_request": "À votre demande, nous avons effacé vos données personnelles. Nous ne conservons aucune "
        "préférence pour vous et ne vous envoyons rien. Pour faire une autre demande sur vos données, écrivez-nous à "
        "l'adresse ci-dessous.",
    },
}


class LinkRefused(ConsentError):
    status = 403
    slug = "link-token-refused"
    title = "The link is not valid"


def verify_preference_token(request: Request, token: str | None) -> str:
    """The subject ref of a valid preference-center link token, or `LinkRefused`."""
    services = services_of(request)
    if not token or token.count(".") != 2 or len(token) > 4096:
        raise LinkRefused("no valid link token")
    try:
        claims = jwt.decode(token, services.keys.key_set, algorithms=[ALGORITHM]).claims
    except (JoseError, ValueError, KeyError, TypeError):
        raise LinkRefused("the link token does not verify") from None
    exp, ref = claims.get("exp"), claims.get("sub")
    if (
        claims.get("aud") != AUDIENCE
        or claims.get("iss") not in services.links.accepted
        or claims.get("use") != "preferences"
        or not isinstance(exp, int)
        or exp <= time.time()
        or not isinstance(ref, str)
        or not 0 < len(ref) <= 255
    ):
        raise LinkRefused("the link token is expired or not a preference-center link")
    return ref


def _lang(request: Request, explicit: str | None, subject: Subject | None = None) -> str:
    """As the preference center chooses: the page's `lang`, else the subject's locale, else `Accept-Language`, else
    French (the controller's jurisdiction)."""
    locale = subject.locale if subject is not None else None
    return choose_language(explicit, locale, request.headers.get("accept-language"))


def _erased(request: Request, lang: str, wants_json: bool = False) -> Response:
    """410, as the preference center answers an erased person's link: their data no longer exists here. They may
    still exercise their rights, in writing to the controller, whose address the page gives."""
    if wants_json:
        return _json({"error": "subject_erased", "detail": "this subject's data was erased (GDPR 17)"}, 410)
    texts = TEXTS[lang]
    return _html(request, "public_error.html", lang, 410, title=texts["erased_title"], message=texts["erased_request"])


def _html(request: Request, template: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = desk_of(request).render(template, lang=lang, t=TEXTS[lang], **context)
    retry = {"Retry-After": "1"} if status == 503 else {}  # a busy database: send it again
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **retry})


async def request_form(request: Request) -> Response:
    """The form a person reaches from their preference center."""
    explicit = request.query_params.get("lang")
    token = request.query_params.get("token", "")
    try:
        ref = verify_preference_token(request, token)
    except LinkRefused:
        lang = _lang(request, explicit)
        return _html(request, "public_error.html", lang, 403, message=TEXTS[lang]["link_bad"])
    subject = await Subject.get_or_none(ref=ref)
    lang = _lang(request, explicit, subject)
    if subject is not None and subject.erased_at is not None:
        return _erased(request, lang)
    return _form_page(request, lang, 200, token, error=None)


def _form_page(
    request: Request, lang: str, status: int, token: str | None, *, error: str | None, kind: str = "", details: str = ""
) -> HTMLResponse:
    """The request form, again with what the person chose and wrote when it comes back with an error."""
    return _html(
        request,
        "public_request.html",
        lang,
        status,
        token=token or "",
        kinds=PUBLIC_KINDS,
        error=error,
        chosen=kind if kind in PUBLIC_KINDS else PUBLIC_KINDS[0],
        details=details,
    )


async def submit_request(request: Request) -> Response:
    """Open the request (JSON answer for `Accept: application/json`, a page otherwise)."""
    desk = desk_of(request)
    try:
        form = await form_of(request)
    except ConsentError:
        form = {}
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        ref = verify_preference_token(request, form.get("token"))
    except LinkRefused as exc:
        if wants_json:
            return _json({"error": "link_token_refused", "detail": exc.detail}, 403)
        lang = _lang(request, form.get("lang"))
        return _html(request, "public_error.html", lang, 403, message=TEXTS[lang]["link_bad"])
    subject = await Subject.get_or_none(ref=ref)
    lang = _lang(request, form.get("lang"), subject)
    if subject is not None and subject.erased_at is not None:
        return _erased(request, lang, wants_json)
    kind, details = form.get("kind", ""), form.get("details", "")
    if kind not in PUBLIC_KINDS:
        if wants_json:
            return _json({"error": "invalid_kind", "detail": f"kind must be one of {', '.join(PUBLIC_KINDS)}"}, 422)
        return _form_page(request, lang, 422, form.get("token"), error=TEXTS[lang]["choose"], details=details)
    try:
        with busy_as_domain_error():
            created, new = await desk.requests.open_or_repeat(
                ref, kind, "preference_center", details, repeat_within=REPEAT
            )
    except InvalidRequest as exc:
        # The only field the person types is `details` (its length); the kind was checked above.
        if wants_json:
            return _json({"error": "invalid_request", "detail": exc.detail}, 422)
        return _form_page(
            request, lang, 422, form.get("token"), error=TEXTS[lang]["too_long"], kind=kind, details=details
        )
    except SEND_AGAIN as exc:
        if wants_json:
            busy = _json({"error": "database_busy", "detail": exc.detail}, 503)
            busy.headers["Retry-After"] = "1"
            return busy
        return _html(request, "public_error.html", lang, 503, message=TEXTS[lang]["busy"])
    created = await DataSubjectRequest.get(id=created.id)
    if wants_json:
        return _json(
            {
                "id": created.id,
                "kind": created.kind,
                "status": created.status,
                "received_at": created.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "due_on": created.due_on.isoformat(),
            },
            201 if new else 200,
        )
    texts = TEXTS[lang]
    received = received_on(created.received_at, desk.zone).isoformat()
    message = (
        texts["objected"].format(id=created.id)
        if created.status == "done" and kind == "objection"
        else texts["received"].format(id=created.id, received=received, due=created.due_on.isoformat())
    )
    return _html(request, "public_request_done.html", lang, 201 if new else 200, message=message)


def _json(data: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=HEADERS)


async def export_download(request: Request) -> Response:
    """GDPR 15 and 20: the person's export, built now, through the signed link they were mailed."""
    desk = desk_of(request)
    fmt = request.query_params.get("format", "json")
    try:
        request_id = desk.export_links.verify(request.path_params["token"])
    except ExportLinkRefused as exc:
        status = 410 if exc.reason == "expired" else 404
        lang = _lang(request, None)
        return _html(request, "public_error.html", lang, status, message=TEXTS[lang]["export_bad"])
    req = await DataSubjectRequest.get_or_none(id=request_id)
    if req is None or req.kind not in ("access", "portability") or req.status != "done":
        lang = _lang(request, None)
        return _html(request, "public_error.html", lang, 404, message=TEXTS[lang]["export_bad"])
    subject = await Subject.get(id=req.subject_id)
    lang = _lang(request, None, subject)
    if fmt not in FORMATS:
        return _html(request, "public_error.html", lang, 400, message=TEXTS[lang]["format_bad"])
    if subject.erased_at is not None:
        return _html(request, "public_error.html", lang, 410, message=TEXTS[lang]["erased"])
    now = desk.now()
    await log_access(
        at=now,
        actor_type="subject",
        actor_id="subject",
        action="dsr_export_download",
        subject_id=subject.id,
        detail={"request_id": req.id, "format": fmt},
    )
    catalog = await desk.services.catalog.get()
    data = await subject_export(subject, catalog, desk.controller, now)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    if fmt == "json":
        content, media, name = to_json(data), "application/json", f"my-data-{stamp}.json"
    else:
        content, media, name = to_csv_zip(data), "application/zip", f"my-data-{stamp}-csv.zip"
    return Response(
        content,
        media_type=media,
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


def unavailable_page(request: Request, exc: ConsentError) -> Response:
    """A public request page's answer when the database or the disk could not be used (503, Retry-After): the
    person's page in their language, saying to send it again."""
    lang = _lang(request, request.query_params.get("lang"))
    return _html(request, "public_error.html", lang, 503, message=TEXTS[lang]["busy"])
