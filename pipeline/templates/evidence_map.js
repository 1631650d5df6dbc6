/* Evidence map filters. Progressive enhancement: without this script the form stays hidden and the whole map
   is shown. Reads only data-* attributes the generator wrote; never builds HTML from page text. */
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form || !form.elements) {
    return;
  }
  var fields = form.elements;
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-ind]"));
  var groups = Array.prototype.slice.call(document.querySelectorAll("[data-group]"));
  var docs = Array.prototype.slice.call(document.querySelectorAll("section[data-doc]"));
  var status = document.getElementById("filter-status");
  var printNote = document.getElementById("print-filters");
  var total = items.filter(function (el) { return !el.hasAttribute("data-cell"); }).length;

  function chosenText(select) {
    return select.options[select.selectedIndex] ? select.options[select.selectedIndex].text : "";
  }

  function keep(el, f) {
    if (f.flags && el.getAttribute("data-status") === "met") { return false; }
    if (f.area && el.getAttribute("data-area") !== f.area) { return false; }
    if (f.level && el.getAttribute("data-level") !== f.level) { return false; }
    if (f.doc && (" " + el.getAttribute("data-docs") + " ").indexOf(" " + f.doc + " ") < 0) { return false; }
    return true;
  }

  function apply() {
    var f = {
      flags: fields.flags.checked,
      area: fields.area.value,
      level: fields.level.value,
      doc: fields.doc.value
    };
    var shown = 0;
    items.forEach(function (el) {
      var ok = keep(el, f);
      if (el.hasAttribute("data-cell")) {
        el.classList.toggle("off", !ok);
      } else {
        el.hidden = !ok;
        if (ok) { shown += 1; }
      }
    });
    groups.forEach(function (g) {
      g.hidden = !g.querySelector("[data-ind]:not([hidden]):not(.off)");
    });
    docs.forEach(function (d) {
      d.hidden = Boolean(f.doc) && d.getAttribute("data-doc") !== f.doc;
    });
    var active = [];
    if (f.flags) { active.push("only partial or missing"); }
    if (f.area) { active.push("area " + chosenText(fields.area)); }
    if (f.doc) { active.push("document " + chosenText(fields.doc)); }
    if (f.level) { active.push("level " + chosenText(fields.level)); }
    var summary = active.length ? "Showing " + shown + " of " + total + " indicators" : "Showing all " + total + " indicators";
    status.textContent = summary;
    printNote.textContent = active.length ? "Filtered view (" + active.join(", ") + "): " + shown + " of " + total + " indicators." : "";
    document.documentElement.classList.toggle("filtered", active.length > 0);
  }

  form.hidden = false;
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (ev) { ev.preventDefault(); });
  form.addEventListener("reset", function () { window.setTimeout(apply, 0); });

  /* A link to something a filter hides clears the filters first, so no link ever goes nowhere. */
  document.addEventListener("click", function (ev) {
    var link = ev.target && ev.target.closest ? ev.target.closest("a[href^='#']") : null;
    if (!link) { return; }
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (target && (target.closest("[hidden]") || target.closest(".off"))) {
      form.reset();
      apply();
    }
  });
  apply();
}());
