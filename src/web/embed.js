/* Bulletin's signup boxes: every <form data-bulletin> on the page answers in
   place through the JSON API. Without this script the same form posts to
   /subscribe and gets the full page, so a failure here falls back to that. */
(function () {
  "use strict";
  var THANKS = "Thank you for signing up for this newsletter. We've sent you a confirmation email. " +
    "If it hasn't come within a few minutes, look in your spam folder: signing up again won't send another right away.";
  var INVALID = "Please enter a correct email address";
  var TRY_AGAIN = "Something went wrong. Please try again in a moment.";

  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  // Daily and weekly digests come at the reader's own hour.
  function fillZones() {
    var z = zone();
    document.querySelectorAll("input[data-browser-zone]").forEach(function (input) {
      if (z && !input.value) input.value = z;
    });
  }

  // Defaults a site's own styles override (:where has no specificity).
  function addStyles() {
    if (document.getElementById("bulletin-styles") || !document.querySelector("form[data-bulletin]")) return;
    var style = document.createElement("style");
    style.id = "bulletin-styles";
    style.textContent =
      ":where(form.bulletin .visually-hidden){position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}" +
      ":where(form.bulletin .bulletin-row){display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end}" +
      ":where(form.bulletin .bulletin-field){flex:1 14rem;display:grid;gap:.25rem}" +
      ":where(form.bulletin input[type=email]){box-sizing:border-box;width:100%;font:inherit;padding:.45rem .6rem;border:1px solid #767676;border-radius:4px}" +
      ":where(form.bulletin button){font:inherit;padding:.45rem 1rem;border:0;border-radius:4px;background:#1a4d8f;color:#fff;cursor:pointer}" +
      ":where(form.bulletin .bulletin-error){color:#b00020;font-weight:600}" +
      ":where(form.bulletin .bulletin-status:empty){display:none}";
    document.head.appendChild(style);
  }

  function field(form, selector) { return form.querySelector(selector); }

  // Pasted twice, fixed ids would clash: each copy takes its own.
  function identify(form, email) {
    if (document.getElementById(email.id) === email) return;
    var base = "bulletin-" + form.dataset.bulletin.replace(/,/g, "-"), id = base + "-email";
    for (var n = 2; document.getElementById(id); n++) id = base + "-" + n + "-email";
    email.id = id;
    field(form, ".bulletin-error").id = id + "-error";
    (email.closest("label") || field(form, "label[for]")).htmlFor = id;
  }

  function showError(form, email, text) {
    var error = field(form, ".bulletin-error");
    error.textContent = text;
    error.hidden = false;
    email.setAttribute("aria-invalid", "true");
    email.setAttribute("aria-describedby", error.id);
    email.focus();
  }

  function clearError(form, email) {
    var error = field(form, ".bulletin-error");
    error.textContent = "";
    error.hidden = true;
    email.removeAttribute("aria-invalid");
    email.removeAttribute("aria-describedby");
  }

  // What the plain form would post: ticked boxes and radios, and hidden fields
  // (the "once more" page carries the reader's rhythm in one).
  function request(form, email) {
    var data = new FormData(form);
    var body = { email: email.value, newsletters: data.getAll("newsletter") };
    if (data.get("rhythm")) body.rhythm = data.get("rhythm");
    if (data.get("timezone")) body.timezone = data.get("timezone");
    return body;
  }

  function send(form, email, body) {
    // The API sits beside /subscribe (a framed box adds ?box=...), under the same public URL.
    var api = form.action.replace(/subscribe(\?.*)?$/, "api/subscriptions");
    return fetch(api, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        var error = json.error || {};
        // A zone this browser names but we do not know: the newsletter's own zone will do.
        if (error.code === "invalid_timezone" && body.timezone) {
          delete body.timezone;
          return send(form, email, body);
        }
        answer(form, email, response.status, error);
      });
    });
  }

  function answer(form, email, status, error) {
    var note = field(form, "[data-bulletin-status]");
    if (status === 202) {
      clearError(form, email);
      note.textContent = THANKS;
    } else if (error.code === "invalid_email") {
      note.textContent = "";
      showError(form, email, INVALID);
    } else {
      note.textContent = "";
      showError(form, email, (status < 500 && error.message) || TRY_AGAIN);
    }
  }

  function enhance(form) {
    if (form.bulletinReady) return;
    form.bulletinReady = true;
    var email = field(form, "input[name=email]");
    if (!email || !field(form, ".bulletin-error") || !field(form, "[data-bulletin-status]")) return;
    identify(form, email);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.getAttribute("aria-busy") === "true") return;
      var trap = field(form, "input[name=website]");
      if (trap && trap.value) return;
      // Busy, not disabled: disabling the focused button would drop the reader's focus.
      form.setAttribute("aria-busy", "true");
      send(form, email, request(form, email))
        .catch(function () {
          // Not reachable, or this site is not among allowed_origins: post the plain form.
          form.submit();
        })
        .then(function () {
          form.removeAttribute("aria-busy");
        });
    });
  }

  function start() {
    fillZones();
    addStyles();
    document.querySelectorAll("form[data-bulletin]").forEach(enhance);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
