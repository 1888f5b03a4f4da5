/* Progressive enhancement for a running bulk job's page: the progress moves by itself.
   Markup: <section data-refresh-seconds="2"> ... <span class="live-control" hidden><input type="checkbox"
   id="live-updates"> <label for="live-updates">.
   The page's Content-Security-Policy lets it load this file (script-src 'self') but fetch nothing
   (no connect-src): it updates by reloading itself, which the server renders with the job as it is now.
   Without this script the page offers a Refresh link. Updates wait while the tab is hidden or a control other
   than the checkbox has the focus (a keyboard user on Cancel is not moved away), the checkbox stops them
   (WCAG 2.2.2), and the scroll position and the checkbox's focus are kept across reloads. The page of a
   finished job does not load this file: updates end with the job. */
(function () {
  "use strict";
  var live = document.querySelector("[data-refresh-seconds]");
  var toggle = document.getElementById("live-updates");
  if (!live || !toggle) { return; }
  var seconds = Math.max(1, parseInt(live.getAttribute("data-refresh-seconds"), 10) || 2);
  var OFF = "job-progress:off", SCROLL = "job-progress:scroll", FOCUS = "job-progress:focus";
  var store, here = location.pathname;
  try { store = window.sessionStorage; store.getItem(OFF); } catch (blocked) { return; }  // storage refused

  var control = toggle.closest(".live-control");
  if (control) { control.hidden = false; }
  toggle.checked = store.getItem(OFF) !== here;
  toggle.addEventListener("change", function () {
    if (toggle.checked) { store.removeItem(OFF); } else { store.setItem(OFF, here); }
  });
  var scrolled = (store.getItem(SCROLL) || "").split(" ");  // "<path> <scrollY>", kept for this page only
  store.removeItem(SCROLL);
  if (scrolled[0] === here) { window.scrollTo(0, parseInt(scrolled[1], 10) || 0); }
  if (store.getItem(FOCUS) === here) {
    store.removeItem(FOCUS);
    toggle.focus();
  }

  window.setInterval(function () {
    var focused = document.activeElement;
    if (!toggle.checked || document.hidden) { return; }
    if (focused && focused !== document.body && focused !== toggle) { return; }
    store.setItem(SCROLL, here + " " + Math.round(window.scrollY));
    if (focused === toggle) { store.setItem(FOCUS, here); }
    window.location.reload();
  }, seconds * 1000);
}());
