// rebalancerd status page: live refresh. The page is complete without
// this script; with it, the page fetches its own URL every few seconds and
// replaces each element marked data-live with its new version, so that a
// fill or a new plan shows without a reload. It only reads: it sends GET
// requests to the page's own URL and nothing else.
(function () {
  'use strict';
  var every = 2000;
  var state = document.getElementById('refresh-state');
  if (!window.fetch || !window.DOMParser || !state) {
    return;
  }
  state.textContent = 'Updates every ' + every / 1000 + ' s.';

  // focusKey identifies the focused element so that it can be focused
  // again after its region was replaced (a keyboard user keeps their place).
  function focusKey() {
    var el = document.activeElement;
    if (!el || el === document.body || !el.closest('[data-live]')) {
      return null;
    }
    return el.id ? '#' + CSS.escape(el.id) : el.getAttribute('href') ? 'a[href="' + CSS.escape(el.getAttribute('href')) + '"]' : null;
  }

  function update(html) {
    var next = new DOMParser().parseFromString(html, 'text/html');
    var key = focusKey();
    document.querySelectorAll('[data-live][id]').forEach(function (old) {
      var fresh = next.getElementById(old.id);
      if (fresh) {
        old.replaceWith(document.importNode(fresh, true));
      }
    });
    if (key) {
      var el = document.querySelector(key);
      if (el) {
        el.focus();
      }
    }
  }

  function tick() {
    if (document.hidden) {
      setTimeout(tick, every);
      return;
    }
    fetch(location.href, { headers: { Accept: 'text/html' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) {
          throw new Error('HTTP ' + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        update(html);
        state.textContent = 'Updates every ' + every / 1000 + ' s.';
      })
      .catch(function (err) {
        state.textContent = 'Update failed (' + err.message + '); retrying.';
      })
      .then(function () {
        setTimeout(tick, every);
      });
  }
  setTimeout(tick, every);
})();
