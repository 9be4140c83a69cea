/* upkeep dashboard: actions call the /api routes; open pages poll /ui/live for new
   results and update the status (class, icon, word), since-when and message in place. */
(function () {
  "use strict";
  var ICONS = { ok: "\u2714", warning: "\u25b2", critical: "\u2716", unknown: "?", none: "\u2013" };

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function announce(text) {
    var region = document.getElementById("announce");
    if (region) { region.textContent = ""; region.textContent = text; }
  }

  function send(url, method, body) {
    var options = {
      method: method || "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      credentials: "same-origin"
    };
    if (body !== undefined && method !== "DELETE") { options.body = JSON.stringify(body); }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (error) { data = null; }
        if (!response.ok) {
          var detail = data && data.detail ? data.detail : response.statusText;
          if (typeof detail !== "string") { detail = JSON.stringify(detail); }
          throw new Error(response.status + ": " + detail);
        }
        return data;
      });
    });
  }

  function badgeSpan(word) {
    var span = document.createElement("span");
    span.className = "st st-" + word;
    var icon = document.createElement("span");
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = ICONS[word] || "\u2022";
    span.appendChild(icon);
    span.appendChild(document.createTextNode(" " + word));
    return span;
  }

  function badge(element, word) {
    element.textContent = "";
    element.appendChild(badgeSpan(word));
  }

  function reportTo(holder, text, failed) {
    var place = holder.querySelector(".result");
    if (!place) {
      place = document.createElement("span");
      place.className = "result";
      place.setAttribute("aria-live", "polite");
      holder.appendChild(place);
    }
    place.textContent = text;
    place.classList.toggle("error", !!failed);
    announce(text);
  }

  /* Buttons: <button class="act" data-url data-body data-method data-confirm>. */
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.act");
    if (!button) { return; }
    var question = button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    var body = {};
    try { body = JSON.parse(button.getAttribute("data-body") || "{}"); } catch (error) { body = {}; }
    button.disabled = true;
    var holder = button.parentNode;
    send(button.getAttribute("data-url"), button.getAttribute("data-method") || "POST", body)
      .then(function (data) {
        var runbook = button.closest(".runbook");
        if (!runbook) {
          // A check run, a silence removed: the page shows the new state after a reload.
          reportTo(holder, "Done.", false);
          window.setTimeout(function () { window.location.reload(); }, 600);
          return;
        }
        button.disabled = false;
        var runId = data && data.run_id;
        var started = runId ? (body.dry_run ? "Dry run" : "Run") + " #" + runId + " started." : "Started.";
        reportTo(holder, started, false);
        if (runId) {
          var anchor = document.createElement("a");
          anchor.href = "/runs/" + runId;
          anchor.textContent = " Open run #" + runId;
          holder.querySelector(".result").appendChild(anchor);
        }
        if (body.dry_run) {
          // Run now is offered once the same runbook's dry run started from this page.
          var wet = runbook.querySelector("button.wet");
          if (wet) { wet.disabled = false; }
        }
      })
      .catch(function (error) {
        button.disabled = false;
        reportTo(holder, "Failed: " + error.message, true);
      });
  });

  /* Forms: <form class="api" data-url>: fields sent as JSON; empty ones left out. */
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form.api");
    if (!form) { return; }
    event.preventDefault();
    var submitter = event.submitter || form.querySelector("button[type=submit]");
    var url = (submitter && submitter.getAttribute("data-url")) || form.getAttribute("data-url");
    var question = submitter && submitter.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    var body = {};
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name || field.value === "") { return; }
      body[field.name] = field.value;
    });
    if (form.getAttribute("data-kind") === "silence") {
      var matchers = {};
      (body.matchers || "").split(/[\s,]+/).forEach(function (part) {
        var at = part.indexOf("=");
        if (at > 0) { matchers[part.slice(0, at)] = part.slice(at + 1); }
      });
      body.matchers = matchers;
    }
    send(url, "POST", body)
      .then(function () {
        reportTo(form, "Done.", false);
        window.setTimeout(function () { window.location.reload(); }, 600);
      })
      .catch(function (error) { reportTo(form, "Failed: " + error.message, true); });
  });

  /* The silence form's preview: what the matchers select now, refreshed as one types. */
  var previewTimer = null;
  document.addEventListener("input", function (event) {
    var field = event.target;
    var url = field.getAttribute && field.getAttribute("data-preview");
    if (!url) { return; }
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(function () {
      fetch(url + "?matchers=" + encodeURIComponent(field.value), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : ""; })
        .then(function (html) {
          var holder = document.getElementById("silence-preview");
          if (holder && html) {
            var parsed = new DOMParser().parseFromString(html, "text/html");
            holder.replaceChildren.apply(holder, Array.prototype.slice.call(parsed.body.childNodes));
          }
        });
    }, 300);
  });

  /* Live: poll /ui/live for results stored after the cursor. */
  var checksBox = document.getElementById("checks");
  var runBox = document.getElementById("run");
  var facts = document.querySelector("tbody[id^='c-']");
  var marked = document.querySelector("[data-cursor]");
  var cursor = marked ? marked.getAttribute("data-cursor") : "0";
  var more = false;
  var period = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 1000;

  var rows = {};
  Array.prototype.forEach.call(document.querySelectorAll("table.checks tbody tr"), function (row) {
    var link = row.querySelector("th a");
    if (link) { rows[link.textContent] = row; }
  });

  function applyCheck(change) {
    var changed = false;
    var row = rows[change.check];
    if (row) {
      changed = row.className.split(" ")[0] !== "r-" + change.status;
      row.className = "r-" + change.status + (changed ? " changed" : "");
      // The cells: the name (th), status, since, message, strip, uptime.
      row.cells[1].textContent = change.status;
      row.cells[3].textContent = change.message;
      if (changed) { row.cells[2].textContent = "just now"; }
    }
    var facts = document.getElementById("c-" + change.check);
    if (facts) {
      changed = changed || facts.className !== "r-" + change.status;
      facts.className = "r-" + change.status;
      var cell = facts.querySelector(".s");
      if (cell) { badge(cell, change.status); }
      var text = facts.querySelector(".msg pre");
      if (text) { text.textContent = change.message; }
      var when = facts.querySelector(".since");
      if (when && changed) { when.textContent = "just now"; }
    }
    if (changed) { announce(change.check + " is " + change.status); }
    return changed;
  }

  /* The overview's figures that follow from its rows, recounted after a row changed. */
  var WORDS = ["ok", "warning", "critical", "unknown", "none"];

  function percent(ok, measured) {
    // As the server's percent_text: three decimals, truncated (short of 100 never reads 100.000%).
    if (!measured) { return "-"; }
    var units = Math.floor(ok * 100000 / measured);
    return Math.floor(units / 1000) + "." + String(units % 1000).padStart(3, "0") + "%";
  }

  function countRows(rows) {
    var counts = {};
    Array.prototype.forEach.call(rows, function (row) {
      var word = row.className.split(" ")[0].slice(2);
      counts[word] = (counts[word] || 0) + 1;
    });
    return counts;
  }

  function recount() {
    Array.prototype.forEach.call(checksBox.querySelectorAll("section.group"), function (section) {
      var counts = countRows(section.querySelectorAll("table.checks tbody tr"));
      var measured = WORDS.reduce(function (sum, word) { return word === "none" ? sum : sum + (counts[word] || 0); }, 0);
      var health = section.querySelector(".health");
      if (health) { health.textContent = "health " + percent(counts.ok || 0, measured); }
      var place = section.querySelector(".counts");
      if (place) {
        place.textContent = WORDS.filter(function (word) { return counts[word]; })
          .map(function (word) { return " " + counts[word] + " " + word; }).join("");
      }
    });
    // The summary counts every check; only an unfiltered page has a row for each.
    var summary = document.querySelector("p.summary");
    if (!summary || summary.getAttribute("data-shown") !== summary.getAttribute("data-total")) { return; }
    var totals = countRows(checksBox.querySelectorAll("table.checks tbody tr"));
    while (summary.childNodes.length > 1) { summary.removeChild(summary.lastChild); }
    WORDS.forEach(function (word) {
      if (!totals[word]) { return; }
      summary.appendChild(document.createTextNode(" "));
      summary.appendChild(badgeSpan(word));
      summary.appendChild(document.createTextNode(" " + totals[word]));
    });
  }

  function applyRun(run) {
    if (!run) { return; }
    var status = runBox.querySelector(".run-status");
    if (status) { badge(status, run.status); }
    run.steps.forEach(function (step) {
      var item = document.getElementById("step-" + step.number);
      if (!item) { return; }
      var cell = item.querySelector(".step-status");
      if (cell) { badge(cell, step.status); }
      var output = item.querySelector(".output");
      if (output && output.textContent !== step.output) { output.textContent = step.output; }
    });
    if (run.finished) { runBox.setAttribute("data-finished", "1"); announce("Run " + run.status); }
  }

  function poll() {
    var url = "/ui/live?after=" + encodeURIComponent(cursor || "0");
    if (runBox && !runBox.getAttribute("data-finished")) { url += "&run=" + runBox.getAttribute("data-run"); }
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        more = false;
        if (data) {
          var first = cursor === "0";
          more = !!data.more;
          cursor = String(data.cursor);
          if (!first) {
            var moved = data.checks.map(applyCheck).some(Boolean);
            if (moved && checksBox) { recount(); }
          }
          if (runBox && data.run) { applyRun(data.run); }
        }
      })
      .catch(function () { /* the daemon restarts or the network drops: try again */ })
      .then(function () { window.setTimeout(poll, more ? 0 : period); });
  }
  if (checksBox || runBox || facts) { window.setTimeout(poll, period); }
})();
