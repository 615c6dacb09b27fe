/* One lane per participant of a video: their face, their emotion per window, when
 * they speak. No library.
 *
 * ParticipantLanes.draw(box, result) fills `box` with, per entry of
 * result.participants: a checkbox that shows or hides the lane, the face thumbnail,
 * the id, talk time and most frequent emotion, and an SVG strip on the timeline's
 * time axis: one block per window coloured by the emotion (its initial written in
 * it; paler when less sure), a dark bar under the windows where they speak, nothing
 * where they are not on screen. Speech no face on screen was credited with gets a
 * lane of its own ("unseen speaker"). Each block's title gives its time, emotion,
 * speaking probability and role.
 */
"use strict";

window.ParticipantLanes = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const HEIGHT = 34;

  function el(parent, tag, attrs, text) {
    const node = tag === "svg" || parent instanceof SVGElement
      ? document.createElementNS(NS, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function strip(parent, windows, duration, names) {
    const width = Math.max(320, parent.clientWidth || 640);
    const svg = el(parent, "svg", { viewBox: `0 0 ${width} ${HEIGHT}`, width: "100%",
      height: HEIGHT, role: "img", class: "lane-strip" });
    const x = (t) => (t / duration) * width;
    for (const w of windows) {
      const x0 = x(w.start);
      const wd = Math.max(1, x(w.end) - x0 - 1);
      if (w.emotion) {
        const colour = window.EmotionChart.style(w.emotion, names).color;
        const p = w.emotion_probs ? w.emotion_probs[w.emotion] : 1;
        const block = el(svg, "rect", { x: x0, y: 0, width: wd, height: HEIGHT - 9,
          fill: colour, "fill-opacity": (0.35 + 0.65 * p).toFixed(2), class: "lane-win",
          "data-emotion": w.emotion });
        const speaking = w.speaking === undefined ? "" :
          `, speaking ${(100 * w.speaking).toFixed(0)} %`;
        el(block, "title", {}, `${w.start.toFixed(1)}-${w.end.toFixed(1)} s: ${w.emotion}` +
          `${speaking}${w.role ? ` (${w.role})` : ""}`);
        if (wd > 14) {
          el(svg, "text", { x: x0 + wd / 2, y: 17, "text-anchor": "middle",
            "font-size": 11, fill: "#000" }, w.emotion[0].toUpperCase());
        }
      }
      if (w.speech_found && w.present !== false) {
        el(svg, "rect", { x: x0, y: HEIGHT - 6, width: wd, height: 5, fill: "#111",
          class: "lane-speaking" });
      }
    }
    return svg;
  }

  function lane(box, item, duration, names) {
    const row = el(box, "div", { class: "lane", "data-id": item.id });
    const head = el(row, "label", { class: "lane-head" });
    const toggle = el(head, "input", { type: "checkbox", class: "lane-toggle" });
    toggle.checked = true;
    if (item.thumbnail) el(head, "img", { src: item.thumbnail, alt: `${item.id}'s face`,
      width: 40, height: 40 });
    el(head, "span", { class: "lane-name" }, item.label);
    const body = el(row, "div", { class: "lane-body" });
    strip(body, item.timeline, duration, names);
    toggle.addEventListener("change", () => { body.hidden = !toggle.checked; });
  }

  function draw(box, result) {
    box.replaceChildren();
    const people = result.participants || [];
    const section = box.closest("section") || box;
    section.hidden = people.length === 0;
    if (!people.length) return;
    const names = Object.keys(result.emotions.probabilities);
    const duration = Math.max(result.duration,
      ...result.timeline.map((w) => w.end));
    for (const p of people) {
      const seen = `first seen ${p.first_seen.toFixed(1)} s`;
      lane(box, { id: p.id, thumbnail: p.thumbnail, timeline: p.timeline,
        label: `${p.id}: ${p.talk_seconds.toFixed(0)} s talk, mostly ${p.emotion || "none"}` +
          ` (${seen})` }, duration, names);
    }
    const unseen = (result.unseen_speaker || {}).timeline || [];
    if (unseen.length) {
      lane(box, { id: "unseen", thumbnail: null,
        timeline: unseen.map((w) => ({ ...w, present: true })),
        label: `Unseen speaker: ${result.unseen_speaker.talk_seconds.toFixed(0)} s talk` },
      duration, names);
    }
  }

  return { draw };
})();
