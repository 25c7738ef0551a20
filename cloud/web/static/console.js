// ClassOps console: confirm-then-fetch form actions with error messages, remembered list filters, and
// polling of live status. Pages work without it; this only makes them quicker and friendlier.
(function () {
  "use strict";
  var POLL_MS = 8000;
  var zh = document.documentElement.lang === "zh-CN";
  var TEXT = {
    working: zh ? "处理中…" : "Working…",
    network: zh ? "网络错误，请稍后重试" : "Network error; try again",
    failed: zh ? "操作失败" : "Failed"
  };

  function flash(message, kind) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.className = "flash " + (kind || "ok");
    box.hidden = !message;
    if (message) box.scrollIntoView({block: "nearest"});
  }

  function detailOf(body) {
    if (!body) return TEXT.failed;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map(function (d) { return d.msg || String(d); }).join("; ");
    return TEXT.failed;
  }

  // Messages survive the reload that follows a successful action.
  function carry(message) { try { sessionStorage.setItem("classops-flash", message); } catch (e) { /* private mode */ } }
  function carried() {
    try {
      var m = sessionStorage.getItem("classops-flash");
      sessionStorage.removeItem("classops-flash");
      return m;
    } catch (e) { return null; }
  }

  function submitForm(form, event) {
    // getAttribute, not form.action: a field named "action" shadows the property.
    var target = form.getAttribute("action") || window.location.pathname;
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post" || form.hasAttribute("data-plain")) return;
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    flash(TEXT.working, "info");
    var token = document.querySelector('meta[name="csrf-token"]');
    fetch(target, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: {"X-Requested-With": "fetch", "X-CSRF-Token": token ? token.content : ""}
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (response.ok && body && body.ok) {
          carry(body.message || "");
          window.location.assign(body.location || window.location.href);
          return;
        }
        if (response.status === 401) {
          window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
          return;
        }
        flash(detailOf(body), "error");
        buttons.forEach(function (b) { b.disabled = false; });
      });
    }).catch(function () {
      flash(TEXT.network, "error");
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  // A list's filters live in its URL (so a reload keeps them); coming back to the bare list restores them.
  function rememberFilters() {
    document.querySelectorAll("form[data-remember]").forEach(function (form) {
      var key = "classops-filter:" + form.getAttribute("data-remember");
      var query = location.search.replace(/^\?/, "");
      try {
        if (query) {
          localStorage.setItem(key, query.replace(/(^|&)page=\d+/, ""));
        } else {
          var saved = localStorage.getItem(key);
          if (saved) { location.replace(location.pathname + "?" + saved); }
        }
      } catch (e) { /* storage off: the URL still keeps the filters */ }
    });
    document.querySelectorAll("[data-forget]").forEach(function (link) {
      link.addEventListener("click", function () {
        try { localStorage.removeItem("classops-filter:" + link.getAttribute("data-forget")); } catch (e) { /* off */ }
      });
    });
  }

  function poll() {
    var nodes = document.querySelectorAll("[data-live]");
    if (!nodes.length || document.hidden) return;
    var keys = [];
    nodes.forEach(function (n) { var k = n.getAttribute("data-live"); if (keys.indexOf(k) < 0) keys.push(k); });
    fetch("/live?keys=" + encodeURIComponent(keys.join(",")), {
      credentials: "same-origin", headers: {"X-Requested-With": "fetch"}
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (states) {
      if (!states) return;
      nodes.forEach(function (n) {
        var s = states[n.getAttribute("data-live")];
        if (!s) return;
        if (n.textContent !== s.text) n.textContent = s.text;
        if (s.cls) {
          var kept = n.className.split(" ").filter(function (c) { return c.indexOf("st-") !== 0; });
          n.className = kept.concat([s.cls]).join(" ");
        }
      });
    }).catch(function () { /* the next round tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    rememberFilters();
    var message = carried();
    if (message) flash(message, "ok");
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.matches("form")) submitForm(form, event);
    });
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    if (document.querySelector("[data-live]")) {
      setInterval(poll, POLL_MS);
      document.addEventListener("visibilitychange", poll);
    }
  });
}());
