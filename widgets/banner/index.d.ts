/**
 * What a site's own scripts can use of the cookie banner (`/widgets/banner.js`, built from main.js). Hand-written
 * from the sources: `window.CookieBanner` (main.js) and the window events (events.js). The banner defines nothing
 * else on the page.
 *
 *   <script src="https://consent.example/widgets/banner.js" data-site="demo"></script>
 *
 * Script attributes: `data-site` (required: a site of policy_docs/sites.yaml), `data-api` (the consent service's
 * origin, default the script's), `data-lang` (force a language; default the page's <html lang>, then the site's).
 * Blocked tags wait as `<script type="text/plain" data-category="analytics">` (`data-type` sets the revived
 * script's type) or `<iframe data-src="..." data-category="marketing">` until every category they name is accepted.
 */

/** A category id of the site's configuration; `necessary` is always accepted. */
export type Category = "necessary" | "preferences" | "analytics" | "marketing" | (string & {});

/**
 * How a choice was made (server/banner/schemas.py METHODS): the first layer's buttons, the second layer's "Save",
 * closing the dialog (Esc or "Continue without accepting", a refusal), or Global Privacy Control without a choice.
 */
export type Method = "accept_all" | "reject_all" | "save" | "gpc" | "dismiss";

export interface ReadyDetail {
  /** The accepted categories, `necessary` not listed. */
  categories: Category[];
}

export interface ChangeDetail {
  /** The accepted categories after this choice, `necessary` not listed. */
  categories: Category[];
  method: Method;
}

export interface RecordedDetail {
  /** The visitor's random consent id (`ck_` and 22 url-safe characters), also the subject ref in the ledger. */
  consent_id: string;
  /** The signed consent receipt: a compact JWS (ES256), checkable against /.well-known/jwks.json. */
  receipt: string;
}

export interface CookieBanner {
  /** Open the first layer again (e.g. from the site's own "Cookie settings" link); a no-op until the config is in. */
  show(): void;
  /** Whether `category` is accepted now: `necessary` always, any other only after the visitor accepted it. */
  accepted(category: Category): boolean;
  /** Call `listener` on every change, as `cookie-banner:change` is dispatched (a stored choice applied at load too). */
  onChange(listener: (detail: ChangeDetail) => void): void;
}

declare global {
  interface Window {
    /** Set as soon as the script runs (before the config is fetched); absent without `data-site`. */
    CookieBanner?: CookieBanner;
  }

  interface WindowEventMap {
    /** The config is loaded and the stored choice, if still valid, applied. */
    "cookie-banner:ready": CustomEvent<ReadyDetail>;
    /** A choice is applied: made now, or a valid stored one at load. */
    "cookie-banner:change": CustomEvent<ChangeDetail>;
    /** The consent service recorded the choice. */
    "cookie-banner:recorded": CustomEvent<RecordedDetail>;
  }
}
