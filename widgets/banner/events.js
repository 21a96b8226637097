/*
 * What the page can react to. Window events (CustomEvent, detail shown):
 *   cookie-banner:ready     {categories}            config loaded; the stored choice (if valid) is applied
 *   cookie-banner:change    {categories, method}    a choice is applied (also on load with a valid stored choice)
 *   cookie-banner:recorded  {consent_id, receipt}   the server recorded the choice; receipt is a JWS
 * and window.CookieBanner = {show(), accepted(category), onChange(fn)} (main.js; types in index.d.ts).
 */
import {W, safe} from "./core.js";
import {EVT} from "./strings.js";

/** The page's own callbacks (CookieBanner.onChange), called with each change's detail. */
const listeners = [];

export const onChange = (f) => listeners.push(f);

export function emit(name, detail) {
  safe(() => W.dispatchEvent(new CustomEvent(EVT + name, {detail})));
  if (name == "change") listeners.forEach((f) => safe(() => f(detail)));
}
