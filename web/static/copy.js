/* Progressive enhancement for the console: a Copy button beside a read-only field.
   Markup: <input id="x" readonly> <button type="button" data-copy="x" hidden> <span data-copied-for="x" role="status">.
   Without this script the button stays hidden and the field can be selected and copied by hand.
   Loaded as a file of this origin: the page's Content-Security-Policy allows `script-src 'self'`, never inline. */
(function () {
  "use strict";
  function say(status, text) {
    if (status) { status.textContent = text; }
  }
  function copyBySelection(field, status) {
    field.focus();
    field.select();
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (ignored) { copied = false; }
    say(status, copied ? "Copied." : "Press Ctrl+C (or \u2318C) to copy the selected address.");
  }
  var buttons = document.querySelectorAll("button[data-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    var id = button.getAttribute("data-copy");
    var field = document.getElementById(id);
    var status = document.querySelector('[data-copied-for="' + id + '"]');
    if (!field) { return; }
    button.hidden = false;
    field.addEventListener("focus", function () { field.select(); });
    button.addEventListener("click", function () {
      say(status, "");
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(
          function () { say(status, "Copied."); },
          function () { copyBySelection(field, status); }
        );
      } else {
        copyBySelection(field, status);
      }
    });
  });
}());
