// Progressive enhancement only: every page works without this file.
//
// <button data-copy="#id"> copies the text (or value) of the element #id; with an empty
// data-copy it copies the <pre> inside the closest .code block. Copy buttons carry the
// `hidden` attribute in the HTML so that nobody without JavaScript sees a dead button.
(function () {
  "use strict";

  function copyTarget(button) {
    var selector = button.getAttribute("data-copy");
    if (selector) {
      return document.querySelector(selector);
    }
    var block = button.closest(".code");
    return block ? block.querySelector("pre") : null;
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        return fallbackCopy(text);
      });
    }
    return fallbackCopy(text);
  }

  function flash(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    window.setTimeout(function () {
      button.textContent = original;
    }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = copyTarget(button);
        if (!target) {
          return;
        }
        var text = "value" in target && target.value !== undefined ? target.value : target.textContent;
        copy(text.trim()).then(
          function () {
            flash(button, "Copied");
          },
          function () {
            flash(button, "Press Ctrl+C");
          }
        );
      });
    });

    // <select data-autosubmit> submits its form on change (the form still has a button).
    document.querySelectorAll("[data-autosubmit]").forEach(function (field) {
      field.addEventListener("change", function () {
        if (field.form) {
          field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
        }
      });
    });
  });
})();
