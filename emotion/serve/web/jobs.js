/* Jobs: a recording sent to /jobs and followed until it ends.
 *
 * When the service runs a job queue (body data-jobs="on") and "As a job" is
 * ticked, page.js posts the upload to /jobs instead of /analyze and hands the
 * 202 answer to follow(). Every second the job's status is fetched, with only
 * the windows not seen yet (?windows_from=N): the progress bar shows windows
 * done of the total, the media seconds and the time left, and the timeline is
 * drawn as the windows complete. Cancel sends DELETE. When the job is done the
 * page renders its result as it renders /analyze's answer.
 */
"use strict";

window.EmotionJobs = (function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  let job = null;          // {id, file, windows, timer, names, total}

  function enabled() {
    return document.body.dataset.jobs === "on" && $("as-job").checked;
  }

  function busy() {
    return job !== null;
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.max(0, Math.round(seconds));
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  }

  // "Analysing: 12 of 40 windows (36 of 120 s of media), about 1 min 20 s left"
  function label(status) {
    const p = status.progress;
    if (status.state === "queued") {
      return status.attempts > 0 ? `Queued again (attempt ${status.attempts + 1})`
        : "Queued: waiting for a worker";
    }
    const total = p.windows_total ? ` of ${p.windows_total}` : "";
    const media = p.media_seconds_total
      ? ` (${Math.round(p.media_seconds_done)} of ${Math.round(p.media_seconds_total)} s of media)`
      : "";
    const left = status.eta_seconds === null ? "" : `, about ${clock(status.eta_seconds)} left`;
    return `Analysing: ${p.windows_done}${total} windows${media}${left}`;
  }

  // The windows so far, on the whole recording's time axis; the emotions' lines and
  // legend from the first window that has probabilities (none: the bands alone).
  function draw(status) {
    if (!job.windows.length) return;
    const scored = job.windows.find((w) => w.emotion_probs);
    if (!job.names && scored) {
      job.names = Object.keys(scored.emotion_probs);
      window.EmotionChart.legend($("legend"), job.names);
    }
    $("results").hidden = false;
    const probabilities = Object.fromEntries((job.names || []).map((n) => [n, 0]));
    window.EmotionChart.draw($("chart"), $("tip"), {
      timeline: job.windows, emotions: { probabilities: probabilities },
      duration: status.progress.media_seconds_total || 0,
    });
  }

  function end(page) {
    clearTimeout(job.timer);
    job = null;
    page.progress(null, null);
    $("cancel").hidden = true;
    $("analyse").removeAttribute("aria-disabled");
  }

  function update(status, page) {
    job.windows.push(...status.windows);
    if (status.state === "done") {
      const file = job.file;
      const seconds = (performance.now() - job.started) / 1000;
      end(page);
      page.render(status.result);
      page.say(`Done: ${file.name} in ${seconds.toFixed(1)} s (job ${status.id}).`);
      return;
    }
    if (status.state === "failed" || status.state === "cancelled") {
      end(page);
      if (status.state === "cancelled") {
        page.say("Cancelled.");
      } else {
        const e = status.error || {};
        page.say("");
        page.showError(`The file could not be analysed: ${e.detail}` +
          ` (${e.error}, HTTP ${e.status}).`);
      }
      return;
    }
    const p = status.progress;
    const percent = p.windows_total ? Math.min(100, (100 * p.windows_done) / p.windows_total) : 0;
    page.progress(label(status), status.state === "queued" ? null : Math.round(percent));
    draw(status);
    job.timer = setTimeout(() => poll(page), POLL_MS);
  }

  function poll(page) {
    if (!job) return;
    const id = job.id;
    fetch(`jobs/${encodeURIComponent(id)}?windows_from=${job.windows.length}`)
      .then((r) => r.json().then((body) => ({ ok: r.ok, status: r.status, body: body })))
      .then((r) => {
        if (!job || job.id !== id) return;
        if (r.ok) update(r.body, page);
        else {
          end(page);
          page.showError(`The job could not be followed: ${r.body.detail} ` +
            `(${r.body.error}, HTTP ${r.status}).`);
        }
      })
      .catch(() => {
        // the service restarting: the job is kept; try again
        if (job && job.id === id) job.timer = setTimeout(() => poll(page), 2 * POLL_MS);
      });
  }

  // The 202 answer of POST /jobs: follow the job until it ends.
  function follow(accepted, file, page) {
    job = { id: accepted.id, file: file, windows: [], timer: null, names: null,
      started: performance.now() };
    // the previous result's summary and data go: the new ones come when the job is done
    for (const id of ["chart", "legend", "summary", "warnings", "raw"]) $(id).replaceChildren();
    $("distribution").tBodies[0].replaceChildren();
    $("results").hidden = true;
    page.say(`Uploaded; ${file.name} is job ${accepted.id}.`);
    page.progress(label(accepted), null);
    $("cancel").hidden = false;
    $("analyse").setAttribute("aria-disabled", "true");
    poll(page);
  }

  function cancel() {
    if (!job) return;
    fetch(`jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
    $("progress-label").textContent = "Cancelling";
  }

  function init() {
    if (document.body.dataset.jobs === "on") $("job-choice").hidden = false;
  }

  init();
  return { enabled, busy, follow, cancel, label };
})();
