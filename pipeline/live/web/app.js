// Polls state.json and draws each visible track's emotion bars; the picture itself is the MJPEG <img>.
"use strict";

const POLL_MS = 250;
const $ = (id) => document.getElementById(id);

function fmt(v, digits = 0) {
  return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–";
}

function barRow(name, p, color) {
  const row = document.createElement("div");
  row.className = "bar-row";
  const label = document.createElement("span");
  label.textContent = name;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${Math.round(100 * p)}%`;
  fill.style.background = color;
  bar.appendChild(fill);
  const pct = document.createElement("span");
  pct.className = "pct";
  pct.textContent = `${Math.round(100 * p)}%`;
  row.append(label, bar, pct);
  return row;
}

function trackCard(track, state) {
  const card = document.createElement("div");
  card.className = "track";
  const head = document.createElement("div");
  head.className = "track-head";
  const id = document.createElement("span");
  id.className = "track-id";
  id.textContent = `#${track.id}`;
  const top = document.createElement("span");
  top.className = "track-top";
  const extra = [track.gender, track.age != null ? `${Math.round(track.age)}y` : null].filter(Boolean);
  top.textContent = track.top ? `${track.top} ${Math.round(100 * track.top_p)}%` : "analysing…";
  if (track.top) top.style.color = state.colors[track.top];
  head.append(id, top);
  card.appendChild(head);
  if (extra.length) {
    const sub = document.createElement("div");
    sub.className = "muted";
    sub.textContent = extra.join(" · ");
    card.appendChild(sub);
  }
  if (track.emotion) {
    state.emotions.forEach((name, k) => card.appendChild(barRow(name, track.emotion[k], state.colors[name])));
  }
  return card;
}

function render(state) {
  const s = state.stats || {};
  $("st-fps").textContent = fmt(s.fps, 1);
  $("st-p50").textContent = fmt(s.latency_p50_ms);
  $("st-p95").textContent = fmt(s.latency_p95_ms);
  $("st-captured").textContent = fmt(s.captured);
  $("st-dropped").textContent = fmt(s.dropped);
  $("st-skipped").textContent = fmt(s.inference_skipped);
  $("source").textContent = state.source || "";
  $("clock").textContent = state.time_s != null ? `frame ${state.frame} · ${fmt(state.time_s, 1)} s` : "";
  const tracks = state.tracks || [];
  $("face-count").textContent = tracks.length ? `(${tracks.length})` : "";
  const box = $("tracks");
  box.replaceChildren(...tracks.map((t) => trackCard(t, state)));
  if (!tracks.length) {
    const p = document.createElement("p");
    p.className = "muted empty";
    p.textContent = state.frame != null ? "No face in view" : "Waiting for frames…";
    box.appendChild(p);
  }
  $("status-dot").className = state.closing ? "dot down" : "dot live";
}

async function poll() {
  try {
    const res = await fetch("state.json", { cache: "no-store" });
    render(await res.json());
  } catch (e) {
    $("status-dot").className = "dot down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
