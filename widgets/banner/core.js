/*
 * Shared helpers. The banner runs inside someone else's page: every access to storage, the DOM or a browser API
 * goes through `safe`, which catches, warns once and returns a neutral value, so the banner never throws into the
 * host page (a blocked cookie jar, an old browser or a hostile DOM degrades the banner, never the site).
 */
export const W = window, D = document, N = navigator;

/**
 * Run fn(); on any exception warn and return `fallback`.
 * @template T @param {() => T} fn @param {T} [fallback] @returns {T}
 */
export function safe(fn, fallback) {
  try {
    return fn();
  } catch (e) {
    try {
      console.warn("[cookie-banner]", e);
    } catch (_) {}
    return fallback;
  }
}

/**
 * Create an element: attributes (`on*` become listeners, null is skipped) and children (strings become text
 * nodes: texts are never parsed as HTML).
 * @param {string} tag @param {Object} [attrs] @param {(Node|string)[]|Node|string} [kids] @returns {HTMLElement}
 */
export function el(tag, attrs, kids) {
  const e = D.createElement(tag);
  for (const k in attrs) {
    const v = attrs[k];
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v != null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...[].concat(kids == null ? [] : kids));
  return e;
}

/** Seconds since the epoch. */
export const now = () => Math.floor(Date.now() / 1e3);
