/*
 * Choices the server has not acknowledged yet, so that a 429, a 503 or a lost network never loses one. Each is the
 * exact body sent, with its own choice id, kept in localStorage under the consent id ("ckb:" + id) and in memory
 * (storage may be blocked). They are sent one after another (the ledger keeps the order of the visitor's choices)
 * until the server answers 2xx, which it does once per choice id however often one is sent; after a 429, a 5xx or a
 * network error the same body goes again, after Retry-After or a backoff of up to a minute; another 4xx is final
 * (the server will never take that body). What is left when the page closes is sent at the next page load.
 */
import {postJSON} from "./api.js";
import {W, safe} from "./core.js";

let url, done, list = [], busy, delay = 1;
const key = (id) => "ckb:" + id;
const keep = (id) =>
  safe(() => (list.length ? W.localStorage.setItem(key(id), JSON.stringify(list)) : W.localStorage.removeItem(key(id))));

/** Start with what an earlier page left for this consent id. @returns {number} how many choices wait */
export function open(recordUrl, id, onRecorded) {
  url = recordUrl;
  done = onRecorded;
  list = (id && safe(() => JSON.parse(W.localStorage.getItem(key(id))), 0)) || [];
  flush();
  return list.length;
}

export function push(body) {
  list.push(body);
  keep(body.consent_id);
  flush();
}

function flush() {
  const body = list[0];
  if (busy || !body) return;
  busy = 1;
  const next = (wait) => {
    busy = 0;
    if (wait) setTimeout(flush, wait * 1e3);
    else flush();
  };
  postJSON(url, body).then(
    (r) => {
      delay = 1;
      list.shift();
      keep(body.consent_id);
      safe(() => done(body, r, list.length));
      next();
    },
    (r) => {
      const s = r && r.status;
      if (s && s < 500 && s != 429 && s != 408) {
        safe(() => console.warn("[cookie-banner] not recorded", s));
        list.shift();
        keep(body.consent_id);
        return next();
      }
      const after = +(r && r.headers && r.headers.get("Retry-After"));
      next(after > 0 ? after : (delay = Math.min(delay * 2, 60)));
    },
  );
}
