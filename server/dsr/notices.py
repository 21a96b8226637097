"""Mails to the person about their request (GDPR 12): extension with its reasons, refusal with its reasons and the
right to complain, the export link, erasure done, and the notice before a restriction is lifted (GDPR 18(3)).

Sent through the mailer (SMTP, or the dev outbox). The request history records that a notice
went out, never the address it went to. With no email on file, the history says the person must be told by phone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from server.dsr.requests import Actor, history
from server.mail.mailer import Mailer
from server.models import Subject

log = logging.getLogger("server.dsr")

TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "extension": (
            "Your request: we need more time",
            "Hello,\n\nWe received your request ({kind}) on {received}. We need more time to answer it fully, "
            "and will answer by {due} at the latest.\n\nWhy: {reason}\n\n{complaint}",
        ),
        "refusal": (
            "Your request",
            "Hello,\n\nWe received your request ({kind}) on {received}. We cannot act on it, for this reason:\n\n"
            "{reason}\n\n{complaint}",
        ),
        "export": (
            "Your data is ready to download",
            "Hello,\n\nAs you asked ({kind}), here is everything we hold about you:\n\n"
            "JSON: {json_url}\nCSV (zip): {csv_url}\n\nThe links work for {days} days and only open your data: "
            "do not forward this email.\n\n{complaint}",
        ),
        "erasure": (
            "Your data has been erased",
            "Hello,\n\nAs you asked, we have erased your contact details. We keep, without them, the record of "
            "the choices you made, as the law requires us to prove them (GDPR 17(3)(e)), and a code that cannot be "
            "read back, so that we never contact you again. This is the last message we send to this address.",
        ),
        "restriction_lift": (
            "The restriction on your data will be lifted",
            "Hello,\n\nYou asked us to restrict the use of your data (GDPR 18). We are telling you, as the law "
            "requires, that we will lift this restriction from {lift_on}.\n\nWhy: {reason}\n\n{complaint}",
        ),
    },
    "fr": {
        "extension": (
            "Votre demande : nous avons besoin de plus de temps",
            "Bonjour,\n\nNous avons reçu votre demande ({kind}) le {received}. Il nous faut plus de temps pour y "
            "répondre complètement : nous vous répondrons au plus tard le {due}.\n\nMotif : {reason}\n\n{complaint}",
        ),
        "refusal": (
            "Votre demande",
            "Bonjour,\n\nNous avons reçu votre demande ({kind}) le {received}. Nous ne pouvons pas y donner "
            "suite, pour la raison suivante :\n\n{reason}\n\n{complaint}",
        ),
        "export": (
            "Vos données sont prêtes à être téléchargées",
            "Bonjour,\n\nComme vous l'avez demandé ({kind}), voici toutes les données que nous détenons sur "
            "vous :\n\nJSON : {json_url}\nCSV (zip) : {csv_url}\n\nLes liens sont valables {days} jours et "
            "n'ouvrent que vos données : ne transférez pas cet e-mail.\n\n{complaint}",
        ),
        "erasure": (
            "Vos données ont été effacées",
            "Bonjour,\n\nComme vous l'avez demandé, nous avons effacé vos coordonnées. Nous conservons, sans "
            "elles, l'historique de vos choix, car la loi nous impose de pouvoir les prouver (RGPD 17(3)(e)), et un "
            "code illisible qui nous empêche de vous recontacter. C'est le dernier message envoyé à cette adresse.",
        ),
        "restriction_lift": (
            "La limitation du traitement de vos données va être levée",
            "Bonjour,\n\nVous nous avez demandé de limiter l'utilisation de vos données (RGPD 18). Comme la loi "
            "le prévoit, nous vous informons que cette limitation sera levée à partir du {lift_on}.\n\n"
            "Motif : {reason}\n\n{complaint}",
        ),
    },
}
COMPLAINT = {
    "en": "You may contact our data protection officer at {dpo}, and lodge a complaint with the CNIL (www.cnil.fr).",
    "fr": "Vous pouvez contacter notre délégué à la protection des données ({dpo}) et introduire une réclamation "
    "auprès de la CNIL (www.cnil.fr).",
}
KIND_NAMES = {
    "en": {
        "access": "access to your data",
        "portability": "copy of your data",
        "rectification": "correction of your data",
        "erasure": "erasure of your data",
        "restriction": "restriction of the use of your data",
        "objection": "objection to marketing",
    },
    "fr": {
        "access": "accès à vos données",
        "portability": "copie de vos données",
        "rectification": "rectification de vos données",
        "erasure": "effacement de vos données",
        "restriction": "limitation de l'utilisation de vos données",
        "objection": "opposition à la prospection",
    },
}


def compose(notice: str, lang: str, dpo: str, **values: Any) -> tuple[str, str]:
    lang = lang if lang in TEXTS else "fr"
    subject, body = TEXTS[lang][notice]
    kind = values.get("kind")
    if kind is not None:
        values["kind"] = KIND_NAMES[lang].get(kind, kind)
    values["complaint"] = COMPLAINT[lang].format(dpo=dpo)
    return subject, body.format(**values) + "\n"


async def send_notice(
    mailer: Mailer,
    subject: Subject,
    request_id: int,
    notice: str,
    actor: Actor,
    now: datetime,
    dpo: str,
    **values: Any,
) -> bool:
    """Mail `notice` to the person and record it in the request history; False when it could not be mailed."""
    lang = subject.locale or "fr"
    if not subject.email:
        await history(request_id, actor, f"notice:{notice}", "not mailed (no email on file): tell the person", now)
        return False
    title, body = compose(notice, lang, dpo, **values)
    try:
        await mailer.send(mailer.message(subject.email, title, body, lang if lang in TEXTS else "fr"))
    except Exception as exc:  # SMTP down: the history says so and staff tell the person another way
        log.warning("notice not sent", extra={"error": type(exc).__name__})
        await history(request_id, actor, f"notice:{notice}", f"mail failed ({type(exc).__name__})", now)
        return False
    await history(request_id, actor, f"notice:{notice}", "mailed to the address on file", now)
    return True
