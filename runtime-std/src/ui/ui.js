"use strict";
// Reads only: GET of the listing, of a deployment's events, and the event stream. Every value
// from the service goes into the page as text (textContent), never as markup.
(function () {
  var base = location.pathname.replace(/\/ui$/, "");
  var list = document.getElementById("list");
  var none = document.getElementById("none");
  var conn = document.getElementById("conn");
  var shown = {};
  var SHOWN = 50;
  var TYPES = ["deploymentStarted", "bundleDownload", "configDownload", "load", "deploy",
    "deploymentSuccess", "deploymentFailure"];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function get(url) {
    return fetch(url, { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("GET " + url + " answered " + r.status);
      return r.json();
    });
  }
  function state(s, text) { conn.dataset.state = s; conn.textContent = text; }
  // One request at a time per key; asked again meanwhile, it runs once more after.
  var busy = {};
  function once(key, run) {
    if (busy[key]) { busy[key] = 2; return; }
    busy[key] = 1;
    run().catch(function (e) { state("lost", e.message); }).then(function () {
      var again = busy[key] === 2;
      busy[key] = 0;
      if (again) once(key, run);
    });
  }
  function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : ""; }

  function row(d) {
    var r = shown[d.deploymentId];
    if (r) return r;
    r = { li: el("li", "dep"), seq: 0, f: {} };
    r.li.dataset.id = d.deploymentId;
    r.title = el("h2");
    var dl = el("dl");
    ["deployment", "version", "compatibilityVersion", "state", "started", "ended", "failure"]
      .forEach(function (k) {
        r.f[k] = el("dd", k);
        dl.append(el("dt", "", k), r.f[k]);
      });
    r.steps = el("ol", "steps");
    r.steps.setAttribute("aria-label", "old v new instances after each step");
    r.li.append(r.title, dl, r.steps);
    shown[d.deploymentId] = r;
    return r;
  }
  function show(d) {
    var r = row(d), v = d.version || "", cut = v.lastIndexOf("-");
    r.title.textContent = d.bundleName + " " + (cut > 0 ? v.slice(0, cut) : v);
    r.li.className = "dep " + d.state;
    r.f.deployment.textContent = d.deploymentId;
    r.f.version.textContent = v;
    r.f.compatibilityVersion.textContent = d.compatibilityVersion || "(not resolved yet)";
    r.f.state.textContent = d.state;
    r.f.started.textContent = time(d.startedAt);
    r.f.ended.textContent = d.endedAt ? time(d.endedAt) : "(in flight)";
    r.f.failure.textContent = d.failure || "";
    r.f.failure.hidden = r.f.failure.previousSibling.hidden = !d.failure;
    return r;
  }
  function listing() {
    return get(base).then(function (all) {
      var ds = all.slice(0, SHOWN), keep = {};
      ds.forEach(function (d) {
        var known = !!shown[d.deploymentId], r = show(d);
        keep[d.deploymentId] = 1;
        list.append(r.li);
        if (!known || !d.endedAt || !r.ended) {
          r.ended = !!d.endedAt;
          events(d.deploymentId);
        }
      });
      Object.keys(shown).forEach(function (id) {
        if (!keep[id]) { shown[id].li.remove(); delete shown[id]; }
      });
      none.hidden = ds.length > 0;
    });
  }
  function events(id) {
    once(id, function () {
      return get(base + "/" + encodeURIComponent(id)).then(function (evs) {
        var r = shown[id], last = evs.length ? evs[evs.length - 1].deploymentSequence : 0;
        if (!r || last < r.seq) return;
        r.seq = last;
        var cols = evs.filter(function (e) { return e.eventType === "deploy"; }).map(column);
        r.steps.replaceChildren.apply(r.steps, cols);
      });
    });
  }
  function column(e) {
    var o = e.bundleOld.scale, n = e.bundleNew.scale, c = el("li", "col"), bars = el("span", "bars");
    bars.setAttribute("aria-hidden", "true");
    for (var i = 0; i < o + n; i++) bars.append(el("span", i < o ? "i old" : "i new"));
    c.title = o + " old, " + n + " new";
    c.append(bars, el("span", "label", o + "v" + n));
    return c;
  }

  var stream;
  function connect() {
    stream = new EventSource(base + "/events");
    stream.onopen = function () {
      state("live", "live");
      once("listing", listing);
    };
    stream.onerror = function () {
      if (stream.readyState === EventSource.CLOSED) {
        state("lost", "lost; trying again in 3 s");
        setTimeout(connect, 3000);
      } else {
        state("connecting", "reconnecting");
      }
    };
    TYPES.forEach(function (t) {
      stream.addEventListener(t, function (m) {
        if (!shown[m.data] || t !== "deploy") once("listing", listing);
        if (shown[m.data]) events(m.data);
      });
    });
  }
  once("listing", listing);
  connect();
})();
