/*
 * Google Consent Mode v2. The default (all denied but security_storage) is pushed synchronously when this script
 * runs, so the banner script must come BEFORE any Google tag in the page; an update follows every choice, and
 * every page load that finds a valid stored choice. Without a gtag() of the page's own, commands are pushed to
 * dataLayer as `arguments` objects, exactly as gtag.js expects them.
 *
 * Mapping (all seven types):
 *   security_storage          necessary: authentication, fraud prevention, CSRF; exempt, always granted
 *   functionality_storage     preferences: Google's own example is remembering the language, which our cookie
 *                             policy lists (ds_lang) as a preference cookie that needs consent
 *   personalization_storage   preferences
 *   analytics_storage         analytics
 *   ad_storage, ad_user_data, ad_personalization   marketing
 */
import {W, safe} from "./core.js";
import {MARKETING, NECESSARY} from "./strings.js";

const CM = {
  security_storage: NECESSARY,
  functionality_storage: "preferences",
  personalization_storage: "preferences",
  analytics_storage: "analytics",
  ad_storage: MARKETING,
  ad_user_data: MARKETING,
  ad_personalization: MARKETING,
};

export function gtag() {
  const a = arguments;
  safe(() => (W.gtag ? W.gtag.apply(W, a) : (W.dataLayer = W.dataLayer || []).push(a)));
}

/** @param {(category: string) => boolean} ok @returns {Object<string, string>} */
export function consentTypes(ok) {
  const s = {};
  for (const k in CM) s[k] = ok(CM[k]) ? "granted" : "denied";
  return s;
}
