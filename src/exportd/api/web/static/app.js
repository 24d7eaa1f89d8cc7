// exportd's page script: plain JavaScript, no build step, no dependencies.
//
// The server renders every page; this script keeps the exports on it live. It opens ONE
// EventSource on the owner's stream (/v1/events, with the session cookie), starting
// after the newest event id the page was rendered with; the browser resumes with
// Last-Event-ID by itself. A progress event updates the bar and numbers in place; any
// other event fetches the job's fragment (rendered by the same template as the page)
// and swaps it in. While the stream is down, it polls the JSON API instead.
// Numbers are formatted as in exportd/api/web/text.py.
"use strict";

(() => {
  const TYPES = [
    "created", "started", "progress", "completed", "failed", "cancelled",
    "cancel_requested", "retried", "retry_scheduled", "released", "expired",
  ];
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const POLL_MS = 2000;
  const REOPEN_MS = 10000;

  // -- formatting (as text.py) ----------------------------------------------------------

  const count = (n) => (n === null || n === undefined ? "?" : n.toLocaleString("en-US"));
  const percent = (p) => (p === null || p === undefined ? "" : `${Math.floor(p)}%`);
  const rate = (r, unit) => {
    if (r === null || r === undefined) return "";
    return r >= 10 ? `${Math.round(r).toLocaleString("en-US")} ${unit}/s` : `${r.toFixed(1)} ${unit}/s`;
  };
  const duration = (seconds) => {
    const t = Math.ceil(Math.max(seconds, 0));
    if (t < 60) return `${t} s`;
    if (t < 3600) return `${Math.floor(t / 60)} min ${t % 60} s`;
    return `${Math.floor(t / 3600)} h ${Math.floor((t % 3600) / 60)} min`;
  };
  const rows = (p) => `${count(p.done)}${p.total === null || p.total === undefined ? "" : ` / ${count(p.total)}`} ${p.unit}`;

  function localizeTimes(scope) {
    for (const el of scope.querySelectorAll("time[datetime]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (!Number.isNaN(when.getTime())) {
        el.title = el.textContent;
        el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
      }
    }
  }

  // -- page furniture ---------------------------------------------------------------------

  let leaving = false;
  function goSignIn() {
    if (leaving) return;
    leaving = true;
    const here = location.pathname + location.search;
    location.assign(`/sign-in?expired=1&next=${encodeURIComponent(here)}`);
  }

  function announce(text) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 50);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  function probeSession(root) {
    fetch("/session", { credentials: "same-origin", cache: "no-store" })
      .then((response) => response.json())
      .then((body) => { if (body.signed_in) location.replace(root.dataset.sessionProbe || "/"); })
      .catch(() => {});
  }

  // -- live updates -------------------------------------------------------------------

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    if (response.status === 401) { goSignIn(); throw new Error("signed out"); }
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  function fromJob(job) {
    const p = job.progress;
    return { done: p.done, total: p.total, unit: p.unit, percent: p.percent, message: p.message, rate: p.rate, eta: p.eta_seconds };
  }

  function fromEvent(data, el) {
    const started = Date.parse(el.dataset.startedAt || "");
    const elapsed = (Date.parse(data.at) - started) / 1000;
    let speed = null;
    let eta = null;
    if (elapsed > 0 && data.done > 0) {
      speed = Math.round((data.done / elapsed) * 100) / 100;
      if (data.total !== null && data.total !== undefined) eta = Math.max(data.total - data.done, 0) / speed;
    }
    return { done: data.done, total: data.total, unit: data.unit, percent: data.percent, message: data.message, rate: speed, eta };
  }

  function setField(el, name, text) {
    const target = el.querySelector(`[data-field="${name}"]`);
    if (target && target.textContent !== text) target.textContent = text;
  }

  function focusKey(el) {
    const active = document.activeElement;
    if (!active || !el.contains(active)) return null;
    const form = active.closest("form");
    if (form) return `form[action="${form.getAttribute("action")}"] button`;
    if (active.getAttribute("href")) return `[href="${active.getAttribute("href")}"]`;
    return "a";
  }

  class Live {
    constructor(root) {
      this.root = root;
      this.kind = root.dataset.live; // "card" (the list) or "detail" (a job's page)
      this.after = Number(root.dataset.after || 0);
      this.only = root.dataset.only || null;
      this.filters = root.dataset.filters || "";
      this.insert = root.dataset.insert === "yes";
      this.source = null;
      this.pollTimer = null;
      this.reopenTimer = null;
      this.refreshing = new Map();
      this.lastProgress = new Map();
      this.deciles = new Map();
    }

    start() {
      this.open();
    }

    open() {
      this.reopenTimer = null;
      const source = new EventSource(`/v1/events?after=${this.after}`);
      for (const type of TYPES) source.addEventListener(type, (message) => this.onMessage(message));
      source.addEventListener("open", () => this.stopPolling());
      source.addEventListener("error", () => this.onError(source));
      this.source = source;
    }

    onError(source) {
      this.startPolling();
      if (source.readyState === EventSource.CLOSED && this.reopenTimer === null) {
        this.reopenTimer = window.setTimeout(() => this.open(), REOPEN_MS);
      }
    }

    onMessage(message) {
      const id = Number(message.lastEventId);
      if (id > this.after) this.after = id;
      const data = JSON.parse(message.data);
      if (this.only && data.job_id !== this.only) return;
      if (data.type === "progress") {
        this.progress(data.job_id, data);
      } else {
        this.refresh(data.job_id, data.type === "created");
      }
    }

    element(id) {
      return document.getElementById(`job-${id}`);
    }

    progress(id, data) {
      const el = this.element(id);
      if (!el) return;
      if (el.dataset.status !== "running") { this.refresh(id); return; }
      const p = fromEvent(data, el);
      this.lastProgress.set(id, data);
      this.show(el, p);
    }

    show(el, p) {
      const bar = el.querySelector('[data-field="bar"]');
      if (bar) {
        if (p.percent === null || p.percent === undefined) bar.removeAttribute("value");
        else bar.value = p.percent;
      }
      setField(el, "percent", percent(p.percent));
      setField(el, "rows", rows(p));
      setField(el, "rate", rate(p.rate, p.unit));
      setField(el, "eta", p.eta === null || p.eta === undefined ? "" : `ETA ${duration(p.eta)}`);
      setField(el, "message", p.message || "");
      if (p.percent !== null && p.percent !== undefined) {
        const decile = Math.floor(p.percent / 10);
        const id = el.dataset.job;
        if (this.deciles.has(id) && this.deciles.get(id) !== decile) {
          announce(`${el.dataset.name}: ${Math.floor(p.percent)}%`);
        }
        this.deciles.set(id, decile);
      }
    }

    async refresh(id, isNew = false) {
      const running = this.refreshing.get(id);
      if (running) { running.again = true; return; }
      const state = { again: false };
      this.refreshing.set(id, state);
      try {
        do {
          state.again = false;
          await this.swap(id, isNew);
        } while (state.again);
      } catch (error) {
        // the next event or poll tries again
      } finally {
        this.refreshing.delete(id);
      }
    }

    fragmentUrl(id, isNew) {
      if (this.kind === "detail") return `/exports/${id}/detail`;
      const query = new URLSearchParams(this.filters);
      query.set("back", location.pathname + location.search);
      if (isNew) query.set("match", "1");
      return `/exports/${id}/card?${query}`;
    }

    async swap(id, isNew) {
      const current = this.element(id);
      if (!current && !(isNew && this.insert && this.kind === "card")) return;
      const response = await fetch(this.fragmentUrl(id, isNew && !current), { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { goSignIn(); return; }
      if (response.status === 404) { this.remove(id); return; }
      if (response.status !== 200) return;
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim();
      const fresh = template.content.firstElementChild;
      if (!fresh) return;
      localizeTimes(fresh);
      const now = this.element(id);
      if (now) {
        const key = focusKey(now);
        const before = now.dataset.status;
        now.replaceWith(fresh);
        if (key) (fresh.querySelector(key) || fresh.querySelector("a, h1") || fresh).focus();
        if (before !== fresh.dataset.status) announce(`${fresh.dataset.name}: ${fresh.dataset.status}`);
      } else {
        this.root.prepend(fresh);
        announce(`New export ${fresh.dataset.name}: ${fresh.dataset.status}`);
      }
      this.emptyNote();
      const last = this.lastProgress.get(id);
      if (fresh.dataset.status === "running" && last) this.show(fresh, fromEvent(last, fresh));
    }

    remove(id) {
      const el = this.element(id);
      if (el && this.kind === "card") { el.remove(); this.emptyNote(); }
    }

    emptyNote() {
      const note = document.getElementById("no-jobs");
      if (note) note.hidden = this.root.querySelector("[data-job]") !== null;
    }

    // -- polling, while the stream is down ---------------------------------------------

    startPolling() {
      this.root.dataset.liveMode = "polling";
      if (this.pollTimer !== null) return;
      this.pollTimer = window.setInterval(() => this.poll(), POLL_MS);
      this.poll();
    }

    stopPolling() {
      this.root.dataset.liveMode = "stream";
      if (this.pollTimer !== null) window.clearInterval(this.pollTimer);
      this.pollTimer = null;
    }

    async poll() {
      try {
        for (const el of [...this.root.querySelectorAll("[data-job]")]) {
          if (this.kind === "card" && TERMINAL.has(el.dataset.status)) continue;
          await this.pollOne(el);
        }
        if (this.insert && this.kind === "card") await this.pollNew();
      } catch (error) {
        // the server is unreachable: the next tick tries again
      }
    }

    async pollOne(el) {
      const id = el.dataset.job;
      const job = await getJSON(`/v1/exports/${id}`);
      if (job === null) { this.remove(id); return; }
      if (job.status !== el.dataset.status || String(job.attempt) !== el.dataset.attempt) {
        await this.refresh(id);
      } else if (job.status === "running") {
        this.show(el, fromJob(job));
      }
    }

    async pollNew() {
      const query = new URLSearchParams(this.filters);
      query.set("limit", "10");
      const page = await getJSON(`/v1/exports?${query}`);
      const first = this.root.querySelector("[data-job]");
      const newest = first ? first.dataset.job : "";
      for (const job of (page ? page.items : []).reverse()) {
        if (job.id > newest && !this.element(job.id)) await this.refresh(job.id, true);
      }
    }
  }

  // -- start ----------------------------------------------------------------------------

  function start() {
    localizeTimes(document);
    const focus = document.querySelector("[data-focus]");
    if (focus) focus.focus();
    const probe = document.querySelector("[data-session-probe]");
    if (probe) probeSession(probe);
    const root = document.querySelector("[data-live]");
    if (root) new Live(root).start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
