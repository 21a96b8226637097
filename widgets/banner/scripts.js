/*
 * Prior consent (ePrivacy 5(3), loi 78-17 art. 82): the site writes its tags inert and this file brings them to
 * life once every category they name is accepted:
 *   <script type="text/plain" data-category="analytics" src="..."></script>   (external or inline)
 *   <iframe data-src="..." data-category="marketing"></iframe>                 (also img, video...: any data-src)
 * `data-type` sets the type of the revived script (e.g. "module"). External scripts revived together keep their
 * document order (async = false). A tag added to the page later is revived by the next choice.
 * A withdrawal cannot stop code that already runs in this page: Consent Mode tags follow the update, other tags stop
 * on the next page (a site that wants them gone at once reloads on "cookie-banner:change").
 */
import {D, safe} from "./core.js";

/** @param {(category: string) => boolean} ok */
export function unblock(ok) {
  safe(() => {
    D.querySelectorAll("[data-category]").forEach((n) => {
      if (!n.dataset.category.split(/\s+/).every(ok)) return;
      if (n.tagName == "SCRIPT") {
        if (n.type != "text/plain") return;
        const s = D.createElement("script");
        for (const a of n.attributes) s.setAttribute(a.name, a.value);
        s.type = n.dataset.type || "text/javascript";
        s.text = n.text;
        s.async = false;
        n.replaceWith(s);
      } else if (n.dataset.src) {
        n.src = n.dataset.src;
        n.removeAttribute("data-src");
      }
    });
  });
}
