/*
 * The visitor's choice, kept in a first-party cookie named by the config (strictly necessary: it remembers the
 * choice, so it needs no consent; ePrivacy 5(3), CNIL 2020-091 art. 5). Its value is URL-encoded JSON:
 *   {id: consent id, v: cookie-policy version shown, t: time (s), c: accepted categories, m: method, p: 1 if the
 *    server has not acknowledged the record yet}
 * Nothing is stored before the visitor chooses (or before a GPC refusal is recorded).
 */
import {D, safe} from "./core.js";

/** @returns {?{id: string, v: string, t: number, c: string[], m: string, p?: number}} */
export function readChoice(name) {
  return safe(() => {
    const m = D.cookie.match("(?:^|;)\\s*" + name + "=([^;]*)");
    const s = m && JSON.parse(decodeURIComponent(m[1]));
    return s && /^ck_[\w-]{22}$/.test(s.id) && Array.isArray(s.c) && s.t > 0 ? s : null;
  }, null);
}

export function writeChoice(name, s, days) {
  safe(() => {
    D.cookie = name + "=" + encodeURIComponent(JSON.stringify(s)) + ";path=/;max-age=" + days * 86400 +
      ";samesite=lax" + (location.protocol == "https:" ? ";secure" : "");
  });
}
