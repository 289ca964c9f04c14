/* Consentry settings page: save a toggle in place. Without this script the same forms still work
   (each toggle is a form that posts and comes back with the receipt). A toggle only changes after the
   server confirms the change was recorded; on any failure it keeps showing the recorded state. */
(function () {
  "use strict";
  var statusBox = document.getElementById("status");
  var errorBox = document.getElementById("error");
  var receiptBox = document.getElementById("receipt");
  var historyBox = document.getElementById("history-list");

  function showError(message) {
    statusBox.textContent = "";
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function applyStates(states) {
    states.forEach(function (state) {
      var button = document.querySelector('button.switch[data-setting="' + state.key + '"]');
      if (!button) { return; }
      button.setAttribute("aria-checked", state.checked ? "true" : "false");
      button.value = state.checked ? "deny" : "allow";
      button.querySelector(".switch-state").textContent = state.status;
      var basis = document.getElementById("basis-text-" + state.key);
      if (basis) {
        basis.textContent = state.basis;
        basis.className = "basis-badge " + (state.explicit ? "basis-own" : "basis-default");
      }
    });
  }

  function save(form) {
    var button = form.querySelector("button.switch");
    if (!button || button.getAttribute("aria-busy") === "true") { return; }
    var body = new URLSearchParams();
    body.set("csrf_token", form.elements.csrf_token.value);
    body.set("setting", form.elements.setting.value);
    body.set("value", button.value);
    var scope = document.querySelector('input[name="scope"][type="radio"]:checked');
    body.set("scope", scope ? scope.value : "account");
    button.setAttribute("aria-busy", "true");
    errorBox.hidden = true;
    statusBox.textContent = "Saving…";
    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": form.elements.csrf_token.value }
    }).then(function (response) {
      return response.json().catch(function () { return { ok: false }; }).then(function (data) {
        if (response.status === 401 && data.signin) { window.location.assign(data.signin); return; }
        if (data.settings) { applyStates(data.settings); }
        if (typeof data.history_html === "string") { historyBox.innerHTML = data.history_html; }
        if (response.ok && data.ok) {
          receiptBox.innerHTML = data.receipt_html || "";
          receiptBox.hidden = false;
          statusBox.textContent = data.message || "Saved.";
        } else {
          // a refusal is a problem document (RFC 9457): its detail is the message
          showError(data.detail || "Your change was not saved. Please try again.");
        }
      });
    }).catch(function () {
      showError("Your change was not saved: the connection failed. Please try again.");
    }).then(function () {
      button.removeAttribute("aria-busy");
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.toggle-form"), function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      save(form);
    });
  });
})();
