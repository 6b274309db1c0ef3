// Live updates for the Lazarus dashboard: on each event of the stream (server-sent events at
// /ui/events) the page's <main> is fetched again and replaced, at most every 300 ms, and
// once more 2 s after the last event (what an event announces, such as a hook's execution
// record, may be stored just after it).
(function () {
  "use strict";
  var pending = false;
  function refresh() {
    pending = false;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main && document.activeElement.tagName !== "INPUT") {
          main.innerHTML = fresh.innerHTML;
        }
      })
      .catch(function () {});
  }
  var trailing = null;
  var source = new EventSource("/ui/events");
  source.onmessage = function () {
    if (!pending) { pending = true; setTimeout(refresh, 300); }
    if (trailing !== null) { clearTimeout(trailing); }
    trailing = setTimeout(refresh, 2000);
  };
  document.documentElement.setAttribute("data-live", "1");
  source.onopen = function () { document.documentElement.setAttribute("data-live", "open"); };
})();
