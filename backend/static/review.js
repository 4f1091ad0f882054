// The review grid: keyboard navigation, and live updates polled from /review/changes.
"use strict";
(function () {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const live = document.getElementById("live");
  const filters = grid.dataset;
  let seq = Number(filters.seq);
  let focused = -1;

  function cards() { return Array.from(grid.querySelectorAll(".card")); }

  function focusCard(i) {
    const all = cards();
    if (!all.length) return;
    focused = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((c) => c.classList.remove("focused"));
    const card = all[focused];
    card.classList.add("focused");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }

  // back from a task's detail view (#task-<id>): its card is the focused one
  const hashed = /^#task-(\d+)$/.exec(window.location.hash);
  if (hashed) {
    const i = cards().findIndex((c) => c.dataset.task === hashed[1]);
    if (i >= 0) focusCard(i);
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const all = cards();
    const go = (href) => { if (href) window.location.href = href; };
    switch (e.key) {
      case "j": case "ArrowRight": case "ArrowDown": focusCard(focused + 1); break;
      case "k": case "ArrowLeft": case "ArrowUp": focusCard(focused < 0 ? 0 : focused - 1); break;
      case "Enter": if (all[focused]) go(all[focused].dataset.detail); else return; break;
      case "o": if (all[focused] && all[focused].dataset.ls) window.open(all[focused].dataset.ls, "_blank", "noopener"); break;
      case "n": { const a = document.getElementById("next-page"); if (a) go(a.href); break; }
      case "p": { const a = document.getElementById("prev-page"); if (a) go(a.href); break; }
      default: return;
    }
    e.preventDefault();
  });

  function passes(row) {
    const shown = row.stale ? "stale" : row.status;
    if (filters.status && !(filters.status === shown || filters.status === row.status)) return false;
    if (filters.class !== "" && !(filters.class in row.classes)) return false;
    if (filters.annotator && (row.annotator || "-") !== filters.annotator) return false;
    return true;
  }

  function place(node, taskId) {
    // where a card the page did not show goes, when it belongs on this page at all
    if (filters.sort === "changed") {
      if (filters.desc === "1" && filters.first === "1") { grid.prepend(node); return true; }
      if (filters.desc !== "1" && filters.full === "0") { grid.append(node); return true; }
      return false;
    }
    const all = cards();
    const desc = filters.desc === "1";
    const after = all.find((c) => desc ? Number(c.dataset.task) < taskId : Number(c.dataset.task) > taskId);
    if (after) {
      const first = all[0] === after;
      if (first && filters.first !== "1") return false; // belongs on an earlier page
      grid.insertBefore(node, after);
      return true;
    }
    if (filters.full === "1") return false; // belongs on a later page
    grid.append(node);
    return true;
  }

  function apply(change) {
    const template = document.createElement("template");
    template.innerHTML = change.html.trim();
    const node = template.content.firstElementChild;
    const old = document.getElementById("task-" + change.task_id);
    if (!passes(change.row)) { if (old) old.remove(); return; }
    if (old && filters.sort === "changed") old.remove(); // a change moves it to one end
    else if (old) { old.replaceWith(node); flash(node); return; }
    if (place(node, change.task_id)) flash(node);
  }

  function flash(node) {
    node.classList.add("changed");
    setTimeout(() => node.classList.remove("changed"), 2500);
  }

  function counts(body) {
    document.querySelectorAll("[data-count-status]").forEach((el) => {
      el.textContent = body.status_counts[el.dataset.countStatus] || 0;
    });
    document.querySelectorAll("[data-count-class]").forEach((el) => {
      el.textContent = body.class_counts[el.dataset.countClass] || 0;
    });
    const all = document.getElementById("total-all");
    if (all) all.textContent = body.total;
    const listed = document.getElementById("total"); // tasks passing the page's filters
    if (listed && body.listed !== undefined) {
      listed.textContent = body.listed;
      document.getElementById("plural").textContent = body.listed === 1 ? "" : "s";
    }
  }

  let missed = 0;
  function banner(count) {
    missed += count;
    let note = document.getElementById("missed");
    if (!note) {
      note = document.createElement("p");
      note.id = "missed";
      note.className = "missed";
      grid.before(note);
    }
    note.innerHTML = "";
    const link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "reload";
    note.append(missed + " changes too many to follow one by one (a resync?): ", link);
  }

  let indexing = false;
  async function poll() {
    try {
      const query = filters.query ? "&list=" + encodeURIComponent(filters.query) : ""; // cards' links keep the list
      const response = await fetch(filters.changes + "?since=" + seq + query, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok && response.status !== 503) throw new Error(String(response.status));
      const body = await response.json();
      if (body.indexing) { // another process rebuilds the index: say so, show the new one after
        indexing = true;
        live.classList.add("down");
        live.textContent = "● indexing " + body.indexing.done.toLocaleString("en") + " of " + body.indexing.total.toLocaleString("en");
        setTimeout(poll, 1000);
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      if (body.reload || indexing) { window.location.reload(); return; }
      if (body.many) banner(body.many);
      body.cards.forEach(apply);
      body.gone.forEach((t) => { const c = document.getElementById("task-" + t); if (c) c.remove(); });
      counts(body);
      seq = body.seq;
      live.classList.remove("down");
      live.title = "the page follows the store";
    } catch (err) {
      live.classList.add("down");
      live.title = "live updates failing: " + err;
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();
