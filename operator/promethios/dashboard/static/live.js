// Live regions: an element with data-live="<url>" is refreshed from that URL every
// data-every seconds (default 5) with server-rendered HTML. No framework, no build step.
(function () {
  "use strict";
  function refresh(element) {
    fetch(element.dataset.live, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== element.innerHTML) {
          element.innerHTML = html;
          element.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () { /* try again next time */ });
  }
  document.querySelectorAll("[data-live]").forEach(function (element) {
    var every = Number(element.dataset.every || "5") * 1000;
    window.setInterval(function () { refresh(element); }, every);
  });
})();
