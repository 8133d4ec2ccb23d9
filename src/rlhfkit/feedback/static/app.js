/* rlhfkit feedback: keyboard shortcuts for every action, drag-and-drop ranking, small helpers.
   Plain browser JavaScript: no build step, no inline script (the pages ship a strict CSP). */
(function () {
  "use strict";

  var started = performance.now();
  var submitting = false;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  // Keys typed into a text box belong to the text, not to the shortcuts.
  function isTextEntry(el) {
    if (!el) { return false; }
    if (el.isContentEditable) { return true; }
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") { return true; }
    if (el.tagName === "INPUT") {
      return ["radio", "checkbox", "button", "submit", "reset", "range", "file"].indexOf(el.type) < 0;
    }
    return false;
  }

  // "ctrl+Enter", "shift+ArrowUp", "a", "K": printable keys already carry their shift.
  function keyName(ev) {
    var parts = [];
    if (ev.ctrlKey || ev.metaKey) { parts.push("ctrl"); }
    if (ev.altKey) { parts.push("alt"); }
    if (ev.shiftKey && ev.key.length > 1) { parts.push("shift"); }
    parts.push(ev.key);
    return parts.join("+");
  }

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) {
      dialog.showModal();
      var first = $("select, input:not([type=hidden]), button", dialog);
      if (first) { first.focus(); }
    }
  }

  function togglePanel(id) {
    var panel = document.getElementById(id);
    if (!panel) { return; }
    panel.open = !panel.open;
    if (panel.open) {
      var first = $("input, textarea", panel);
      if (first) { first.focus(); }
    }
  }

  function toggleGuidelines() {
    var layout = $(".task-layout");
    if (!layout) { return; }
    layout.classList.toggle("no-guidelines");
    try { localStorage.setItem("rlhfkit.hideGuidelines", layout.classList.contains("no-guidelines") ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  // ------------------------------------------------------------------ rows (likert, harm)

  var rows = [];
  var activeRow = 0;

  function setActiveRow(index) {
    if (!rows.length) { return; }
    activeRow = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, i) { row.classList.toggle("active", i === activeRow); });
    rows[activeRow].scrollIntoView({ block: "nearest" });
  }

  function rowKey(ev, taskType) {
    var key = ev.key;
    if (key === "j" || key === "ArrowDown") { setActiveRow(activeRow + 1); return true; }
    if (key === "k" || key === "ArrowUp") { setActiveRow(activeRow - 1); return true; }
    if (!/^[1-9]$/.test(key) || !rows.length) { return false; }
    var row = rows[activeRow];
    if (taskType === "likert") {
      var radio = $("input[type=radio][value='" + key + "']", row);
      if (!radio) { return false; }
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
      setActiveRow(activeRow + 1);
      return true;
    }
    var boxes = $all("input[type=checkbox]", row);
    var box = boxes[Number(key) - 1];
    if (!box) { return false; }
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  // ------------------------------------------------------------------ ranking

  var rankList = null;
  var selected = 0;

  function rankItems() { return $all(".rank-item", rankList); }

  function syncRanking() {
    var input = document.getElementById("ranking-input");
    if (input) { input.value = rankItems().map(function (li) { return li.dataset.response; }).join(","); }
  }

  function selectRank(index) {
    var items = rankItems();
    selected = Math.max(0, Math.min(items.length - 1, index));
    items.forEach(function (li, i) { li.classList.toggle("selected", i === selected); });
    items[selected].focus({ preventScroll: true });
    items[selected].scrollIntoView({ block: "nearest" });
  }

  function moveRank(delta) {
    var items = rankItems();
    var target = selected + delta;
    if (target < 0 || target >= items.length) { return; }
    var item = items[selected];
    if (delta < 0) { rankList.insertBefore(item, items[target]); }
    else { rankList.insertBefore(item, items[target].nextSibling); }
    syncRanking();
    selectRank(target);
  }

  function rankingKey(ev) {
    var name = keyName(ev);
    if (name === "shift+ArrowUp" || ev.key === "K") { moveRank(-1); return true; }
    if (name === "shift+ArrowDown" || ev.key === "J") { moveRank(1); return true; }
    if (ev.key === "ArrowUp" || ev.key === "k") { selectRank(selected - 1); return true; }
    if (ev.key === "ArrowDown" || ev.key === "j") { selectRank(selected + 1); return true; }
    return false;
  }

  function setupDragAndDrop() {
    var dragged = null;
    rankList.addEventListener("dragstart", function (ev) {
      dragged = ev.target.closest(".rank-item");
      if (!dragged) { return; }
      dragged.classList.add("dragging");
      ev.dataTransfer.effectAllowed = "move";
      ev.dataTransfer.setData("text/plain", dragged.dataset.response);
    });
    rankList.addEventListener("dragover", function (ev) {
      if (!dragged) { return; }
      ev.preventDefault();
      var over = ev.target.closest(".rank-item");
      if (!over || over === dragged) { return; }
      var items = rankItems();
      // Moving down: land after the item under the pointer; moving up: before it.
      if (items.indexOf(dragged) < items.indexOf(over)) { rankList.insertBefore(dragged, over.nextSibling); }
      else { rankList.insertBefore(dragged, over); }
    });
    rankList.addEventListener("drop", function (ev) { ev.preventDefault(); });
    rankList.addEventListener("dragend", function () {
      if (!dragged) { return; }
      dragged.classList.remove("dragging");
      syncRanking();
      selectRank(rankItems().indexOf(dragged));
      dragged = null;
    });
    rankList.addEventListener("click", function (ev) {
      var item = ev.target.closest(".rank-item");
      if (item) { selectRank(rankItems().indexOf(item)); }
    });
  }

  // ------------------------------------------------------------------ rewrite

  function setupRewrite() {
    var box = document.getElementById("rewrite-text");
    if (!box) { return; }
    var touched = false;
    box.addEventListener("input", function () { touched = true; });
    $all("input[name=response_id]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        var original = $("[data-original='" + radio.value + "']");
        if (original && !touched) { box.value = original.textContent; }
      });
    });
  }

  // ------------------------------------------------------------------ dispatch

  function clickShortcut(task, name) {
    var targets = $all("[data-key]", task).filter(function (el) {
      return el.dataset.key.split(" ").indexOf(name) >= 0;
    });
    if (!targets.length) { return false; }
    var el = targets[0];
    if (el.type === "radio" || el.type === "checkbox") {
      el.checked = el.type === "radio" ? true : !el.checked;
      el.dispatchEvent(new Event("change", { bubbles: true }));
    } else {
      el.click();
    }
    return true;
  }

  function onKey(ev) {
    var task = document.getElementById("task");
    if (!task) { return; }
    var openModal = $("dialog[open]");
    if (openModal) {
      // Enter in the skip dialog confirms, even from the reason list.
      if (ev.key === "Enter" && openModal.id === "skip-dialog" && !ev.isComposing) {
        ev.preventDefault();
        $("form", openModal).requestSubmit();
      }
      return;
    }
    var name = keyName(ev);
    var typing = isTextEntry(document.activeElement);
    if (typing) {
      if (name === "ctrl+Enter") { ev.preventDefault(); clickShortcut(task, name); }
      else if (ev.key === "Escape") { document.activeElement.blur(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) {
      if (name === "ctrl+Enter" && clickShortcut(task, name)) { ev.preventDefault(); }
      return;
    }
    var type = task.dataset.taskType;
    var handled = false;
    if (type === "ranking") { handled = rankingKey(ev); }
    else if (type === "likert" || type === "harm") { handled = rowKey(ev, type); }
    if (!handled) {
      handled = true;
      switch (ev.key) {
        case "s": openDialog("skip-dialog"); break;
        case "?": openDialog("help-dialog"); break;
        case "g": toggleGuidelines(); break;
        case "f": togglePanel("flags-panel"); break;
        case "c": togglePanel("comment-panel"); break;
        case "e": {
          var box = $("#answer-form textarea:not([name=comment])");
          if (box) { box.focus(); } else { handled = false; }
          break;
        }
        default: handled = clickShortcut(task, name);
      }
    }
    if (handled) { ev.preventDefault(); }
  }

  function setupTask() {
    var task = document.getElementById("task");
    if (!task) { return; }
    try {
      if (localStorage.getItem("rlhfkit.hideGuidelines") === "1") { $(".task-layout").classList.add("no-guidelines"); }
    } catch (e) { /* private mode */ }
    var form = document.getElementById("answer-form");
    form.addEventListener("submit", function (ev) {
      if (submitting) { ev.preventDefault(); return; }  // one submission per page
      submitting = true;
      var field = $("input[name=duration_ms]", form);
      if (field) { field.value = String(Math.round(performance.now() - started)); }
    });
    $all("[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.dataset.action;
        if (action === "skip") { openDialog("skip-dialog"); }
        else if (action === "help") { openDialog("help-dialog"); }
        else if (action === "guidelines") { toggleGuidelines(); }
        else if (action === "close") { button.closest("dialog").close(); }
      });
    });
    rows = $all("#answer-form [data-row]");
    if (rows.length) {
      rows.forEach(function (row, i) { row.addEventListener("click", function () { setActiveRow(i); }); });
      setActiveRow(0);
    }
    rankList = document.getElementById("ranking-list");
    if (rankList) { setupDragAndDrop(); syncRanking(); selectRank(0); }
    setupRewrite();
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("DOMContentLoaded", function () {
    setupTask();
    $all("[data-back]").forEach(function (link) {
      link.addEventListener("click", function (ev) {
        if (history.length > 1) { ev.preventDefault(); history.back(); }
      });
    });
  });
}());
