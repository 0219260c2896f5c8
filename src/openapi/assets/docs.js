// The /docs reference page: renders /v1/openapi.json and calls the API from "Try it".
// Self-contained (no libraries, no CDN). Everything shown is inserted as text, never as
// HTML, so neither the document nor an API response can inject markup.
//
// Deep links: #op=<operationId>. For automated checks, the hash may also carry
// token=…, version=…, body=…, any path parameter (id=…) and run=1, which fills the
// "Try it" form and presses its Send button.
"use strict";

(function () {
  const METHODS = ["get", "post", "patch", "put", "delete"];
  const state = { doc: null, ops: [], byId: new Map(), version: null, hash: parseHash() };

  function parseHash() {
    const h = location.hash.replace(/^#/, "");
    return new URLSearchParams(h);
  }

  // ------------------------------------------------------------ DOM helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // A tiny Markdown subset: paragraphs, "- " lists, `code` and **bold**.
  function inline(text) {
    const out = [];
    const re = /(`[^`]+`|\*\*[^*]+\*\*)/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) out.push(text.slice(last, m.index));
      const t = m[0];
      out.push(t.startsWith("`") ? el("code", { text: t.slice(1, -1) }) : el("strong", { text: t.slice(2, -2) }));
      last = m.index + t.length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  function markdown(text) {
    const box = el("div", { class: "desc" });
    for (const block of String(text || "").split(/\n\s*\n/)) {
      const lines = block.split("\n");
      if (lines.every((l) => l.trim().startsWith("- "))) {
        box.append(el("ul", {}, lines.map((l) => el("li", {}, inline(l.trim().slice(2))))));
      } else {
        box.append(el("p", {}, inline(block.replace(/\n/g, " "))));
      }
    }
    return box;
  }

  function resolve(node) {
    let guard = 0;
    while (node && node.$ref && guard++ < 20) {
      const path = node.$ref.replace(/^#\//, "").split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
      node = path.reduce((acc, k) => (acc ? acc[k] : undefined), state.doc);
    }
    return node || {};
  }

  // ------------------------------------------------------------ schemas

  function typeOf(s) {
    s = resolve(s);
    if (s.anyOf) {
      const parts = s.anyOf.map(typeOf);
      return [...new Set(parts)].join(" | ");
    }
    if (s.oneOf) return "one of " + s.oneOf.length;
    if (s.allOf) return typeOf(s.allOf[0]);
    let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
    if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) {
      t = t.replace("array", "array of " + typeOf(s.items || {}));
    }
    if (s.format) t += " (" + s.format + ")";
    return t;
  }

  function facts(s) {
    s = resolve(s);
    if (s.allOf && !s.properties) s = Object.assign({}, resolve(s.allOf[0]), s);
    const out = [];
    if (s.const !== undefined) out.push("always " + JSON.stringify(s.const));
    if (s.enum) out.push("one of " + s.enum.map((v) => JSON.stringify(v)).join(", "));
    else {
      const e = enumOf(s);
      if (e) out.push("one of " + e.map((v) => JSON.stringify(v)).join(", ") + (openEnum(s) ? ", or a value added later" : ""));
    }
    if (s.pattern) out.push("pattern " + s.pattern);
    if (s.minimum !== undefined && Math.abs(s.minimum) < 1e15) out.push("≥ " + s.minimum);
    if (s.maximum !== undefined && Math.abs(s.maximum) < 1e15) out.push("≤ " + s.maximum);
    if (s.minLength !== undefined) out.push("min length " + s.minLength);
    if (s.maxLength !== undefined) out.push("max length " + s.maxLength);
    if (s.minItems !== undefined) out.push("min items " + s.minItems);
    if (s.maxItems !== undefined) out.push("max items " + s.maxItems);
    if (s.default !== undefined) out.push("default " + JSON.stringify(s.default));
    return out;
  }

  // The values of an enum behind `anyOf` wrappers (nullable, open for later values).
  function enumOf(s) {
    s = resolve(s);
    if (s.enum) return s.enum;
    for (const b of s.anyOf || []) {
      const e = enumOf(b);
      if (e) return e;
    }
    return null;
  }

  function openEnum(s) {
    s = resolve(s);
    return (s.anyOf || []).some((b) => {
      const r = resolve(b);
      return r.anyOf ? openEnum(r) : r.type === "string" && !r.enum;
    });
  }

  function nullable(s) {
    s = resolve(s);
    if (Array.isArray(s.type)) return s.type.includes("null");
    return Array.isArray(s.anyOf) && s.anyOf.some((x) => resolve(x).type === "null");
  }

  // The object-ish part of a schema (through nullable wrappers and arrays).
  function inner(s) {
    s = resolve(s);
    if (s.anyOf) {
      const non = s.anyOf.filter((x) => resolve(x).type !== "null");
      if (non.length === 1) return inner(non[0]);
    }
    if (s.allOf && s.allOf.length === 1 && !s.properties) return inner(s.allOf[0]);
    const t = Array.isArray(s.type) ? s.type : [s.type];
    if (t.includes("array") && s.items) return inner(s.items);
    return s;
  }

  function schemaView(schema, depth) {
    const s = inner(schema);
    if (depth > 5) return el("p", { class: "muted", text: "…" });
    if (s.oneOf) {
      return el("div", {},
        el("p", { class: "muted" }, resolve(s).description ? inline(resolve(s).description) : "One of:"),
        s.oneOf.map((v) => {
          const r = resolve(v);
          return el("div", { class: "nested" },
            el("p", {}, el("strong", { text: r.title || (r.description || "").replace(/`/g, "") || typeOf(v) }),
              v.$ref ? el("a", { class: "muted", href: "#schema=" + encodeURIComponent(v.$ref.split("/").pop()), text: " " + v.$ref.split("/").pop() }) : null),
            r.properties ? schemaView(v, depth + 1) : null);
        }));
    }
    if (!s.properties) return el("p", { class: "muted", text: typeOf(s) });
    const required = new Set(s.required || []);
    const rows = [];
    for (const [name, prop] of Object.entries(s.properties)) {
      const p = resolve(prop);
      const tags = [];
      if (required.has(name)) tags.push(el("span", { class: "tag req", text: "required" }));
      if (p.readOnly) tags.push(el("span", { class: "tag", text: "read-only" }));
      if (nullable(prop)) tags.push(el("span", { class: "tag", text: "nullable" }));
      const desc = el("td", {}, p.description ? inline(p.description) : null);
      const f = facts(prop);
      if (f.length) desc.append(el("div", { class: "muted" }, f.join(" · ")));
      const sub = inner(prop);
      if (depth < 5 && (sub.properties || sub.oneOf) && sub !== s) {
        desc.append(el("div", { class: "nested" }, schemaView(prop, depth + 1)));
      }
      rows.push(el("tr", {},
        el("td", { class: "name" }, name, tags),
        el("td", { class: "type", text: typeOf(prop) }),
        desc));
    }
    return el("table", { class: "schema" }, el("tbody", {}, rows));
  }

  // ------------------------------------------------------------ navigation

  function collect() {
    state.ops = [];
    state.byId.clear();
    for (const [path, item] of Object.entries(state.doc.paths || {})) {
      for (const m of METHODS) {
        const op = item[m];
        if (!op) continue;
        const params = [...(item.parameters || []), ...(op.parameters || [])].map(resolve);
        const entry = { id: op.operationId, method: m, path, op, params, tag: (op.tags || ["other"])[0] };
        const words = [entry.id, path, op.summary || "", entry.tag];
        const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
        if (body) fieldNames(body.schema, 0, words);
        for (const [code, r] of Object.entries(op.responses || {})) {
          const c = code.startsWith("2") && resolve(r).content;
          if (c && c["application/json"]) fieldNames(c["application/json"].schema, 0, words);
        }
        entry.haystack = words.join(" ").toLowerCase();
        state.ops.push(entry);
        state.byId.set(entry.id, entry);
      }
    }
  }

  // Every property name under a schema (a few levels deep), for the search box.
  function fieldNames(schema, depth, out) {
    const s = resolve(schema);
    if (depth > 4 || !s) return;
    for (const [k, v] of Object.entries(s.properties || {})) {
      out.push(k);
      fieldNames(v, depth + 1, out);
    }
    for (const b of [...(s.anyOf || []), ...(s.oneOf || []), ...(s.allOf || [])]) fieldNames(b, depth + 1, out);
    if (s.items) fieldNames(s.items, depth + 1, out);
  }

  function schemaMatches(name, q) {
    if (!q) return true;
    if (name.toLowerCase().includes(q)) return true;
    const words = [];
    fieldNames({ $ref: "#/components/schemas/" + name }, 3, words);
    return words.some((w) => w.toLowerCase().includes(q));
  }

  function renderNav() {
    const nav = document.getElementById("nav");
    nav.replaceChildren();
    const q = (document.getElementById("search").value || "").trim().toLowerCase();
    const tags = new Map();
    let shown = 0;
    for (const o of state.ops) {
      if (q && !o.haystack.includes(q)) continue;
      shown++;
      if (!tags.has(o.tag)) tags.set(o.tag, []);
      tags.get(o.tag).push(o);
    }
    for (const [tag, ops] of tags) {
      nav.append(el("h2", { text: tag }));
      for (const o of ops) {
        nav.append(el("a", { href: "#op=" + encodeURIComponent(o.id), "data-op": o.id },
          el("span", { class: "method m-" + o.method, text: o.method.toUpperCase() }),
          el("span", { class: "path", text: o.path })));
      }
    }
    const schemas = Object.keys((state.doc.components || {}).schemas || {}).filter((n) => schemaMatches(n, q));
    if (q && !shown && !schemas.length) nav.append(el("p", { class: "muted", id: "no-match", text: "Nothing matches \u201c" + q + "\u201d." }));
    if (schemas.length) {
      const list = el("details", { id: "schemas" }, el("summary", { text: "Schemas (" + schemas.length + ")" }));
      if (q) list.setAttribute("open", "");
      for (const n of schemas) list.append(el("a", { href: "#schema=" + encodeURIComponent(n), "data-schema": n, text: n }));
      nav.append(list);
    }
  }

  function renderSchema(name) {
    const section = document.getElementById("operation");
    const s = resolve({ $ref: "#/components/schemas/" + name });
    section.replaceChildren(
      el("h2", { text: name }),
      s.description ? el("p", {}, inline(s.description)) : null,
      el("p", { class: "muted", text: typeOf(s) }),
      schemaView({ $ref: "#/components/schemas/" + name }, 0),
      s.examples ? el("pre", { class: "example", text: JSON.stringify(s.examples[0], null, 2) }) : null);
    document.getElementById("intro").hidden = true;
    section.hidden = false;
  }

  function renderIntro() {
    const info = state.doc.info || {};
    const intro = document.getElementById("intro");
    intro.replaceChildren(
      el("h2", { text: (info.title || "API") + " — " + (info["x-api-version"] || info.version || "") }),
      info.summary ? el("p", { class: "muted", text: info.summary }) : null,
      markdown(info.description));
    document.getElementById("title").textContent = (info.title || "API") + " reference";
  }

  // ------------------------------------------------------------ one operation

  function exampleOf(op) {
    const c = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (!c) return null;
    if (c.example !== undefined) return c.example;
    const s = resolve(c.schema);
    return s.examples ? s.examples[0] : {};
  }

  function renderOperation(entry) {
    const { op, method, path, params } = entry;
    const box = document.getElementById("operation");
    document.getElementById("intro").hidden = true;
    box.hidden = false;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.op === entry.id);
    const scopes = (op.security || []).flatMap((s) => Object.entries(s).map(([k, v]) => k + ": " + v.join(", ")));
    const parts = [
      el("h2", { class: "op" }, el("span", { class: "method m-" + method, text: method.toUpperCase() }), el("code", { text: path })),
      el("p", {}, el("strong", { text: op.summary || entry.id }), " ", el("span", { class: "muted", text: "(" + entry.id + ")" })),
      markdown(op.description),
      el("p", {}, "Security: ", el("code", { text: scopes.join("; ") || "none" }),
        op["x-required-permission"] ? [" · CRM permission ", el("code", { text: op["x-required-permission"] })] : null),
    ];
    if (params.length) {
      parts.push(el("h3", { text: "Parameters" }));
      parts.push(el("table", { class: "schema" }, el("tbody", {}, params.map((p) =>
        el("tr", {},
          el("td", { class: "name" }, p.name, p.required ? el("span", { class: "tag req", text: "required" }) : null),
          el("td", { class: "type", text: p.in + " · " + typeOf(p.schema || {}) }),
          el("td", {}, p.description ? inline(p.description) : null,
            el("div", { class: "muted", text: facts(p.schema || {}).join(" · ") })))))));
    }
    if (op.requestBody) {
      const c = op.requestBody.content["application/json"];
      parts.push(el("h3", { text: "Request body" + (op.requestBody.required ? "" : " (optional)") }));
      parts.push(schemaView(c.schema, 0));
      const ex = exampleOf(op);
      if (ex !== null) parts.push(el("pre", { class: "example", text: JSON.stringify(ex, null, 2) }));
    }
    parts.push(el("h3", { text: "Responses" }));
    parts.push(el("ul", { class: "responses" }, Object.entries(op.responses || {}).map(([code, r]) => {
      const rr = resolve(r);
      return el("li", {}, el("span", { class: "status s" + code[0], text: code }), " ", inline(rr.description || ""));
    })));
    const ok = Object.entries(op.responses || {}).find(([c]) => c.startsWith("2"));
    if (ok) {
      const content = resolve(ok[1]).content;
      if (content && content["application/json"]) {
        parts.push(el("h3", { text: ok[0] + " body" }));
        parts.push(schemaView(content["application/json"].schema, 0));
      }
    }
    // Reference on the left, the Try-it console beside it (it stays in view while reading).
    box.replaceChildren(el("div", { class: "opgrid" }, el("div", { class: "opdoc" }, parts), tryPanel(entry)));
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------ Try it

  function tryPanel(entry) {
    const { op, method, path, params } = entry;
    const hash = state.hash;
    const form = el("form", { class: "try", id: "try", onsubmit: (e) => { e.preventDefault(); send(entry, form); } });
    form.append(el("h3", { text: "Try it" }));
    form.append(el("label", { for: "try-token", text: "Access token (Bearer)" }),
      el("input", { id: "try-token", name: "token", autocomplete: "off", spellcheck: "false",
        placeholder: "eyJ… (prospect-edge token --tenant 1 --user 101)",
        value: hash.get("token") || sessionStorage.getItem("pe-token") || "" }));
    for (const p of params) {
      if (p.in === "header" && p.name === "Version") {
        const versions = (p.schema && p.schema.enum) || [state.version];
        const sel = el("select", { id: "try-version", name: "version" },
          versions.map((v) => el("option", { value: v, text: v })));
        sel.value = hash.get("version") || state.version;
        form.append(el("label", { for: "try-version", text: "Version" }), sel);
      } else if (p.in === "header") {
        form.append(el("label", { for: "try-h-" + p.name, text: p.name + (p.required ? "" : " (optional)") }),
          el("input", { id: "try-h-" + p.name, "data-header": p.name, value: hash.get(p.name) || "" }));
      } else if (p.in === "path") {
        form.append(el("label", { for: "try-p-" + p.name, text: "{" + p.name + "}" }),
          el("input", { id: "try-p-" + p.name, "data-path": p.name, required: true, spellcheck: "false",
            placeholder: (p.schema && p.schema.examples && p.schema.examples[0]) || "",
            value: hash.get(p.name) || "" }));
      }
    }
    if (op.requestBody) {
      const ex = exampleOf(op);
      form.append(el("label", { for: "try-body", text: "Body (application/json)" }),
        el("textarea", { id: "try-body", name: "body", spellcheck: "false" }));
      form.querySelector("#try-body").value = hash.get("body") || (ex === null ? "" : JSON.stringify(ex, null, 2));
    }
    form.append(el("button", { type: "submit", id: "try-send", text: "Send " + method.toUpperCase() + " " + path }));
    form.append(el("div", { id: "result", "aria-live": "polite" }));
    return form;
  }

  async function send(entry, form) {
    const result = form.querySelector("#result");
    const button = form.querySelector("#try-send");
    const token = form.querySelector("#try-token").value.trim();
    if (token) sessionStorage.setItem("pe-token", token);
    let path = entry.path;
    for (const input of form.querySelectorAll("[data-path]")) {
      path = path.replace("{" + input.dataset.path + "}", encodeURIComponent(input.value.trim()));
    }
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const version = form.querySelector("#try-version");
    if (version) headers.Version = version.value;
    for (const input of form.querySelectorAll("[data-header]")) {
      if (input.value.trim()) headers[input.dataset.header] = input.value.trim();
    }
    const init = { method: entry.method.toUpperCase(), headers };
    const bodyInput = form.querySelector("#try-body");
    if (bodyInput && bodyInput.value.trim()) {
      headers["Content-Type"] = "application/json";
      init.body = bodyInput.value;
    }
    button.disabled = true;
    result.removeAttribute("data-status");
    result.replaceChildren(el("p", { class: "muted", text: init.method + " " + path + " …" }));
    const started = performance.now();
    try {
      const resp = await fetch(path, init);
      const text = await resp.text();
      const ms = Math.round(performance.now() - started);
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      const hdrs = [];
      resp.headers.forEach((v, k) => hdrs.push(k + ": " + v));
      hdrs.sort();
      result.setAttribute("data-status", String(resp.status));
      result.replaceChildren(
        el("h3", {}, "Response ", el("span", { class: "status s" + String(resp.status)[0], id: "result-status", text: String(resp.status) }),
          " ", el("span", { class: "muted", text: (resp.statusText || "") + " · " + ms + " ms · " + init.method + " " + path })),
        el("p", { class: "muted", text: "Headers" }),
        el("pre", { id: "result-headers", text: hdrs.join("\n") }),
        el("p", { class: "muted", text: "Body" }),
        el("pre", { id: "result-body", text: shown || "(empty)" }));
    } catch (e) {
      result.setAttribute("data-status", "error");
      result.replaceChildren(el("p", { class: "error", text: "The request failed: " + e }));
    } finally {
      button.disabled = false;
      document.body.setAttribute("data-try-done", "1");
    }
  }

  // ------------------------------------------------------------ loading

  function show() {
    state.hash = parseHash();
    const id = state.hash.get("op");
    const entry = id && state.byId.get(id);
    const schema = state.hash.get("schema");
    if (!entry && schema && state.doc.components && state.doc.components.schemas && state.doc.components.schemas[schema]) {
      renderSchema(schema);
      return;
    }
    if (!entry) {
      document.getElementById("intro").hidden = false;
      document.getElementById("operation").hidden = true;
      return;
    }
    renderOperation(entry);
    if (state.hash.get("run") === "1") {
      // Automated checks: press Send as a user would, once.
      const button = document.getElementById("try-send");
      history.replaceState(null, "", "#op=" + encodeURIComponent(id));
      if (button) button.click();
    }
  }

  async function load(version) {
    const url = "/v1/openapi.json" + (version ? "?version=" + encodeURIComponent(version) : "");
    document.getElementById("raw").setAttribute("href", url);
    try {
      const resp = await fetch(url, { headers: { Accept: "application/json" } });
      const body = await resp.json();
      if (!resp.ok) throw new Error((body && body.detail) || resp.status);
      state.doc = body;
      state.version = body.info["x-api-version"] || body.info.version;
    } catch (e) {
      document.getElementById("nav").replaceChildren(el("p", { class: "error", text: "Cannot load " + url + ": " + e.message }));
      return;
    }
    const sel = document.getElementById("release");
    const versions = state.doc.info["x-supported-versions"] || [state.version];
    sel.replaceChildren(...versions.map((v) =>
      el("option", { value: v, text: v + (v === state.doc.info["x-current-version"] ? " (current)" : "") })));
    sel.value = state.version;
    collect();
    renderNav();
    renderIntro();
    show();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("release").addEventListener("change", (e) => load(e.target.value));
    const search = document.getElementById("search");
    search.addEventListener("input", () => { if (state.doc) renderNav(); });
    if (parseHash().get("q")) search.value = parseHash().get("q");
    window.addEventListener("hashchange", show);
    load(parseHash().get("version") || "");
  });
})();
