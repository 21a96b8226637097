/*
 * Constants in one place. Every text the visitor reads comes from the site's configuration
 * (policy_docs/banner/<lang>.yaml, served by GET /v1/banner/config): nothing here is shown.
 */
/** Prefix of the window events: "cookie-banner:change", "cookie-banner:ready", "cookie-banner:recorded". */
export const EVT = "cookie-banner:";
export const NECESSARY = "necessary", MARKETING = "marketing";
/** Methods recorded with a choice (server/banner/schemas.py METHODS). */
export const ACCEPT = "accept_all", REJECT = "reject_all", SAVE = "save", GPC = "gpc", DISMISS = "dismiss";
/** Root element id; the re-open control is ID + "-re". */
export const ID = "ckb";
