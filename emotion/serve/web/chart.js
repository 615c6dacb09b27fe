/* The timeline chart of an analysis, drawn as SVG: no library.
 *
 * EmotionChart.draw(svg, tip, result) draws, for the windows of result.timeline:
 * each emotion's probability over time (a line of its own colour, dash and marker),
 * the dominant emotion per window as a band (colour and initial), which windows had
 * a face and which had speech, and a hatched mark over each anomalous window.
 * Hovering a window, or stepping through them with the arrow keys when the chart has
 * the focus, shows its time range and probabilities in `tip`.
 */
"use strict";

window.EmotionChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  // Okabe and Ito's palette, told apart with the common colour blindnesses; the
  // dashes, markers and band initials say the same without colour.
  const PALETTE = [
    { color: "#D55E00", ink: "#000", dash: "", marker: "square" },
    { color: "#009E73", ink: "#000", dash: "9 3", marker: "triangle" },
    { color: "#CC79A7", ink: "#000", dash: "2 3", marker: "diamond" },
    { color: "#E69F00", ink: "#000", dash: "", marker: "circle" },
    { color: "#56B4E9", ink: "#000", dash: "6 3 2 3", marker: "cross" },
    { color: "#0072B2", ink: "#fff", dash: "4 2", marker: "circle" },
    { color: "#000000", ink: "#fff", dash: "1 2", marker: "square" },
  ];
  const KNOWN = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
  const TICKS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

  function style(name, names) {
    const known = KNOWN.indexOf(name);
    const i = known >= 0 ? known : KNOWN.length + names.indexOf(name);
    return PALETTE[i % PALETTE.length];
  }

  function el(parent, tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function marker(parent, shape, x, y, color) {
    const r = 3.2;
    const attrs = { fill: color, stroke: color };
    if (shape === "circle") return el(parent, "circle", { ...attrs, cx: x, cy: y, r: r });
    if (shape === "square") {
      return el(parent, "rect", { ...attrs, x: x - r, y: y - r, width: 2 * r, height: 2 * r });
    }
    const pts = {
      triangle: [[0, -r - 1], [r + 1, r], [-r - 1, r]],
      diamond: [[0, -r - 1], [r + 1, 0], [0, r + 1], [-r - 1, 0]],
      cross: [[-r, -r], [r, r], [0, 0], [r, -r], [-r, r], [0, 0]],
    }[shape];
    return el(parent, "polygon", {
      ...attrs, "stroke-width": shape === "cross" ? 1.6 : 1,
      points: pts.map(([dx, dy]) => `${x + dx},${y + dy}`).join(" "),
    });
  }

  function seconds(t, total) {
    if (total < 60) return `${Math.round(t * 10) / 10} s`;
    const m = Math.floor(t / 60);
    const s = Math.round(t - 60 * m);
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  function percent(p) {
    return `${(100 * p).toFixed(1)} %`;
  }

  function defs(svg) {
    const d = el(svg, "defs");
    const hatch = el(d, "pattern", {
      id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)",
    });
    el(hatch, "rect", { width: 6, height: 6, fill: "#000", "fill-opacity": 0.07 });
    el(hatch, "line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#000", "stroke-width": 2,
      "stroke-opacity": 0.45 });
    const empty = el(d, "pattern", {
      id: "empty", width: 4, height: 4, patternUnits: "userSpaceOnUse",
    });
    el(empty, "rect", { width: 4, height: 4, fill: "#eee" });
    el(empty, "circle", { cx: 2, cy: 2, r: 0.8, fill: "#999" });
  }

  function layout(width, windows, duration) {
    const narrow = width < 560;
    const g = { left: narrow ? 56 : 62, right: 18, top: 24, plot: narrow ? 150 : 200 };
    g.width = width;
    g.inner = width - g.left - g.right;
    g.band = g.top + g.plot + 8;
    g.face = g.band + 24;
    g.speech = g.face + 16;
    g.axis = g.speech + 14;
    g.height = g.axis + 22;
    const last = windows.length ? windows[windows.length - 1].end : 0;
    g.total = Math.max(duration || 0, last, 1e-6);
    g.x = (t) => g.left + (t / g.total) * g.inner;
    g.y = (p) => g.top + (1 - p) * g.plot;
    return g;
  }

  function axes(svg, g) {
    const grid = el(svg, "g", { class: "axes", "font-size": 11, fill: "#333" });
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      el(grid, "line", { x1: g.left, x2: g.left + g.inner, y1: g.y(p), y2: g.y(p),
        stroke: p === 0 ? "#666" : "#ddd" });
      el(grid, "text", { x: g.left - 6, y: g.y(p) + 4, "text-anchor": "end" }, String(p));
    }
    el(grid, "text", { x: 4, y: g.top - 10 }, "probability");
    const rows = [["emotion", g.band + 13], ["face", g.face + 9], ["speech", g.speech + 9]];
    for (const [label, y] of rows) {
      el(grid, "text", { x: g.left - 6, y: y, "text-anchor": "end" }, label);
    }
    const step = TICKS.find((s) => g.total / s <= Math.max(2, g.inner / 80)) || 7200;
    for (let t = 0; t <= g.total + 1e-9; t += step) {
      el(grid, "line", { x1: g.x(t), x2: g.x(t), y1: g.axis, y2: g.axis + 4, stroke: "#666" });
      el(grid, "text", { x: g.x(t), y: g.axis + 16, "text-anchor": "middle" },
        seconds(t, g.total));
    }
  }

  // Where window i is drawn: to the next one's start when windows overlap.
  function span(windows, i, g) {
    const w = windows[i];
    const next = windows[i + 1];
    const end = next ? Math.min(w.end, next.start) : w.end;
    return { x: g.x(w.start), width: Math.max(1, g.x(end) - g.x(w.start)) };
  }

  function rows(svg, windows, g, names) {
    const layer = el(svg, "g", { class: "rows" });
    windows.forEach((w, i) => {
      const { x, width } = span(windows, i, g);
      if (!w.emotion_probs) {
        el(layer, "rect", { class: "empty", x: x, y: g.top, width: width, height: g.plot,
          fill: "url(#empty)" });
      }
      const s = w.emotion ? style(w.emotion, names) : null;
      el(layer, "rect", { class: "band", "data-emotion": w.emotion || "", x: x, y: g.band,
        width: width, height: 18, fill: s ? s.color : "url(#empty)", stroke: "#fff" });
      if (s && width >= 14) {
        el(layer, "text", { x: x + width / 2, y: g.band + 13, "text-anchor": "middle",
          "font-size": 11, fill: s.ink, "pointer-events": "none" }, w.emotion[0].toUpperCase());
      }
      for (const [row, flag, y] of [["face", w.face_found, g.face],
        ["speech", w.speech_found, g.speech]]) {
        el(layer, "rect", { class: `${row} ${flag ? "on" : "off"}`, x: x + 0.5, y: y,
          width: Math.max(0.5, width - 1), height: 10, fill: flag ? "#333" : "#fff",
          stroke: "#999" });
      }
      if (w.anomaly_flag === "anomaly") {
        const mark = el(layer, "g", { class: "anomaly-mark" });
        el(mark, "rect", { x: x, y: g.top, width: width, height: g.plot, fill: "url(#hatch)" });
        const c = x + width / 2;
        el(mark, "polygon", { points: `${c - 6},${g.top - 12} ${c + 6},${g.top - 12} ${c},${g.top - 2}`,
          fill: "#000" });
      }
    });
  }

  function lines(svg, windows, g, names) {
    const layer = el(svg, "g", { class: "lines", fill: "none" });
    const markers = windows.length <= 150;
    for (const name of names) {
      const s = style(name, names);
      let d = "";
      let pen = "M";
      const group = el(layer, "g", { class: "series", "data-emotion": name });
      for (const w of windows) {
        if (!w.emotion_probs) { pen = "M"; continue; }
        const x = g.x((w.start + w.end) / 2);
        const y = g.y(w.emotion_probs[name]);
        d += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
        pen = "L";
        if (markers) marker(group, s.marker, x, y, s.color);
      }
      el(group, "path", { d: d, stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash,
        fill: "none" });
    }
  }

  function describe(w, names) {
    const face = w.face_found ? (w.face_detected ? "yes" : "yes (centre of the frame)") : "no";
    const lines = [`${w.start.toFixed(1)}–${w.end.toFixed(1)} s: ${w.emotion || "no face or speech"}`];
    if (w.emotion_probs) {
      const ranked = names.slice().sort((a, b) => w.emotion_probs[b] - w.emotion_probs[a]);
      for (const n of ranked) lines.push(`${n} ${percent(w.emotion_probs[n])}`);
    }
    lines.push(`face: ${face}; speech: ${w.speech_found ? "yes" : "no"}`);
    if (w.anomaly_flag) {
      lines.push(`anomaly: ${w.anomaly_flag} (score ${w.anomaly_score.toFixed(3)})`);
    }
    return lines;
  }

  function hits(svg, tip, windows, g, names) {
    const layer = el(svg, "g", { class: "hits" });
    const rects = windows.map((w, i) => {
      const { x, width } = span(windows, i, g);
      const r = el(layer, "rect", { class: "win", "data-index": i, x: x, y: g.top,
        width: width, height: g.speech + 10 - g.top, fill: "transparent" });
      r.addEventListener("mouseenter", () => show(i));
      r.addEventListener("click", () => show(i));   // a tap, on a touch screen
      r.addEventListener("mouseleave", hide);
      return r;
    });
    let current = -1;
    function show(i) {
      if (current >= 0) rects[current].classList.remove("selected");
      current = i;
      rects[i].classList.add("selected");
      tip.replaceChildren();
      describe(windows[i], names).forEach((line, k) => {
        const p = document.createElement(k ? "div" : "strong");
        p.textContent = line;
        tip.appendChild(p);
      });
      const box = svg.getBoundingClientRect();
      const scale = box.width / g.width;
      const { x, width } = span(windows, i, g);
      const centre = (x + width / 2) * scale;
      tip.hidden = false;
      const room = box.width - tip.offsetWidth - 4;
      tip.style.left = `${Math.max(0, Math.min(room, centre - tip.offsetWidth / 2))}px`;
      tip.style.top = `${(g.band + 26) * scale + 8}px`;
    }
    function hide() {
      if (current >= 0) rects[current].classList.remove("selected");
      current = -1;
      tip.hidden = true;
    }
    svg.onkeydown = (e) => {
      const keys = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0,
        End: windows.length - 1 };
      if (e.key === "Escape") { hide(); return; }
      if (!(e.key in keys) || !windows.length) return;
      e.preventDefault();
      const start = current < 0 ? (e.key === "ArrowLeft" ? windows.length - 1 : 0) : keys[e.key];
      show(Math.max(0, Math.min(windows.length - 1, start)));
    };
    svg.onblur = hide;
  }

  function draw(svg, tip, result) {
    const windows = result.timeline || [];
    const names = Object.keys(result.emotions.probabilities);
    const width = Math.max(300, Math.round(svg.parentNode.clientWidth || 800));
    const g = layout(width, windows, result.duration);
    svg.replaceChildren();
    tip.hidden = true;
    svg.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
    svg.setAttribute("width", g.width);
    svg.setAttribute("height", g.height);
    const flagged = windows.filter((w) => w.anomaly_flag === "anomaly").length;
    svg.setAttribute("aria-label", `Emotion probabilities over ${windows.length} windows ` +
      `from 0 to ${seconds(g.total, g.total)}; ${flagged} marked as anomalies.`);
    defs(svg);
    axes(svg, g);
    rows(svg, windows, g, names);
    lines(svg, windows, g, names);
    hits(svg, tip, windows, g, names);
  }

  // The legend: a sample of each emotion's line and the marks of the rows.
  function legend(ul, names) {
    ul.replaceChildren();
    const item = (label, draw) => {
      const li = document.createElement("li");
      const icon = el(null, "svg", { width: 28, height: 14, "aria-hidden": "true" });
      draw(icon);
      li.append(icon, label);
      ul.appendChild(li);
      return li;
    };
    for (const name of names) {
      const s = style(name, names);
      item(name, (icon) => {
        el(icon, "line", { x1: 1, x2: 27, y1: 7, y2: 7, stroke: s.color, "stroke-width": 2,
          "stroke-dasharray": s.dash });
        marker(icon, s.marker, 14, 7, s.color);
      }).dataset.emotion = name;
    }
    item("face / speech found", (icon) => el(icon, "rect", { x: 4, y: 2, width: 20, height: 10,
      fill: "#333", stroke: "#999" }));
    item("anomaly", (icon) => el(icon, "polygon", { points: "8,1 20,1 14,11", fill: "#000" }));
    item("no face or speech", (icon) => {
      el(icon, "rect", { x: 4, y: 2, width: 20, height: 10, fill: "#eee", stroke: "#999" });
    });
  }

  return { draw, legend, style, percent };
})();
