/* The live task page: refreshes its rows from tasks.json once a second, and cancels through Jira's route. */
(function () {
  "use strict";
  var table = document.getElementById("tasklib-tasks");
  if (!table || !window.fetch) {
    return; // the server-rendered list stays as it is
  }
  var body = table.tBodies[0];
  var template = document.getElementById("tasklib-row");
  var feed = table.getAttribute("data-feed");
  var apiRoot = table.getAttribute("data-api");
  var firstPage = table.getAttribute("data-first-page") === "true";

  function text(row, name, value) {
    row.querySelector("." + name).textContent = value;
  }

  function elapsed(ms) {
    var s = Math.floor((ms || 0) / 1000);
    return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
  }

  function update(row, task) {
    var bar = row.querySelector("progress");
    bar.value = task.progress;
    bar.setAttribute("aria-valuetext", window.tasklibProgress.describe(task));
    text(row, "status", task.status);
    text(row, "message", task.message || "");
    text(row, "elapsed", elapsed(task.elapsedRuntime));
    row.setAttribute("data-status", task.status);
    var button = row.querySelector("button.cancel");
    button.hidden = !task.cancellable;
  }

  function rowFor(task) {
    var row = document.getElementById("task-" + task.id);
    if (row || !firstPage) {
      return row;
    }
    row = template.content.firstElementChild.cloneNode(true);
    row.id = "task-" + task.id;
    row.setAttribute("data-task", task.id);
    text(row, "description", task.description || "Task " + task.id);
    text(row, "submitter", String(task.submittedBy));
    row.querySelector("progress").setAttribute("aria-label", "Progress of task " + task.id);
    body.insertBefore(row, body.firstElementChild);
    var empty = document.getElementById("tasklib-empty");
    if (empty) {
      empty.remove();
    }
    return row;
  }

  function refresh() {
    window
      .fetch(feed, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (page) {
        if (page) {
          page.tasks.slice().reverse().forEach(function (task) {
            var row = rowFor(task);
            if (row) {
              update(row, task);
            }
          });
        }
      })
      .catch(function () {})
      .then(function () {
        window.setTimeout(refresh, 1000);
      });
  }

  body.addEventListener("click", function (event) {
    var button = event.target.closest("button.cancel");
    if (!button) {
      return;
    }
    var row = button.closest("tr");
    button.disabled = true;
    window
      .fetch(apiRoot + row.getAttribute("data-task") + "/cancel", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-Atlassian-Token": "no-check" }
      })
      .then(function (response) {
        return response.json().then(function (answer) {
          if (response.status === 202) {
            answer.cancellable = false;
            update(row, answer);
          } else {
            text(row, "message", answer[0] || "Cancellation of the task is not possible.");
          }
        });
      })
      .catch(function () {})
      .then(function () {
        button.disabled = false;
      });
  });

  Array.prototype.forEach.call(body.querySelectorAll("button.cancel[data-cancellable]"), function (button) {
    button.hidden = false;
  });
  window.setTimeout(refresh, 1000);
})();
