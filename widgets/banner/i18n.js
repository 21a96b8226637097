/*
 * Language: the script's data-lang, else the page's <html lang>, else the site's default language. The banner root
 * carries its own lang attribute (WCAG 3.1.2), as its language may differ from the page's.
 */

/** @param {{languages: string[], default_lang: string}} cfg @param {?string} want */
export function pickLang(cfg, want) {
  const l = String(want || "").toLowerCase().split("-")[0];
  return cfg.languages.includes(l) ? l : cfg.default_lang;
}
