"use strict";
// Shared by every view. Everything the server sends is rendered with textContent, never as
// HTML: job types, targets, errors and batch names come from whoever submitted them.
const KEY = "skiplock.token";
const $ = (id) => document.getElementById(id);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}
function num(v) { return el("td", Number(v).toLocaleString("en-US"), "num"); }
function emptyRow(tbody, cols, text) {
  const td = el("td", text, "empty"); td.colSpan = cols; tbody.replaceChildren(row([td]));
}
function link(text, hash, cls) {
  const a = el("a", text, cls); a.href = hash; return a;
}
function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
function badge(status) { return el("span", status, "badge " + status); }

function setLive(ok, text) {
  $("dot").className = "dot " + (ok ? "ok" : "bad");
  $("updated").textContent = text;
}

function flash(text, bad) {
  $("flash").textContent = text;
  $("flash").className = bad ? "bad" : "";
}

/** Thrown when the server wants a token: the page has already asked for one. */
class NeedToken extends Error {}

/** A call to `/api/v1/…` with the stored token; JSON in, JSON out, errors as exceptions. */
async function api(path, method, body) {
  const token = localStorage.getItem(KEY);
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("api/v1/" + path, {
    method: method || "GET", headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    $("auth").style.display = "block";
    setLive(false, token ? "token refused" : "token needed");
    throw new NeedToken("a token is needed");
  }
  const data = await res.json().catch(() => ({}));
  $("auth").style.display = "none";
  setLive(true, "connected " + new Date().toLocaleTimeString());
  if (!res.ok) throw new Error(data.error || "HTTP " + res.status);
  return data;
}

/** Asks before anything changes; resolves true only on an explicit confirmation. */
function confirmFirst(text, okLabel) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (v) => { d.close(); $("confirm-ok").onclick = $("confirm-no").onclick = d.oncancel = null; resolve(v); };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    d.oncancel = () => done(false);
    d.showModal();
  });
}

/** Runs a bulk request until the server says there is no more, each request bounded. */
async function bulk(kind, filter) {
  let changed = 0;
  // A retried job that fails again matches again: stop after a generous number of pages.
  for (let page = 0; page < 100; page++) {
    const r = await api("jobs/" + kind, "POST", Object.assign({ limit: 10000 }, filter));
    changed += r.changed;
    if (!r.more) break;
  }
  return changed;
}
