/*
 * <llmgw-chat>: a chat box that streams answers from an llmgw gateway.
 *
 *   <script src="https://gateway.example/llmgw-chat.js" defer></script>
 *   <llmgw-chat gateway="https://gateway.example" heading="Ask the model"></llmgw-chat>
 *
 * Attributes: gateway (base URL, default the page's origin), thumbmark (visitor id; default a
 * random id kept in localStorage), heading (or title), placeholder,
 * theme ("light" | "dark"; default: the system's preference).
 * CSS custom properties: --llmgw-accent, --llmgw-bg, --llmgw-fg, --llmgw-radius, --llmgw-font.
 * DOM events (bubbling, composed), with their detail:
 *   llmgw-sent       { input, previousResponseId }    a question went to the gateway
 *   llmgw-completed  { responseId, usage, incomplete, sources } an answer ended normally;
 *                    incomplete: true when it was cut short at its length limit (it can be
 *                    continued); sources: the posts it cites, [{ title, url }] (often [])
 *   llmgw-error      { status, code, message }         an answer failed or was refused; status 200
 *                    for an error event in the stream, 0 when the gateway could not be reached
 *
 * Visitor passes (issue 16): once the visitor focuses the box, the widget fetches a proof-of-work
 * challenge (ALTCHA v1), solves it in a Web Worker, trades the solution for a pass, and sends the
 * pass as X-Visitor-Pass on each chat; the pass is kept in sessionStorage until it expires or its
 * chats run out. A chat refused for want of a pass gets a fresh one and is sent once more. A page
 * whose CSP has no `worker-src blob:` gets the same work done on its main thread, between batches;
 * a gateway without the pass endpoints (404) is chatted with as before.
 *
 * The owner's posts (issue 19): while the gateway searches them for the answer, a quiet line says
 * Searching the posts for “…” (event `posts.searched`); the posts it found (`posts.sources`, one
 * event per search) are shown under the answer when it ends, as "Sources: " and links, each URL
 * once. Only http(s) URLs become links (in a new tab, rel="noopener noreferrer"); a title is text.
 *
 * No dependencies and no innerHTML: the model's output is untrusted and only ever set as text,
 * and so are the posts' titles and the searches' queries.
 */
(() => {
  "use strict";

  const TAG = "llmgw-chat";
  if (typeof customElements === "undefined" || customElements.get(TAG)) return;

  const THUMBMARK_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
  const THUMBMARK_KEY = "llmgw-thumbmark";
  const STATUS_TIMEOUT_MS = 3000;
  const DEFAULT_WAIT_S = 15;
  const BACKUP = "Answered by the backup model.";
  const MAX_WAIT_S = 600;
  const PASS_KEY = "llmgw-pass";
  const PASS_TIMEOUT_MS = 10000;
  const PASS_MARGIN_MS = 30000; // a pass this close to its expiry is renewed before a chat
  const SLOW_CHECK_MS = 500; // a check taking longer than this is shown; base difficulty is not
  const CHECKING = "Checking your browser…";
  // The gateway's 401 codes that a fresh pass answers.
  const PASS_REFUSALS = new Set(["pass_required", "pass_invalid"]);
  const MAX_QUERY_SHOWN = 120; // characters of a search's query the quiet line shows
  const MAX_SOURCES = 20; // posts listed under one answer

  const STYLE = `
:host {
  --_accent: var(--llmgw-accent, #2f5fd0);
  --_bg: var(--llmgw-bg, #ffffff);
  --_fg: var(--llmgw-fg, #1d2330);
  --_radius: var(--llmgw-radius, 12px);
  --_font: var(--llmgw-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  --_muted: color-mix(in srgb, var(--_fg) 62%, var(--_bg));
  --_line: color-mix(in srgb, var(--_fg) 16%, var(--_bg));
  --_soft: color-mix(in srgb, var(--_fg) 5%, var(--_bg));
  --_mine: color-mix(in srgb, var(--_accent) 14%, var(--_bg));
  --_warn-bg: color-mix(in srgb, #d98a00 16%, var(--_bg));
  --_error-fg: #b42318;
  display: block;
  color-scheme: light;
  max-width: 44rem;
  font: 15px/1.5 var(--_font);
}
:host([hidden]) { display: none; }
:host([theme="dark"]) {
  --_accent: var(--llmgw-accent, #8fb0ff);
  --_bg: var(--llmgw-bg, #161a22);
  --_fg: var(--llmgw-fg, #e6e9ef);
  --_error-fg: #ff9b8f;
  color-scheme: dark;
}
@media (prefers-color-scheme: dark) {
  :host(:not([theme="light"])) {
    --_accent: var(--llmgw-accent, #8fb0ff);
    --_bg: var(--llmgw-bg, #161a22);
    --_fg: var(--llmgw-fg, #e6e9ef);
    --_error-fg: #ff9b8f;
    color-scheme: dark;
  }
}
* { box-sizing: border-box; }
.panel {
  display: flex; flex-direction: column; gap: .75rem;
  padding: 1rem; border: 1px solid var(--_line); border-radius: var(--_radius);
  background: var(--_bg); color: var(--_fg);
}
header { display: flex; align-items: center; justify-content: space-between; gap: .5rem; }
h2 { margin: 0; font-size: 1.05rem; font-weight: 600; }
.log {
  display: flex; flex-direction: column; gap: .75rem;
  max-height: var(--llmgw-log-height, 26rem); overflow-y: auto; overscroll-behavior: contain;
}
.log:empty { display: none; }
.turn { margin: 0; max-width: 92%; overflow-wrap: anywhere; white-space: pre-wrap; }
.question {
  align-self: flex-end; padding: .5rem .75rem; border-radius: var(--_radius);
  background: var(--_mine);
}
.reply { align-self: flex-start; }
.answer:empty::before { content: "…"; color: var(--_muted); }
.pending .answer:empty::before {
  content: "● ● ●"; letter-spacing: .1em; animation: pulse 1.2s infinite;
}
@keyframes pulse { 50% { opacity: .3; } }
@media (prefers-reduced-motion: reduce) { .pending .answer:empty::before { animation: none; } }
details {
  margin-bottom: .4rem; padding: .35rem .6rem; border-radius: calc(var(--_radius) * .6);
  background: var(--_soft); color: var(--_muted); font-size: .9em;
}
summary { cursor: pointer; font-weight: 500; }
.reasoning-text { margin-top: .35rem; }
.note {
  display: block; margin-top: .35rem; font-size: .85em; color: var(--_muted); white-space: normal;
}
.note.error { color: var(--_error-fg); }
.wait-status { margin: .35rem 0 0; font-size: .85em; color: var(--_muted); white-space: normal; }
.searching {
  margin: 0 0 .35rem; font-size: .85em; font-style: italic; color: var(--_muted);
  white-space: normal;
}
.sources { margin: .45rem 0 0; font-size: .85em; color: var(--_muted); white-space: normal; }
.sources a { color: var(--_accent); text-underline-offset: .15em; }
.sources a:focus-visible { outline: 3px solid var(--_accent); outline-offset: 2px; }
.wait-status:empty { margin: 0; }
.wordless .answer { display: none; }
.offer {
  display: block; min-height: 2.25rem; margin-top: .45rem; padding: .3rem .8rem;
  background: transparent; color: var(--_accent); font-size: .9em;
}
.notice {
  display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between;
  gap: .25rem .75rem;
  padding: .5rem .75rem; border-radius: calc(var(--_radius) * .6); background: var(--_warn-bg);
}
.notice[hidden] { display: none; }
.notice p { margin: 0; }
.countdown { font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap; }
form { display: flex; gap: .5rem; align-items: flex-end; }
textarea {
  flex: 1; min-height: 2.75rem; max-height: 12rem; resize: vertical;
  padding: .6rem .75rem; border: 1px solid var(--_line); border-radius: calc(var(--_radius) * .6);
  background: var(--_bg); color: var(--_fg); font: inherit;
}
textarea::placeholder { color: var(--_muted); }
textarea:disabled { opacity: .6; cursor: not-allowed; }
button {
  min-height: 2.75rem; padding: .5rem 1rem; border-radius: calc(var(--_radius) * .6);
  border: 1px solid var(--_accent); font: inherit; font-weight: 600; cursor: pointer;
}
button[hidden] { display: none; }
.send { background: var(--_accent); color: var(--_bg); }
.stop, .reset { background: transparent; color: var(--_accent); }
.reset {
  min-height: 0; padding: .15rem .6rem; font-size: .85em; font-weight: 500;
  border-color: var(--_line);
}
button:disabled { opacity: .5; cursor: not-allowed; }
button:focus-visible, textarea:focus-visible, summary:focus-visible, .log:focus-visible {
  outline: 3px solid var(--_accent); outline-offset: 2px;
}
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
`;

  /** Build an element with attributes and text children; never parses HTML. */
  function h(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    element.append(...children);
    return element;
  }

  /** Server-Sent Events parser (WHATWG rules) fed with decoded text in arbitrary chunks. */
  class SseParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.eventName = "";
      this.data = [];
    }

    push(text) {
      this.buffer += text;
      const lineEnd = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = lineEnd.exec(this.buffer)) !== null) {
        // A lone "\r" at the end may be the first half of a "\r\n" still in flight.
        if (match[0] === "\r" && lineEnd.lastIndex === this.buffer.length) break;
        this.line(this.buffer.slice(start, match.index));
        start = lineEnd.lastIndex;
      }
      this.buffer = this.buffer.slice(start);
    }

    line(line) {
      if (line === "") return this.dispatch();
      if (line.startsWith(":")) return undefined;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.eventName = value;
      else if (field === "data") this.data.push(value);
      return undefined;
    }

    dispatch() {
      if (this.data.length > 0) this.onEvent(this.eventName || "message", this.data.join("\n"));
      this.eventName = "";
      this.data = [];
    }
  }

  /** Which text an event belongs to: its kind, output item and part (or summary part). */
  function textKey(kind, event) {
    const part = event.content_index ?? event.summary_index ?? 0;
    return `${kind} ${event.item_id ?? ""} ${part}`;
  }

  /** A source's URL as a link's target when it is http(s); null for anything else (shown as text). */
  function linkable(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null; // relative, or no URL at all
    }
  }

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // unlike randomUUID, also available on plain-http pages
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  let memoryThumbmark = null;

  /** A stable per-browser id: localStorage when allowed, else one per page load. */
  function storedThumbmark() {
    try {
      const stored = localStorage.getItem(THUMBMARK_KEY);
      if (stored && THUMBMARK_PATTERN.test(stored)) return stored;
      const fresh = randomId();
      localStorage.setItem(THUMBMARK_KEY, fresh);
      return fresh;
    } catch {
      memoryThumbmark ??= randomId(); // storage blocked (privacy mode, sandboxed frame)
      return memoryThumbmark;
    }
  }

  /**
   * ALTCHA v1's work: the number in 0..maxNumber whose SHA-256, written after the salt, is the
   * challenge; null if none is. The worker runs this very function, from its source text, so it
   * must use nothing from around it.
   *
   * SHA-256 is written out here for the one-block texts a challenge hashes (salt and number, at
   * most 55 bytes), because WebCrypto's digest is a promise per hash: in headless Chromium on
   * the project's 2-core machine it managed 53,000-190,000 hashes/s against 1.6 million for this
   * loop (tests/bench/pass_solve.py), which is what a visitor waits at the higher steps. Longer
   * texts go to WebCrypto. The gateway checks every solution, so a wrong hash here only fails.
   */
  async function solveChallenge({ challenge, salt, maxNumber }) {
    const target = Uint32Array.from(challenge.match(/.{8}/g), (word) => Number.parseInt(word, 16));
    const prefix = new TextEncoder().encode(salt);
    if (prefix.length + String(maxNumber).length > 55) {
      if (!globalThis.crypto?.subtle) return null; // a plain-http page has no WebCrypto
      const encoder = new TextEncoder();
      for (let number = 0; number <= maxNumber; number += 1) {
        const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(salt + number)));
        if (digest.every((byte, i) => byte === ((target[i >> 2] >>> (24 - 8 * (i & 3))) & 255))) return number;
      }
      return null;
    }
    const K = Uint32Array.of(
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    );
    const IV = Uint32Array.of(
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    );
    const W = new Uint32Array(64);
    const bytes = new Uint8Array(64);
    bytes.set(prefix);
    const hashIsTarget = (length) => {
      W.fill(0, 0, 16);
      for (let i = 0; i < length; i += 1) W[i >> 2] |= bytes[i] << (24 - 8 * (i & 3));
      W[length >> 2] |= 0x80 << (24 - 8 * (length & 3));
      W[15] = length * 8;
      for (let i = 16; i < 64; i += 1) {
        const x = W[i - 15];
        const y = W[i - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }
      let a = 0x6a09e667, b = 0xbb67ae85, c = 0x3c6ef372, d = 0xa54ff53a;
      let e = 0x510e527f, f = 0x9b05688c, g = 0x1f83d9ab, h = 0x5be0cd19;
      for (let i = 0; i < 64; i += 1) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      // The first word rules out all but one in 4 billion; only then the other seven.
      if (((a + IV[0]) >>> 0) !== target[0]) return false;
      const words = [b, c, d, e, f, g, h];
      return words.every((word, i) => ((word + IV[i + 1]) >>> 0) === target[i + 1]);
    };
    const batch = 20000; // numbers between turns given back to the page (when not in a worker)
    for (let start = 0; start <= maxNumber; start += batch) {
      for (let number = start; number <= Math.min(maxNumber, start + batch - 1); number += 1) {
        const digits = String(number);
        let length = prefix.length;
        for (let i = 0; i < digits.length; i += 1) bytes[length++] = digits.charCodeAt(i);
        if (hashIsTarget(length)) return number;
      }
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    return null;
  }

  const WORKER_SOURCE = `"use strict";
${solveChallenge};
onmessage = (event) => solveChallenge(event.data).then(
  (number) => postMessage({ number }),
  (error) => postMessage({ error: String(error) }),
);`;
  let workerUrl = null;

  /** Solve in a Web Worker made from the inline source, so the page stays smooth; where the page's
   * CSP forbids such a worker, solve here: the loop gives the page a turn every batch. */
  function solve(challenge) {
    let worker;
    try {
      workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
      worker = new Worker(workerUrl);
    } catch {
      return solveChallenge(challenge);
    }
    return new Promise((resolve, reject) => {
      worker.addEventListener("message", ({ data }) => {
        worker.terminate();
        if (data.error) reject(new Error(data.error));
        else resolve(data.number);
      });
      // The worker catches its own errors, so this one is a worker that could not start.
      worker.addEventListener("error", (event) => {
        event.preventDefault();
        worker.terminate();
        resolve(solveChallenge(challenge));
      });
      worker.postMessage(challenge);
    });
  }

  function isChallenge(body) {
    return (
      body?.algorithm === "SHA-256" &&
      /^[0-9a-f]{64}$/.test(body.challenge) &&
      typeof body.salt === "string" &&
      typeof body.signature === "string" &&
      Number.isSafeInteger(body.maxNumber) &&
      body.maxNumber >= 0
    );
  }

  function isGrant(body) {
    return (
      typeof body?.pass === "string" &&
      body.pass !== "" &&
      Number.isFinite(body.expires_in) &&
      body.expires_in > 0 &&
      Number.isSafeInteger(body.chats) &&
      body.chats > 0
    );
  }

  const passes = new Map();

  /**
   * The visitor pass for one gateway, shared by its widgets on the page and kept in
   * sessionStorage, so that the next page of the blog needs no new work.
   */
  class VisitorPass {
    static forGateway(base) {
      if (!passes.has(base)) passes.set(base, new VisitorPass(base));
      return passes.get(base);
    }

    constructor(base) {
      this.base = base;
      this.storageKey = `${PASS_KEY}:${base}`;
      this.held = this.load(); // { token, expiresAt (ms), chatsLeft } or null
      this.pending = null;
      this.pendingSince = 0;
      this.unsupported = false; // the gateway answered 404: it has no passes
    }

    /** Start getting a pass in the background, unless one is held or on its way. */
    prepare() {
      this.get();
    }

    /** A pass for the next chat, or null when none can be had (the chat goes without). */
    get() {
      if (this.usable()) return Promise.resolve(this.held.token);
      if (this.unsupported) return Promise.resolve(null);
      if (!this.pending) {
        this.pendingSince = performance.now();
        this.pending = this.obtain().finally(() => {
          this.pending = null;
        });
      }
      return this.pending;
    }

    /** The gateway refused this pass or wanted one: get another (the gateway has passes). */
    renew(token) {
      if (this.held?.token === token) this.forget();
      this.unsupported = false;
      return this.get();
    }

    /** How long the pass on its way has been worked on, in ms; null when none is. */
    checkingFor() {
      return this.pending ? performance.now() - this.pendingSince : null;
    }

    /** A chat went with this pass; when its last chat is used, the next pass is got right away. */
    spend(token) {
      if (this.held?.token !== token) return;
      this.held.chatsLeft -= 1;
      this.save();
      if (!this.usable()) this.prepare();
    }

    usable() {
      const held = this.held;
      return held !== null && held.chatsLeft > 0 && held.expiresAt - PASS_MARGIN_MS > Date.now();
    }

    forget() {
      this.held = null;
      this.save();
    }

    async obtain() {
      try {
        const made = await this.request("/api/pass/challenge");
        if (!isChallenge(made)) return null;
        const { algorithm, challenge, salt, maxNumber, signature } = made;
        const started = performance.now();
        const number = await solve({ challenge, salt, maxNumber });
        if (number === null) return null;
        const took = Math.round(performance.now() - started);
        const solution = { algorithm, challenge, number, salt, signature, took };
        const grant = await this.request("/api/pass", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ payload: btoa(JSON.stringify(solution)) }),
        });
        if (!isGrant(grant)) return null;
        const expiresAt = Date.now() + grant.expires_in * 1000;
        this.held = { token: grant.pass, expiresAt, chatsLeft: grant.chats };
        this.save();
        return grant.pass;
      } catch {
        return null; // unreachable or refused: the chat goes without, and a 401 says if it must not
      }
    }

    /** A pass endpoint's JSON, or null when it refused; a 404 is an older gateway. */
    async request(path, init = {}) {
      const response = await fetch(`${this.base}${path}`, {
        ...init,
        headers: { Accept: "application/json", ...init.headers },
        credentials: "omit",
        cache: "no-store",
        signal: AbortSignal.timeout(PASS_TIMEOUT_MS),
      });
      if (response.status === 404) this.unsupported = true;
      return response.ok ? readJson(response) : null;
    }

    load() {
      try {
        const held = JSON.parse(sessionStorage.getItem(this.storageKey) ?? "null");
        const valid =
          typeof held?.token === "string" &&
          Number.isFinite(held.expiresAt) &&
          Number.isSafeInteger(held.chatsLeft);
        return valid ? held : null;
      } catch {
        return null; // storage blocked or garbled: a pass is got afresh
      }
    }

    save() {
      try {
        if (this.held) sessionStorage.setItem(this.storageKey, JSON.stringify(this.held));
        else sessionStorage.removeItem(this.storageKey);
      } catch {
        // storage blocked: the pass lives as long as the page
      }
    }
  }

  function retryAfterSeconds(response, body) {
    const header = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    const fromBody = Number(body?.retry_after);
    const seconds = Number.isFinite(header) ? header : Number.isFinite(fromBody) ? fromBody : NaN;
    if (!Number.isFinite(seconds) || seconds < 0) return DEFAULT_WAIT_S;
    return Math.min(Math.max(Math.ceil(seconds), 1), MAX_WAIT_S);
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  function formatSeconds(seconds) {
    if (seconds < 60) return `${seconds} s`;
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }

  function spokenSeconds(seconds) {
    if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
    const minutes = Math.round(seconds / 60);
    return minutes === 1 ? "about a minute" : `about ${minutes} minutes`;
  }

  const WAKING = "Waking the model…";
  const CUT_SHORT = "Cut short: the answer reached its length limit.";
  const NO_ROOM = "The answer ran out of room while thinking.";
  const STATE_MESSAGES = {
    busy: "The model is busy answering other visitors right now.",
    down: "The chat is resting at the moment — the model is offline.",
    unavailable: "The chat can't take new questions right now.",
  };
  // The gateway's error codes (SSE error event or JSON answer), said for a visitor; unknown codes
  // show the gateway's own message.
  const ERROR_WORDS = {
    first_token_timeout: "The model took too long to start answering. Please try again.",
    idle_timeout: "The model stopped sending. Please try again.",
    total_timeout: "The answer took too long and was cut short.",
    upstream_failed: "The model failed while answering. Please try again.",
    upstream_closed: "The model stopped before finishing. Please try again.",
    context_full: "This conversation has grown too long for the model to go on.",
    conversation_expired: "The model no longer remembers this conversation.",
    upstream_incompatible:
      "The chat's model server can't answer in the way this chat needs. Please try again later.",
    upstream_rejected: "The model couldn't take this question. Try asking it another way.",
    too_many_tokens:
      "That's more than the chat can take at once. Send a shorter message, or start afresh.",
    pass_required: "The chat couldn't check this browser. Please reload the page and try again.",
    pass_invalid: "The chat couldn't check this browser. Please reload the page and try again.",
  };
  // Errors that only a fresh conversation gets past: offered as one click.
  const RESTARTABLE = new Set(["context_full", "conversation_expired"]);
  // Any of these is the model's first output: the waking status line gives way to it.
  const OUTPUT_EVENTS = new Set([
    "response.output_text.delta",
    "response.output_text.done",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
  ]);
  const LIMIT_MESSAGES = {
    visitor: "You've sent a lot of messages.",
    global: "Everyone is chatting right now.",
    tokens: "Long messages have used up the chat's budget for now.",
  };

  class LlmgwChat extends HTMLElement {
    static get observedAttributes() {
      return ["heading", "title", "placeholder"];
    }

    constructor() {
      super();
      this.previousResponseId = null;
      this.offers = [];
      this.controller = null;
      this.countdownTimer = null;
      this.statusChecked = false;
      this.locked = { input: false, send: false };
      this.root = this.attachShadow({ mode: "open" });
      this.adoptStyle();
      this.build();
    }

    adoptStyle() {
      // A constructed sheet is not inline style, so it passes a strict style-src CSP.
      if ("adoptedStyleSheets" in Document.prototype && "replaceSync" in CSSStyleSheet.prototype) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(STYLE);
        this.root.adoptedStyleSheets = [sheet];
      } else {
        this.root.append(h("style", {}, STYLE));
      }
    }

    build() {
      this.headingElement = h("h2", { id: "heading" });
      this.resetButton = h("button", { type: "button", class: "reset", hidden: "" }, "New chat");
      this.log = h("div", {
        class: "log",
        role: "log",
        "aria-live": "polite",
        "aria-labelledby": "heading",
        tabindex: "0",
      });
      this.statusText = h("p", { role: "status", class: "status-text" });
      this.countdown = h("p", { class: "countdown", "aria-hidden": "true" });
      this.notice = h("div", { class: "notice", part: "notice" }, this.statusText, this.countdown);
      this.liveStatus = h("p", { role: "status", class: "visually-hidden" });
      this.input = h("textarea", { id: "message", rows: "2", autocomplete: "off" });
      this.sendButton = h("button", { type: "submit", class: "send" }, "Send");
      this.stopButton = h("button", { type: "button", class: "stop", hidden: "" }, "Stop");
      this.form = h(
        "form",
        {},
        h("label", { for: "message", class: "visually-hidden" }, "Your message"),
        this.input,
        this.sendButton,
        this.stopButton,
      );
      const panel = h(
        "section",
        { class: "panel", part: "panel", "aria-labelledby": "heading", title: "" },
        h("header", {}, this.headingElement, this.resetButton),
        this.log,
        this.notice,
        this.liveStatus,
        this.form,
      );
      this.root.append(panel);
      this.hideNotice();
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.send();
      });
      this.input.addEventListener("keydown", (event) => this.onKeydown(event));
      this.input.addEventListener("focus", () => this.checkStatusOnce(), { once: true });
      // The pass is worked for while the visitor writes, so the first question need not wait.
      this.input.addEventListener("focus", () => this.pass.prepare());
      this.input.addEventListener("input", () => this.pass.prepare());
      this.stopButton.addEventListener("click", () => this.stop());
      this.resetButton.addEventListener("click", () => this.reset());
      this.root.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && this.controller) {
          event.preventDefault();
          this.stop();
        }
      });
    }

    connectedCallback() {
      this.renderTexts();
    }

    disconnectedCallback() {
      // Taken out of the page: end the stream and the wait, so a re-inserted widget starts free.
      this.controller?.abort();
      this.clearCountdown();
      this.locked = { input: false, send: false };
      this.hideNotice();
      this.updateLocks();
    }

    attributeChangedCallback() {
      this.renderTexts();
    }

    renderTexts() {
      this.headingElement.textContent =
        this.getAttribute("heading") || this.getAttribute("title") || "Ask the model";
      this.input.placeholder =
        this.getAttribute("placeholder") || "Ask a question — Enter sends, Shift+Enter adds a line";
    }

    get gateway() {
      return (this.getAttribute("gateway") || "").trim().replace(/\/+$/, "");
    }

    get endpoint() {
      const base = this.gateway;
      return (path) => `${base}${path}`;
    }

    get pass() {
      return VisitorPass.forGateway(this.gateway);
    }

    get thumbmark() {
      const given = this.getAttribute("thumbmark");
      if (given !== null) {
        if (THUMBMARK_PATTERN.test(given)) return given;
        console.warn(`${TAG}: ignoring a thumbmark that is not [A-Za-z0-9_.:-]{1,128}`);
      }
      return storedThumbmark();
    }

    onKeydown(event) {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      event.preventDefault();
      if (!this.controller) this.send();
    }

    /** Ask the gateway's public status; a missing endpoint or any failure counts as "ok". */
    async fetchStatus() {
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(), STATUS_TIMEOUT_MS);
      try {
        const response = await fetch(this.endpoint("/api/status"), {
          headers: { Accept: "application/json" },
          credentials: "omit",
          cache: "no-store",
          signal: timeout.signal,
        });
        const body = await readJson(response);
        const state = typeof body?.state === "string" ? body.state : "ok";
        return { state, retryAfter: retryAfterSeconds(response, body) };
      } catch {
        return { state: "ok", retryAfter: 0 };
      } finally {
        clearTimeout(timer);
      }
    }

    async checkStatusOnce() {
      if (this.statusChecked || this.controller) return;
      this.statusChecked = true;
      this.applyStatus(await this.fetchStatus());
    }

    /** Show what the status says; returns whether a question may be sent now. */
    applyStatus({ state, retryAfter }) {
      if (state === "busy" || state === "down") {
        this.waitForService(STATE_MESSAGES[state], retryAfter);
        return false;
      }
      if (this.locked.send && !this.locked.input) this.serviceBack();
      if (state === "degraded") this.announce("Answers may be slower than usual right now.");
      return true;
    }

    send() {
      const text = this.input.value.trim();
      if (!text || this.controller || this.locked.input || this.locked.send) return;
      this.input.value = "";
      this.ask(text);
    }

    /** Send a question (typed, or a Continue / restart the widget offered) and show its answer. */
    async ask(text) {
      if (this.controller || this.locked.input || this.locked.send) {
        if (!this.input.value) this.input.value = text; // an offer clicked while waiting: keep it
        return;
      }
      this.statusChecked = true;
      this.controller = new AbortController();
      this.withdrawOffers();
      const turn = this.addTurn(text);
      this.setStreaming(true);
      try {
        const status = await this.fetchStatus();
        if (this.controller.signal.aborted || !this.applyStatus(status)) this.giveBack(turn, text);
        else await this.converse(text, turn);
      } catch (error) {
        if (error?.name === "AbortError") this.note(turn, "Stopped.");
        else this.failTurn(turn, "Could not reach the chat. Check your connection and try again.");
      } finally {
        this.finishTurn(turn);
      }
    }

    async converse(text, turn) {
      const body = { input: text };
      if (this.previousResponseId) body.previous_response_id = this.previousResponseId;
      this.emit("llmgw-sent", { input: text, previousResponseId: this.previousResponseId });
      const { response, refusal } = await this.postWithPass(body, turn);
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.startsWith("text/event-stream") && response.body) {
        return this.readStream(response.body, turn);
      }
      const said = refusal === undefined ? await readJson(response) : refusal;
      return this.refused(response, said, turn, text);
    }

    /** Post the chat with the visitor's pass; one the gateway wanted or refused is got afresh,
     * and the chat sent once more. `refusal` is the body of a 401 already read. */
    async postWithPass(body, turn) {
      const token = await this.passFor(turn, this.pass.get());
      const response = await this.postChat(body, token);
      if (response.status !== 401) return { response };
      const refusal = await readJson(response);
      if (!PASS_REFUSALS.has(refusal?.code)) return { response, refusal };
      const fresh = await this.passFor(turn, this.pass.renew(token));
      if (fresh === null) return { response, refusal };
      return { response: await this.postChat(body, fresh) };
    }

    /** Wait for the pass on its way, saying "Checking your browser…" once that takes long. */
    async passFor(turn, coming) {
      const since = this.pass.checkingFor();
      const show = () => this.showWaitStatus(turn, { message: CHECKING });
      const timer = since === null ? null : setTimeout(show, SLOW_CHECK_MS - since);
      const { signal } = this.controller;
      const stopped = new Promise((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      try {
        const token = await Promise.race([coming, stopped]);
        if (token !== null) this.pass.spend(token);
        return token;
      } finally {
        clearTimeout(timer);
        this.clearWaitStatus(turn);
      }
    }

    postChat(body, token) {
      const headers = {
        "Content-Type": "application/json",
        Accept: "text/event-stream",
        "X-Thumbmark-Id": this.thumbmark,
      };
      if (token !== null) headers["X-Visitor-Pass"] = token;
      return fetch(this.endpoint("/api/chat"), {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        credentials: "omit",
        signal: this.controller.signal,
      });
    }

    async readStream(stream, turn) {
      const reader = stream.getReader();
      const decoder = new TextDecoder();
      // streamed: the texts (by kind, item and part) that came as deltas, so a `.done` carrying
      // the same text whole is not shown twice.
      const progress = { id: null, done: false, failed: false, streamed: new Set() };
      const parser = new SseParser((name, data) => this.onEvent(name, data, turn, progress));
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(decoder.decode(value, { stream: true }));
        }
        parser.push(decoder.decode());
      } finally {
        reader.releaseLock();
      }
      if (!progress.done && !progress.failed) this.failTurn(turn, "The answer was cut off.");
    }

    onEvent(name, data, turn, progress) {
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return;
      }
      const type = typeof event?.type === "string" ? event.type : name;
      if (OUTPUT_EVENTS.has(type)) this.clearWaitStatus(turn);
      if (type === "response.created") progress.id = event.response?.id ?? null;
      else if (type === "llmgw.status") this.showWaitStatus(turn, event);
      else if (type === "llmgw.host") this.showHost(turn, event);
      else if (type === "posts.searched") this.showSearch(turn, event);
      else if (type === "posts.sources") this.collectSources(turn, event);
      else if (type.endsWith(".delta")) this.onDelta(type, event, turn, progress);
      else if (type.endsWith(".done")) this.onWhole(type, event, turn, progress);
      else if (type === "response.completed") this.onEnd(event, turn, progress, false);
      else if (type === "response.incomplete") this.onEnd(event, turn, progress, true);
      else if (type === "error") this.onStreamError(event, turn, progress);
    }

    /** Where a text event's text goes (answer or reasoning block), or null for other events. */
    textTarget(type, turn) {
      const kind = type.slice("response.".length, type.lastIndexOf("."));
      if (kind === "output_text") return { kind, element: turn.answer };
      if (kind !== "reasoning_text" && kind !== "reasoning_summary_text") return null;
      turn.reasoning.hidden = false;
      return { kind, element: turn.reasoningText };
    }

    onDelta(type, event, turn, progress) {
      const target = this.textTarget(type, turn);
      if (!target || typeof event.delta !== "string") return;
      progress.streamed.add(textKey(target.kind, event));
      this.appendText(target.element, event.delta, turn);
    }

    /** A text sent whole (LM Studio may send reasoning as one `.done` and no deltas: issue 18). */
    onWhole(type, event, turn, progress) {
      const target = this.textTarget(type, turn);
      if (!target || typeof event.text !== "string" || !event.text) return;
      if (progress.streamed.has(textKey(target.kind, event))) return; // already shown piecewise
      const gap = target.element.textContent ? "\n\n" : ""; // a second reasoning item, say
      this.appendText(target.element, gap + event.text, turn);
    }

    onEnd(event, turn, progress, incomplete) {
      progress.done = true;
      // Only a finished answer is a safe anchor: a stopped one may never have been stored. A cut
      // one was stored, and is what Continue goes on from.
      this.previousResponseId = event.response?.id ?? progress.id ?? this.previousResponseId;
      this.resetButton.hidden = false;
      this.showSources(turn);
      if (incomplete) this.markCutShort(turn, event.response?.incomplete_details?.reason);
      this.emit("llmgw-completed", {
        responseId: this.previousResponseId,
        usage: event.response?.usage ?? null,
        incomplete,
        sources: Array.from(turn.sources.values(), ({ title, url }) => ({ title, url })),
      });
    }

    /** The gateway searches the owner's posts for this answer: a quiet line above it says so. */
    showSearch(turn, event) {
      this.clearWaitStatus(turn);
      const query = typeof event.query === "string" ? event.query.replace(/\s+/g, " ").trim() : "";
      const shown = query.length > MAX_QUERY_SHOWN ? `${query.slice(0, MAX_QUERY_SHOWN - 1)}…` : query;
      const words = shown ? `Searching the posts for “${shown}”` : "Searching the posts…";
      turn.answer.before(h("p", { class: "searching" }, words));
      this.announce(words);
    }

    /** Posts a search found, kept for the answer's end; each URL once, in the order they came. */
    collectSources(turn, event) {
      if (!Array.isArray(event.sources)) return;
      for (const source of event.sources) {
        if (turn.sources.size >= MAX_SOURCES) break;
        const given = typeof source?.url === "string" ? source.url.trim() : "";
        if (!given) continue;
        const url = linkable(given);
        const key = url ?? given;
        if (turn.sources.has(key)) continue;
        const title = typeof source.title === "string" ? source.title.trim() : "";
        turn.sources.set(key, { title: title || given, url });
      }
    }

    /** Under the answer, once it ends: "Sources: " and a link per post (text for no http(s) URL). */
    showSources(turn) {
      if (turn.sourcesShown || turn.sources.size === 0) return;
      turn.sourcesShown = true;
      const items = [];
      for (const { title, url } of turn.sources.values()) {
        if (items.length > 0) items.push(", ");
        const attributes = { href: url, target: "_blank", rel: "noopener noreferrer" };
        items.push(url ? h("a", attributes, title) : h("span", { class: "source" }, title));
      }
      turn.answer.after(h("p", { class: "sources" }, "Sources: ", ...items));
    }

    /** Cut at its token cap: keep what came, say so, and offer to go on in the same conversation. */
    markCutShort(turn, reason) {
      const wordless = !turn.answer.textContent;
      if (wordless) turn.element.classList.add("wordless");
      const cause = reason && reason !== "max_output_tokens" ? "Cut short." : CUT_SHORT;
      this.note(turn, wordless ? NO_ROOM : cause);
      this.offer(turn, "Continue", () => this.ask("Continue."));
    }

    onStreamError(event, turn, progress) {
      progress.failed = true;
      const code = String(event.error?.code ?? "error");
      this.failed(turn, code, event.error?.message || "The answer failed.", 200);
    }

    /** An answer that failed with a gateway code: the visitor's words for it, and for a
     * conversation that cannot go on, a one-click fresh start with the same question. */
    failed(turn, code, message, status) {
      const words = Object.hasOwn(ERROR_WORDS, code) ? ERROR_WORDS[code] : message;
      this.failTurn(turn, words, code, status);
      if (RESTARTABLE.has(code)) {
        this.offer(turn, "Start a new conversation", () => this.restart(turn.text));
      }
    }

    appendText(element, text, turn) {
      if (!text) return;
      const stick = this.isScrolledDown();
      turn.element.classList.remove("pending");
      element.append(document.createTextNode(text));
      if (stick) this.log.scrollTop = this.log.scrollHeight;
    }

    refused(response, body, turn, text) {
      const message = typeof body?.error === "string" ? body.error : `HTTP ${response.status}`;
      const code = typeof body?.code === "string" ? body.code : `http_${response.status}`;
      if (response.status === 429) {
        this.giveBack(turn, text);
        const whose = Object.hasOwn(LIMIT_MESSAGES, body?.limit) ? body.limit : "visitor";
        this.emit("llmgw-error", { status: 429, code: `rate_limited_${whose}`, message });
        return this.rateLimited(whose, retryAfterSeconds(response, body));
      }
      if (response.status === 503) {
        this.giveBack(turn, text);
        this.emit("llmgw-error", { status: 503, code: body?.code ?? "unavailable", message });
        return this.waitForService(STATE_MESSAGES.unavailable, retryAfterSeconds(response, body));
      }
      return this.failed(turn, code, message, response.status);
    }

    rateLimited(whose, seconds) {
      this.locked.input = true;
      this.updateLocks();
      this.startCountdown(LIMIT_MESSAGES[whose], seconds, () => {
        this.locked.input = false;
        this.hideNotice();
        this.updateLocks();
        this.announce("You can send a message again.");
        this.input.focus();
      });
    }

    /** Busy, down or 503: the text stays editable, sending waits, status is asked again later. */
    waitForService(message, seconds) {
      this.locked.send = true;
      this.updateLocks();
      this.startCountdown(message, seconds, async () => {
        const status = await this.fetchStatus();
        if (status.state !== "busy" && status.state !== "down") this.serviceBack();
        else this.waitForService(STATE_MESSAGES[status.state], status.retryAfter);
      });
    }

    serviceBack() {
      this.clearCountdown();
      this.locked.send = false;
      this.hideNotice();
      this.updateLocks();
      this.announce("The chat is available again.");
    }

    startCountdown(message, seconds, onEnd) {
      this.clearCountdown();
      const endsAt = Date.now() + seconds * 1000;
      // Read once by screen readers; the ticking number beside it is hidden from them.
      this.statusText.replaceChildren(
        message,
        h("span", { class: "visually-hidden" }, ` Try again in ${spokenSeconds(seconds)}.`),
      );
      this.notice.hidden = false;
      const tick = () => {
        const left = Math.max(0, Math.ceil((endsAt - Date.now()) / 1000));
        this.countdown.textContent = `Try again in ${formatSeconds(left)}`;
        if (left > 0) return;
        this.clearCountdown();
        onEnd();
      };
      tick();
      this.countdownTimer = setInterval(tick, 250);
    }

    clearCountdown() {
      if (this.countdownTimer !== null) clearInterval(this.countdownTimer);
      this.countdownTimer = null;
    }

    hideNotice() {
      this.notice.hidden = true;
      this.statusText.textContent = "";
      this.countdown.textContent = "";
    }

    announce(message) {
      this.liveStatus.textContent = message;
    }

    stop() {
      this.controller?.abort();
    }

    reset() {
      this.forget();
      this.announce("Started a new chat.");
      this.input.focus();
    }

    /** The conversation cannot go on: forget it, clear the log, ask the last question afresh. */
    restart(text) {
      this.forget();
      this.announce("Started a new conversation.");
      this.input.focus(); // the clicked button goes with the old log
      this.ask(text);
    }

    forget() {
      this.stop();
      this.previousResponseId = null;
      this.offers = [];
      this.log.replaceChildren();
      this.resetButton.hidden = true;
    }

    /** A button under an answer (Continue, Start a new conversation), good until the next turn. */
    offer(turn, label, action) {
      const button = h("button", { type: "button", class: "offer" }, label);
      button.addEventListener("click", action);
      turn.element.append(button);
      this.offers.push(button);
    }

    withdrawOffers() {
      if (this.offers.includes(this.root.activeElement)) this.input.focus();
      for (const button of this.offers) button.remove();
      this.offers = [];
    }

    /** The gateway's word on why nothing came yet (waking the model), until the first output. */
    showWaitStatus(turn, event) {
      const said = typeof event.message === "string" ? event.message : "";
      const message = said || (event.state === "waking" ? WAKING : "Please wait…");
      turn.status.textContent = message;
      this.announce(message);
    }

    /** The gateway's word that the home model is out and a backup model answers this one. */
    showHost(turn, event) {
      if (event.fallback !== true) return;
      const said = typeof event.message === "string" ? event.message : "";
      turn.element.append(h("span", { class: "note backup" }, said || BACKUP));
    }

    clearWaitStatus(turn) {
      if (!turn.status.textContent) return;
      if (this.liveStatus.textContent === turn.status.textContent) this.announce("");
      turn.status.textContent = "";
    }

    addTurn(text) {
      this.log.append(h("p", { class: "turn question" }, text));
      const reasoningText = h("div", { class: "reasoning-text" });
      const summary = h("summary", {}, "Reasoning");
      const reasoning = h("details", { class: "reasoning", hidden: "" }, summary, reasoningText);
      const answer = h("div", { class: "answer" });
      // Read out through the widget's status region instead: the log is aria-busy meanwhile,
      // and screen readers hold back what changes inside a busy region.
      const status = h("p", { class: "wait-status", "aria-hidden": "true" });
      const element = h("div", { class: "turn reply pending" }, reasoning, answer, status);
      this.log.append(element);
      this.log.setAttribute("aria-busy", "true");
      this.log.scrollTop = this.log.scrollHeight;
      const question = element.previousElementSibling;
      // sources: the posts found for this answer, by URL: { title, url (null: not http(s)) }.
      const sources = new Map();
      return {
        text, element, question, reasoning, reasoningText, answer, status, sources,
        sourcesShown: false,
      };
    }

    /** The question was not taken: remove it from the log and put the text back in the box. */
    giveBack(turn, text) {
      turn.question.remove();
      turn.element.remove();
      if (!this.input.value) this.input.value = text;
    }

    failTurn(turn, message, code = "network_error", status = 0) {
      this.note(turn, message, true);
      this.emit("llmgw-error", { status, code, message });
    }

    note(turn, message, isError = false) {
      turn.element.classList.remove("pending");
      const note = h("span", { class: isError ? "note error" : "note" }, message);
      turn.element.append(note);
    }

    finishTurn(turn) {
      turn.element.classList.remove("pending");
      this.showSources(turn); // an answer that failed or was stopped still read these posts
      this.clearWaitStatus(turn);
      this.log.setAttribute("aria-busy", "false");
      this.controller = null;
      this.setStreaming(false);
    }

    setStreaming(streaming) {
      const focused = this.root.activeElement;
      this.stopButton.hidden = !streaming;
      this.sendButton.hidden = streaming;
      // Hiding the focused button would drop focus to the page: hand it to the twin control.
      if (!streaming && focused === this.stopButton) this.input.focus();
      else if (streaming && focused === this.sendButton) this.stopButton.focus();
      this.updateLocks();
    }

    updateLocks() {
      this.input.disabled = this.locked.input;
      this.sendButton.disabled = this.locked.input || this.locked.send;
    }

    isScrolledDown() {
      return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    }

    emit(name, detail) {
      this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
    }
  }

  customElements.define(TAG, LlmgwChat);
})();
