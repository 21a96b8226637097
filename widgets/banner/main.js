/*
 * Start-up and choices. Include the script before any tag it governs:
 *   <script src="https://consent.example/widgets/banner.js" data-site="demo"></script>
 * (data-api: the consent service's origin, default the script's; data-lang: force a language). The Consent Mode
 * default is pushed at once; the config is fetched at once; the banner renders when the DOM and the config are
 * both ready. Until a valid choice exists, only necessary cookies and tags are allowed (default deny).
 *
 * The entry module: each file of this directory is an ES module with one concern, imported explicitly;
 * widgets/build.mjs bundles them from here, with banner.css inlined, into dist/banner.js (npm run build).
 */
import {getJSON, newId, textHash} from "./api.js";
import {consentTypes, gtag} from "./consent-mode.js";
import {dropCookies} from "./cookies.js";
import {D, W, now, safe} from "./core.js";
import {emit, onChange} from "./events.js";
import {gpcOn} from "./gpc.js";
import {pickLang} from "./i18n.js";
import {open, push} from "./outbox.js";
import {unblock} from "./scripts.js";
import {readChoice, writeChoice} from "./storage.js";
import {ACCEPT, GPC, MARKETING, NECESSARY, SAVE} from "./strings.js";
import {addCSS, closeDialog, mount, openDialog, reopen, status} from "./ui.js";

const me = D.currentScript;
let C, T, L, hashP, st = null, cur = [];

const ok = (c) => c == NECESSARY || cur.includes(c);

function boot() {
  gtag("consent", "default", Object.assign(consentTypes((c) => c == NECESSARY), {wait_for_update: 500}));
  W.CookieBanner = {show: () => safe(() => C && openDialog()), accepted: ok, onChange};
  const api = me.dataset.api || new URL(me.src).origin;
  const dom = new Promise((r) => (D.readyState == "loading" ? D.addEventListener("DOMContentLoaded", r) : r()));
  Promise.all([getJSON(api + "/v1/banner/config?site=" + encodeURIComponent(me.dataset.site)), dom])
    .then(([cfg]) => safe(() => start(cfg)), (e) => safe(() => console.warn("[cookie-banner] no config", e)));
}

function start(cfg) {
  C = cfg;
  L = pickLang(cfg, me.dataset.lang || D.documentElement.lang);
  T = cfg.texts[L];
  hashP = textHash(T, cfg.hash[L]);
  addCSS();
  mount(T, L, ok, choose);
  const s = (st = readChoice(cfg.cookie));
  // Choices an earlier page could not get recorded go first, with their own ids (recorded once however often sent).
  const waiting = open(cfg.record, s && s.id, recorded);
  // CNIL: ask again after the re-prompt interval, and when a material cookie-policy version supersedes the one shown.
  const fresh = s && !cfg.stale.includes(s.v) && now() - s.t < cfg.reprompt_days * 86400;
  if (fresh && s.m != GPC) {
    apply(s.c, s.m);
    if (s.p && !waiting && s.v == cfg.policy[L].version) send(s);
    reopen.hidden = false;
  } else {
    cfg.categories.forEach((c) => c.id != NECESSARY && dropCookies(c.cookies));
    unblock(ok);
    if (gpcOn() && !(fresh && s.m == GPC)) choose(GPC);
    openDialog();
  }
  emit("ready", {categories: cur.slice()});
}

/** Apply and record a choice. @param {string} m method @param {string[]} [picked] categories switched on (save) */
function choose(m, picked) {
  const offered = C.categories.map((c) => c.id).filter((c) => c != NECESSARY);
  const c = m == ACCEPT ? offered.filter((x) => !(x == MARKETING && gpcOn())) : m == SAVE ? picked : [];
  st = {id: (st && st.id) || newId(), v: C.policy[L].version, t: now(), c, m, p: 1};
  writeChoice(C.cookie, st, C.cookie_days);
  apply(c, m);
  send(st);
  if (m != GPC) {
    closeDialog();
    status.textContent = T.saved;
  }
}

/** Consent Mode update, delete refused categories' cookies, run what is now allowed, tell the page. */
function apply(c, m) {
  cur = c.slice();
  gtag("consent", "update", consentTypes(ok));
  C.categories.forEach((x) => ok(x.id) || dropCookies(x.cookies));
  unblock(ok);
  emit("change", {categories: cur.slice(), method: m});
}

/** Hand a choice to the outbox (outbox.js): kept and sent until recorded, in the order chosen. */
function send(s) {
  const id = newId().slice(3);
  hashP.then((h) => push({site: C.site, consent_id: s.id, categories: s.c, method: s.m, policy_version: s.v, lang: L, text_sha256: h, gpc: gpcOn(), choice_id: id}));
}

/** The server recorded a choice: once none waits, the cookie says so. */
function recorded(body, r, left) {
  if (!left && st && st.p) {
    delete st.p;
    writeChoice(C.cookie, st, C.cookie_days);
  }
  emit("recorded", {consent_id: body.consent_id, receipt: r.receipt});
}

if (me && me.dataset.site && !W.CookieBanner) safe(boot);
