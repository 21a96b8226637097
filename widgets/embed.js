/* Preference center embed loader.
 *
 *   <script src="https://HOST/widgets/embed.js" data-token="LINK_TOKEN" data-lang="fr"></script>
 *
 * Places the preference center in an iframe right after this script tag, sized to its content: the page inside
 * posts its height, and only messages from HOST that come from this very iframe are believed. HOST allows framing
 * by the origins in its EMBED_ORIGINS setting (CSP frame-ancestors); other pages get an empty frame.
 * Never throws into the host page. */
(function () {
  'use strict';
  try {
    var script = document.currentScript;
    if (!script || !script.src) { return; }
    var host = new URL(script.src).origin;
    var token = script.getAttribute('data-token');
    if (!token) { return; }
    var params = new URLSearchParams({ token: token, embed: '1', parent_origin: window.location.origin });
    var lang = script.getAttribute('data-lang');
    if (lang) { params.set('lang', lang); }

    var frame = document.createElement('iframe');
    frame.src = host + '/preferences?' + params.toString();
    frame.title = script.getAttribute('data-title') || 'Preference center';
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.setAttribute('loading', 'eager');
    frame.style.cssText = 'display:block;width:100%;min-width:0;border:0;height:480px;';
    frame.className = 'pc-embed-frame';
    script.parentNode.insertBefore(frame, script.nextSibling);

    window.addEventListener('message', function (event) {
      if (event.origin !== host || event.source !== frame.contentWindow) { return; }
      var data = event.data;
      if (!data || data.type !== 'preference-center:resize') { return; }
      var height = Number(data.height);
      if (isFinite(height) && height > 0 && height < 100000) {
        frame.style.height = Math.ceil(height) + 'px';
      }
    });
  } catch (error) {
    if (window.console && console.warn) { console.warn('preference center embed:', error); }
  }
})();
