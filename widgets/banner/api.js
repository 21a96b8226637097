/*
 * Talking to the consent service: the site's configuration, and one record per choice. Calls carry no credentials;
 * the consent id is random (crypto.getRandomValues), not derived from anything about the visitor.
 */
import {safe} from "./core.js";

export const getJSON = (url) => fetch(url, {credentials: "omit"}).then((r) => (r.ok ? r.json() : Promise.reject(r.status)));

/** POST a JSON body; rejects with the Response (its status and Retry-After), or the network error. */
export const postJSON = (url, body) =>
  fetch(url, {
    method: "POST",
    credentials: "omit",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  }).then((r) => (r.ok ? r.json() : Promise.reject(r)));

/** "ck_" + 22 url-safe characters (132 random bits). */
export const newId = () =>
  "ck_" + btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(17)))).slice(0, 22)
    .replace(/\+/g, "-").replace(/\//g, "_");

/**
 * SHA-256 (hex) of the exact text shown: JSON.stringify of the texts object the banner rendered, which is its
 * RFC 8785 form (the server sends keys sorted). Without WebCrypto (plain http pages) the config's hash is used.
 * @returns {Promise<string>}
 */
export function textHash(texts, declared) {
  return (safe(() =>
    crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(texts)))
      .then((b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("")),
  ) || Promise.reject()).catch(() => declared);
}
