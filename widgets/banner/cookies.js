/*
 * Withdrawal and refusal delete the category's first-party cookies listed in the config (names, or prefixes ending
 * in "*"), on this host and on each parent domain they may have been set for. Cookies of other domains (third
 * parties) can only be removed by their owner or the browser; their scripts no longer run.
 */
import {D, safe} from "./core.js";

/** @param {string[]} list */
export function dropCookies(list) {
  safe(() => {
    const parts = location.hostname.split(".");
    D.cookie.split(";").forEach((c) => {
      const n = c.split("=")[0].trim();
      if (!n || !list.some((p) => (p.endsWith("*") ? n.startsWith(p.slice(0, -1)) : n == p))) return;
      const gone = n + "=;max-age=0;path=/";
      D.cookie = gone;
      for (let i = 0; i < parts.length - 1; i++) D.cookie = gone + ";domain=" + parts.slice(i).join(".");
    });
  });
}
