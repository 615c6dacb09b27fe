/* The page: the form, the upload to /analyze, and what the answer shows.
 *
 * One analysis at a time: a second "Analyse" while one runs is refused with a
 * message (the service would refuse it too, or make it wait). Errors are the
 * service's own {"error", "detail"}, shown as they come; the form stays usable.
 * window.emotionPage exposes render(result) and csv(result), which the browser
 * test also uses to draw a known answer.
 */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const AUDIO = /\.(wav|mp3|m4a|aac|ogg|oga|opus|flac|wma)$/i;
  const limitMb = parseFloat(document.body.dataset.maxUploadMb) || Infinity;
  let xhr = null;          // the analysis in progress
  let ticker = null;       // the clock shown while the service analyses
  let shown = null;        // the result on the page
  let urls = [];           // the downloads' object URLs, freed on the next result

  function guessKind(file) {
    if (file.type.startsWith("audio/")) return "audio";
    if (file.type.startsWith("video/")) return "video";
    return AUDIO.test(file.name) ? "audio" : "video";
  }

  function megabytes(bytes) {
    return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MB`;
  }

  function chosen() {
    const file = $("file").files[0];
    $("chosen").textContent = file
      ? `${file.name}, ${megabytes(file.size)}, sent as ${kindOf(file)}`
      : "No file chosen.";
  }

  function kindOf(file) {
    const kind = $("kind").value;
    return kind === "auto" ? guessKind(file) : kind;
  }

  function say(text) {
    $("status").textContent = text;
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  function progress(label, value) {
    $("progress-box").hidden = label === null;
    $("progress-label").textContent = label || "";
    if (value === null) $("progress").removeAttribute("value");
    else $("progress").value = value;
  }

  function finish() {
    clearInterval(ticker);
    ticker = null;
    xhr = null;
    progress(null, null);
    notice("");
    $("cancel").hidden = true;
    $("analyse").removeAttribute("aria-disabled");
  }

  function serviceError(status, text, retryAfter) {
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    const what = body && body.detail ? body.detail : `the service answered HTTP ${status}`;
    const code = body && body.error ? ` (${body.error}, HTTP ${status})` : "";
    const retry = retryAfter ? ` Try again in ${retryAfter} s.` : "";
    return `The file could not be analysed: ${what}${code}.${retry}`;
  }

  function submit(event) {
    event.preventDefault();
    if (xhr || window.EmotionJobs.busy()) {
      notice("An analysis is already running: wait for it to finish, or cancel it, " +
        "before sending another file.");
      return;
    }
    showError("");
    const form = $("upload");
    if (!form.reportValidity()) return;
    const file = $("file").files[0];
    if (!file) {
      showError("Choose a video or audio file first.");
      $("file").focus();
      return;
    }
    if (file.size > limitMb * 2 ** 20) {
      showError(`The file could not be analysed: ${file.name} is ${megabytes(file.size)}, ` +
        `larger than this service's limit of ${limitMb} MB.`);
      return;
    }
    send(file);
  }

  function send(file) {
    const data = new FormData();
    data.append("meeting_id", $("meeting").value);
    data.append("participant_id", $("participant").value);
    data.append("type", kindOf(file));
    data.append("file", file, file.name);
    const started = performance.now();
    const asJob = window.EmotionJobs.enabled();   // web/jobs.js follows a job
    xhr = new XMLHttpRequest();
    const request = xhr;
    request.open("POST", asJob ? "jobs" : "analyze");
    request.responseType = "text";
    request.upload.onprogress = (e) => {
      if (e.lengthComputable) progress("Uploading", Math.round((100 * e.loaded) / e.total));
    };
    request.upload.onload = () => {
      if (asJob) return;
      // the clock ticks in the progress label; the live status speaks once
      say(`Uploaded; the service is analysing ${file.name}.`);
      const since = performance.now();
      const tick = () => progress(`Analysing: ${Math.round((performance.now() - since) / 1000)}` +
        " s so far", null);
      tick();
      ticker = setInterval(tick, 1000);
    };
    request.onload = () => {
      finish();
      if (asJob && request.status === 202) {
        window.EmotionJobs.follow(JSON.parse(request.responseText), file, window.emotionPage);
        return;
      }
      if (request.status === 200) {
        let result = null;
        try { result = JSON.parse(request.responseText); } catch (e) { result = null; }
        if (result) {
          render(result);
          say(`Done: ${file.name} in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
          return;
        }
      }
      say("");
      showError(serviceError(request.status, request.responseText,
        request.getResponseHeader("Retry-After")));
    };
    request.onerror = () => {
      finish();
      say("");
      showError("The upload failed: the connection to the service was lost (is it running? " +
        `a file over ${limitMb} MB is refused while it is sent).`);
    };
    request.onabort = () => { finish(); say("Cancelled."); };
    progress("Uploading", 0);
    say(`Uploading ${file.name}.`);
    $("cancel").hidden = false;
    $("analyse").setAttribute("aria-disabled", "true");
    request.send(data);
  }

  // The emotion(s) dominant in the most windows, in the order they first appear.
  function mostFrequent(windows) {
    const counts = {};
    for (const w of windows) if (w.emotion) counts[w.emotion] = (counts[w.emotion] || 0) + 1;
    const best = Math.max(0, ...Object.values(counts));
    const names = Object.keys(counts).filter((e) => counts[e] === best);
    return best ? { emotions: names, count: best } : null;
  }

  function summary(result) {
    const windows = result.timeline;
    const n = windows.length;
    const top = mostFrequent(windows);
    const counts = result.windows || {};
    const rows = [
      ["meeting", "Meeting / participant", `${result.meeting_id} / ${result.participant_id}`],
      ["duration", "Duration", `${result.duration.toFixed(1)} s (${result.type})`],
      ["windows", "Windows", String(n)],
      ["with", "With a face / with speech", `${counts.with_face} / ${counts.with_speech}`],
      ["participants", "Participants", result.participants ? String(result.participants.length)
        : "-"],
      ["frequent", "Most frequent emotion",
        top ? `${top.emotions.join(", ")} (${top.count} of ${n} windows` +
          `${top.emotions.length > 1 ? " each" : ""})` : "none"],
      ["overall", "Overall emotion", result.emotions.dominant],
      ["anomalies", "Anomalies", `${result.anomalies.length} of ${n} windows`],
      ["time", "Analysis time", `${result.processing_seconds.toFixed(1)} s`],
    ];
    const dl = $("summary");
    dl.replaceChildren();
    for (const [key, label, value] of rows) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value;
      dd.dataset.key = key;
      dl.append(dt, dd);
    }
  }

  function distribution(result, names) {
    const body = $("distribution").tBodies[0];
    body.replaceChildren();
    for (const name of names) {
      const p = result.emotions.probabilities[name];
      const row = body.insertRow();
      row.dataset.emotion = name;
      row.insertCell().textContent = name;
      const cell = row.insertCell();
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${(100 * p).toFixed(1)}%`;
      bar.style.backgroundColor = window.EmotionChart.style(name, names).color;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = window.EmotionChart.percent(p);
      cell.append(bar, value);
    }
  }

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function csv(result) {
    const names = Object.keys(result.emotions.probabilities);
    const head = ["meeting_id", "participant_id", "start", "end", "emotion", ...names,
      "anomaly_score", "anomaly_flag", "face_found", "face_detected", "speech_found",
      "modalities"];
    const rows = result.timeline.map((w) => [result.meeting_id, result.participant_id, w.start,
      w.end, w.emotion, ...names.map((n) => (w.emotion_probs ? w.emotion_probs[n] : null)),
      w.anomaly_score, w.anomaly_flag, w.face_found, w.face_detected, w.speech_found,
      w.modalities]);
    return [head, ...rows].map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
  }

  function download(id, text, type, name) {
    const url = URL.createObjectURL(new Blob([text], { type: type }));
    urls.push(url);
    $(id).href = url;
    $(id).download = name;
  }

  function render(result) {
    shown = result;
    const names = Object.keys(result.emotions.probabilities);
    $("results").hidden = false;
    window.EmotionChart.legend($("legend"), names);
    window.EmotionChart.draw($("chart"), $("tip"), result);
    window.ParticipantLanes.draw($("lanes"), result);
    summary(result);
    distribution(result, names);
    const warnings = $("warnings");
    warnings.replaceChildren();
    for (const w of result.warnings || []) {
      const li = document.createElement("li");
      li.textContent = w;
      warnings.appendChild(li);
    }
    const text = JSON.stringify(result, null, 2);
    $("raw").textContent = text;
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [];
    const stem = `emotions_${result.meeting_id}_${result.participant_id}`;
    download("download-json", text, "application/json", `${stem}.json`);
    download("download-csv", csv(result), "text/csv", `${stem}.csv`);
  }

  function dropZone() {
    const zone = $("drop");
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer.files.length) {
        $("file").files = e.dataTransfer.files;
        chosen();
      }
    });
    // a file dropped beside the zone must not replace the page
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  function init() {
    if (!$("meeting").value) $("meeting").value = `meeting-${new Date().toISOString().slice(0, 10)}`;
    $("upload").addEventListener("submit", submit);
    $("file").addEventListener("change", chosen);
    $("kind").addEventListener("change", chosen);
    $("cancel").addEventListener("click", () => {
      if (xhr) xhr.abort();
      else window.EmotionJobs.cancel();
    });
    dropZone();
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => {
        if (shown) window.EmotionChart.draw($("chart"), $("tip"), shown);
      }, 150);
    });
  }

  window.emotionPage = { render, csv, guessKind, progress, say, showError };
  init();
})();
