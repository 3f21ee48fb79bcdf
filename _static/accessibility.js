// Accessibility fixes for the theme's widgets (found by axe-core in tests/test_browser_site.py).
// - The search button's visible text ("Search Ctrl+K") must be part of its accessible name: drop the narrower
//   aria-label so the name comes from the text.
// - The colour-mode button is named by its aria-label; its icons' tooltips are decoration.
// - The sidebar's expand/collapse toggles (<summary> holding only an icon) get a name.
(function () {
  function fix() {
    document.querySelectorAll(".search-button-field[aria-label]").forEach(function (button) {
      button.removeAttribute("aria-label");
    });
    document.querySelectorAll(".theme-switch-button .theme-switch, .theme-switch-button svg").forEach(function (icon) {
      icon.setAttribute("aria-hidden", "true");
      icon.removeAttribute("title");
      icon.querySelectorAll("title").forEach(function (t) { t.remove(); });
    });
    document.querySelectorAll("nav details > summary").forEach(function (summary) {
      if (summary.hasAttribute("aria-label")) return;
      var link = summary.parentElement.parentElement.querySelector(":scope > a");
      var name = link ? link.textContent.trim() : "this section";
      summary.setAttribute("aria-label", "Show or hide the pages of " + name);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fix);
  } else {
    fix();
  }
  window.addEventListener("load", fix);
  // Font Awesome replaces <i> icons with <svg> after load: fix the new nodes too.
  new MutationObserver(function (records) {
    if (records.some(function (r) { return r.addedNodes.length; })) fix();
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
