/* tasklib-progress.js: bind a <progress> element to a task's Jira URL.
 *
 *   tasklibProgress.bind(progressElement, "/rest/api/3/task/42", {
 *     message: messageElement,      // optional: shows the task's message
 *     interval: 1000,               // ms between polls; never less than 1000
 *     onEnd: function (task) {},    // once, with the task's JSON, when it has finished
 *     onError: function (error) {}  // an answer other than 200 (401, 403, 404...): polling stops
 *   });
 *
 * It polls the task with the page's own credentials until its status is
 * terminal (COMPLETE, FAILED, CANCELLED, DEAD). bind() returns {stop: function}.
 * No dependencies; works in any browser with fetch().
 */
(function (global) {
  "use strict";
  var TERMINAL = ["COMPLETE", "FAILED", "CANCELLED", "DEAD"];

  function describe(task) {
    return task.progress + "% " + task.status + (task.message ? ": " + task.message : "");
  }

  function bind(progress, url, options) {
    options = options || {};
    var interval = Math.max(1000, options.interval || 1000);
    var stopped = false;

    function show(task) {
      progress.max = 100;
      progress.value = task.progress;
      progress.setAttribute("aria-valuetext", describe(task));
      if (options.message) {
        options.message.textContent = task.message || task.status;
      }
    }

    function poll() {
      if (stopped) {
        return;
      }
      global
        .fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) {
            stopped = true;
            throw new Error("HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (task) {
          show(task);
          if (TERMINAL.indexOf(task.status) >= 0) {
            stopped = true;
            if (options.onEnd) {
              options.onEnd(task);
            }
          } else {
            global.setTimeout(poll, interval);
          }
        })
        .catch(function (error) {
          if (stopped) {
            if (options.onError) {
              options.onError(error);
            }
          } else {
            global.setTimeout(poll, interval); // the network: try again
          }
        });
    }

    poll();
    return {
      stop: function () {
        stopped = true;
      }
    };
  }

  global.tasklibProgress = { bind: bind, TERMINAL: TERMINAL, describe: describe };
})(window);
