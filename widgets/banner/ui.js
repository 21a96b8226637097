/*
 * The two layers and the re-open control.
 * CNIL 2020-092: "Accept all", "Reject all" and "Customise" on the first layer, the same element with the same size
 *   and style; closing ("Continue without accepting", or Esc) counts as refusal; the cookie policy is one link away
 *   and the third parties are named on the first layer.
 * Second layer: one switch per category, necessary locked on, nothing pre-ticked (Planet49, C-673/17): a switch is
 *   on only if the visitor accepted that category before.
 * WCAG 2.2 AA: role=dialog, aria-modal, labelled and described; focus moves in and comes back (2.4.3); Tab stays
 *   inside while the dialog is open, so no focused element is hidden behind it (2.4.11); Esc never accepts; targets
 *   are 24 px or more (2.5.8); the saved choice is announced in a status region (4.1.3).
 * The layers show what start-up hands to `mount` (texts, language, the accepted categories and what a button
 * chooses): this file decides nothing.
 */
import CSS from "./banner.css";
import {D, el, safe} from "./core.js";
import {gpcOn} from "./gpc.js";
import {ACCEPT, DISMISS, EVT, ID, NECESSARY, REJECT, SAVE} from "./strings.js";

let T, L, ok, choose, root, back;
export let reopen, status;

export function addCSS() {
  const adopted = safe(() => {
    const s = new CSSStyleSheet();
    s.replaceSync(CSS);
    D.adoptedStyleSheets = [...D.adoptedStyleSheets, s];
    return 1;
  });
  if (!adopted) safe(() => D.head.append(el("style", {}, CSS)));
}

/**
 * The status region (present before anything is announced) and the persistent re-open control.
 * @param {Object} texts the config's texts in `lang` @param {string} lang
 * @param {(category: string) => boolean} accepted @param {(method: string, picked?: string[]) => void} chooser
 */
export function mount(texts, lang, accepted, chooser) {
  T = texts;
  L = lang;
  ok = accepted;
  choose = chooser;
  status = el("p", {role: "status", class: ID + "-sr"});
  reopen = el("button", {type: "button", id: ID + "-re", "aria-haspopup": "dialog", hidden: true, onclick: () => safe(openDialog)}, T.reopen);
  D.body.append(status, reopen);
}

const button = (label, fn, cls) => el("button", {type: "button", class: ID + (cls || "-btn"), onclick: () => safe(fn)}, label);

/** @param {boolean} [two] second layer */
export function openDialog(two) {
  if (!root) back = D.activeElement;
  closeDialog(1);
  const kids = [
    el("div", {class: ID + "-h"}, [el("h2", {id: ID + "-t"}, two ? T.prefs_title : T.title), button(T.close, () => choose(DISMISS), "-x")]),
    el("p", {id: ID + "-d"}, two ? T.prefs_body : T.body),
  ];
  if (!two) {
    if (T.controllers) kids.push(el("p", {}, T.controllers));
    kids.push(el("p", {}, el("a", {href: T.policy_url}, T.policy)));
  }
  if (gpcOn()) kids.push(el("p", {class: ID + "-g"}, T.gpc));
  if (two) T.categories.forEach((c) => {
    const lock = c.id == NECESSARY, id = ID + "-" + c.id;
    kids.push(el("div", {class: ID + "-cat"}, [
      el("label", {class: ID + "-sw"}, [
        el("input", {type: "checkbox", role: "switch", id, name: c.id, checked: ok(c.id), disabled: lock, "aria-describedby": id + "-d"}),
        lock ? c.title + " (" + T.always_on + ")" : c.title,
      ]),
      el("p", {id: id + "-d"}, c.description),
    ]));
  });
  kids.push(el("div", {class: ID + "-row"}, [
    button(T.accept, () => choose(ACCEPT)),
    button(T.reject, () => choose(REJECT)),
    two ? button(T.save, () => choose(SAVE, [...root.querySelectorAll("input:checked:enabled")].map((i) => i.name)))
      : button(T.customise, () => openDialog(1)),
  ]));
  const box = el("div", {role: "dialog", "aria-modal": "true", "aria-labelledby": ID + "-t", "aria-describedby": ID + "-d", class: ID + "-box", tabindex: "-1"}, kids);
  root = el("div", {id: ID, lang: L, onkeydown: (e) => safe(() => key(e, box))}, box);
  reopen.hidden = true;
  D.body.prepend(root);
  box.focus();
  safe(() => performance.mark(EVT + "visible"));
}

function key(e, box) {
  if (e.key == "Escape") {
    e.preventDefault();
    choose(DISMISS);
  } else if (e.key == "Tab") {
    const f = root.querySelectorAll("a,button,input:enabled"), first = f[0], last = f[f.length - 1], at = D.activeElement;
    if (e.shiftKey ? at == first || at == box : at == last) {
      e.preventDefault();
      (e.shiftKey ? last : first).focus();
    }
  }
}

/**
 * Focus goes back to where it was: the re-open control or the page's own control that opened the dialog. A dialog
 * that opened by itself sits first in the body, so after it the next Tab starts at the top of the page.
 * @param {boolean} [swap] another layer replaces this one: keep the focus to come back to
 */
export function closeDialog(swap) {
  if (!root) return;
  root.remove();
  root = null;
  if (swap) return;
  reopen.hidden = false;
  if (back && back != D.body && back.isConnected) back.focus();
}
