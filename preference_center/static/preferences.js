/* Preference center page script (loaded with htmx; the page works without both).
 * - Removes the link token from the address bar once the session cookie holds it (no token in history).
 * - Inside the embed iframe, posts the page height to the embedding page (targetOrigin = its checked origin), and
 *   opens policy texts in a new tab: in the frame they would replace the center, with no way back. (Done here, not
 *   in the rows' markup, which is also the UI snapshot stored as what the person was shown, embedded or not.)
 * - Shows the center's own refusals (400, 409, 429, 503 marked X-Preference-Answer: why, and the rows as they
 *   stand), which htmx 2 does not swap by default; other failed saves get the generic message in the status live
 *   region (WCAG 4.1.3). Keeps focus inside the page. */
(function () {
  'use strict';
  var body = document.body;
  var embedded = body.classList.contains('pc-embedded');

  try {
    var url = new URL(window.location.href);
    if (!embedded && url.searchParams.has('token')) {
      url.searchParams.delete('token');
      window.history.replaceState(null, '', url.pathname + (url.search || '') + url.hash);
    }
  } catch (e) { /* old browser: the token simply stays in the URL */ }

  var parentOrigin = body.getAttribute('data-parent-origin');
  if (embedded && parentOrigin && window.parent !== window) {
    var last = 0;
    var post = function () {
      // The body's own height: the document's would never shrink below the current frame height.
      var height = Math.ceil(body.getBoundingClientRect().height);
      if (height !== last) {
        last = height;
        window.parent.postMessage({ type: 'preference-center:resize', height: height }, parentOrigin);
      }
    };
    if ('ResizeObserver' in window) {
      new ResizeObserver(post).observe(body);
    } else {
      window.addEventListener('resize', post);
    }
    document.addEventListener('htmx:afterSettle', post);
    post();
  }

  if (embedded) {
    document.addEventListener('click', function (event) {
      var link = event.target instanceof Element ? event.target.closest('a[href^="/policies/"]') : null;
      if (link) {
        link.target = '_blank';
        link.rel = 'noopener';
      }
    });
  }

  var status = document.getElementById('pc-status');
  document.addEventListener('htmx:beforeSwap', function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 400 && xhr.getResponseHeader('X-Preference-Answer') === '1') {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener('htmx:responseError', function () {
    if (status) { status.textContent = status.getAttribute('data-error') || ''; }
  });
  document.addEventListener('htmx:sendError', function () {
    if (status) { status.textContent = status.getAttribute('data-error') || ''; }
  });
  document.addEventListener('htmx:afterSettle', function () {
    // The control that had focus was replaced and has no twin (for example a re-consent button): do not drop
    // keyboard users at the top of the document.
    if (status && (document.activeElement === null || document.activeElement === body)) { status.focus(); }
  });
})();
