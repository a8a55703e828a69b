// The BEDS console (docs/gateway.md "Console"): a form for any operation of the gateway's OpenAPI
// document, the reply, its event id, and the lineage tree of what the request caused. Plain
// JavaScript with no build step and nothing fetched from elsewhere. Everything a reply holds is put
// on the page as text (textContent), never as markup: replies carry client-supplied strings.
"use strict";

const $ = (id) => document.getElementById(id);
const operations = new Map();  // tag (a template, or tickets/lineage/health) -> [operation]
let current = null;            // the operation the form shows
let lastEventId = "";
let lastTicket = "";
let parentId = "";  // "Use as parent": X-Beds-Parent of every request until cleared

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// The credentials the user typed: a token goes as a bearer token (an API key or a JWT alike).
function authHeaders() {
  const token = $("token").value.trim();
  return token ? { "Authorization": "Bearer " + token } : {};
}

function typesOf(schema) {
  if (!schema || schema.type === undefined) return [];
  return Array.isArray(schema.type) ? schema.type : [schema.type];
}

// One input for one parameter or body field. Its data attributes say where the value goes and how
// to read it back (readValue).
function inputFor(name, schema, required, where, description) {
  const types = typesOf(schema);
  const label = element("label", "field");
  label.append(element("span", "", name + (required ? " *" : "") + " "));
  let input;
  let kind = "string";
  if (types.includes("boolean")) {
    kind = "boolean";
    input = element("select");
    for (const v of ["", "true", "false"]) input.append(new Option(v === "" ? "(not sent)" : v, v));
  } else if (types.length === 0) {
    kind = "json";
    input = element("textarea");
    input.placeholder = "any JSON value, e.g. {\"plan\": \"pro\"}";
  } else {
    input = element("input");
    if (types.includes("string")) {
      input.type = "text";  // a decimal travels as a string of digits
    } else if (types.includes("integer") || types.includes("number")) {
      kind = types.includes("integer") ? "integer" : "number";
      input.type = "number";
      input.step = kind === "integer" ? "1" : "any";
    }
    if (schema.maxLength) input.maxLength = schema.maxLength;
    input.placeholder = schema.format || schema.description || "";
  }
  input.name = name;
  input.dataset.where = where;
  input.dataset.kind = kind;
  input.dataset.required = required ? "1" : "";
  label.append(input);
  if (description) label.append(element("span", "hint", " " + description));
  return label;
}

// The typed value of an input, or undefined when it is empty (not sent).
function readValue(input) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  switch (input.dataset.kind) {
    case "boolean": return raw === "true";
    case "integer": return Number.parseInt(raw, 10);
    case "number": return Number(raw);
    case "json":
      try {
        return JSON.parse(raw);
      } catch (e) {
        throw new Error(input.name + " is not valid JSON: " + e.message);
      }
    default: return raw;
  }
}

function showOperation() {
  current = (operations.get($("template").value) || [])[Number($("operation").value)] || null;
  for (const id of ["path-fields", "body-fields", "query-fields", "header-fields"]) $(id).replaceChildren();
  $("form-error").hidden = true;
  if (!current) return;
  const op = current.op;
  $("summary").textContent = current.method + " " + current.path + " — " + (op.summary || "");
  let queries = 0;
  for (const p of op.parameters || []) {
    const box = { path: "path-fields", query: "query-fields", header: "header-fields" }[p.in];
    if (!box) continue;
    if (p.in === "query") queries++;
    $(box).append(inputFor(p.name, p.schema, p.required, p.in, p.description));
  }
  const body = op.requestBody && op.requestBody.content["application/json"].schema;
  if (body) {
    const required = new Set(body.required || []);
    for (const [name, schema] of Object.entries(body.properties || {})) {
      $("body-fields").append(inputFor(name, schema, required.has(name), "body", schema.description));
    }
  }
  $("path-box").hidden = $("path-fields").children.length === 0;
  $("body-box").hidden = !body;
  $("query-box").hidden = queries === 0;
  $("query-box").open = queries > 0 && queries <= 8;
  const parent = document.querySelector('[data-where="header"][name="X-Beds-Parent"]');
  if (parent) {
    parent.value = parentId;
    parent.addEventListener("change", () => { parentId = parent.value.trim(); });
  }
}

function showTemplate() {
  const select = $("operation");
  select.replaceChildren();
  (operations.get($("template").value) || []).forEach((o, i) => {
    select.append(new Option(o.op.operationId + "  (" + o.method + " " + o.path + ")", String(i)));
  });
  showOperation();
}

// Picks an operation by its operationId (the ticket and lineage shortcuts use this).
function choose(operationId) {
  for (const [tag, list] of operations) {
    const i = list.findIndex((o) => o.op.operationId === operationId);
    if (i < 0) continue;
    $("template").value = tag;
    showTemplate();
    $("operation").value = String(i);
    showOperation();
    return true;
  }
  return false;
}

function setField(where, name, value) {
  const input = document.querySelector(`[data-where="${where}"][name="${CSS.escape(name)}"]`);
  if (input) input.value = value;
}

function shellQuote(s) {
  return "'" + String(s).replace(/'/g, "'\\''") + "'";
}

// The request the form describes: method, URL, headers and body; throws on a mistake.
function buildRequest() {
  let path = current.path;
  const query = new URLSearchParams();
  const headers = {};
  const body = {};
  for (const input of document.querySelectorAll("#form [data-where]")) {
    const value = readValue(input);
    const where = input.dataset.where;
    if (value === undefined) {
      if (input.dataset.required && where === "path") throw new Error(input.name + " is required");
      continue;
    }
    if (where === "path") path = path.replace("{" + input.name + "}", encodeURIComponent(value));
    else if (where === "query") query.append(input.name, String(value));
    else if (where === "header") headers[input.name] = String(value);
    else body[input.name] = value;
  }
  const qs = query.toString();
  const request = { method: current.method, url: path + (qs ? "?" + qs : ""), headers };
  if (current.op.requestBody) {
    request.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  return request;
}

function curlOf(request) {
  const parts = ["curl", "-i", "-X", request.method];
  for (const [name, value] of Object.entries(request.headers)) parts.push("-H", shellQuote(name + ": " + value));
  if ($("token").value.trim()) parts.push("-H", shellQuote("Authorization: Bearer $TOKEN"));
  if (request.body !== undefined) parts.push("-d", shellQuote(request.body));
  parts.push(shellQuote(location.origin + request.url));
  return parts.join(" ");
}

async function send(event) {
  event.preventDefault();
  if (!current) return;
  let request;
  try {
    request = buildRequest();
  } catch (e) {
    $("form-error").textContent = e.message;
    $("form-error").hidden = false;
    return;
  }
  $("form-error").hidden = true;
  $("send").disabled = true;
  $("result").hidden = false;
  $("curl").textContent = curlOf(request);
  const started = performance.now();
  try {
    const response = await fetch(request.url, {
      method: request.method,
      headers: Object.assign({}, request.headers, authHeaders()),
      body: request.body,
    });
    const text = await response.text();
    showReply(response, text, performance.now() - started);
  } catch (e) {
    $("status").textContent = "no answer";
    $("status").className = "badge bad";
    $("reply").textContent = String(e);
  } finally {
    $("send").disabled = false;
  }
}

function showReply(response, text, ms) {
  $("status").textContent = response.status + " " + response.statusText;
  $("status").className = "badge " + (response.ok ? "ok" : "bad");
  $("elapsed").textContent = ms.toFixed(1) + " ms";
  let parsed = null;
  try {
    parsed = JSON.parse(text);
    $("reply").textContent = JSON.stringify(parsed, null, 2);
  } catch (e) {
    $("reply").textContent = text;
  }
  lastEventId = response.headers.get("X-Beds-Event-Id") || (parsed && parsed.event_id) || "";
  $("event-id").textContent = lastEventId || "(none)";
  $("use-parent").hidden = !lastEventId;
  lastTicket = (response.status === 202 && parsed && parsed.ticket) || "";
  $("poll-ticket").hidden = !lastTicket;
  $("lineage").replaceChildren();
  if (lastEventId && current.op.operationId !== "lineage") loadLineage(lastEventId);
  else $("lineage-state").textContent = "";
}

// The request's tree from the log store. Events reach the store a moment after the work, so a
// NOT_FOUND is asked again for a few seconds before it is believed.
async function loadLineage(eventId) {
  $("lineage-state").textContent = "waiting for the log store…";
  for (let attempt = 0; attempt < 25; attempt++) {
    if (eventId !== lastEventId) return;  // another request was sent meanwhile
    let response;
    try {
      response = await fetch("/v1/lineage/" + encodeURIComponent(eventId), { headers: authHeaders() });
    } catch (e) {
      $("lineage-state").textContent = "lineage not fetched: " + e;
      return;
    }
    if (response.status === 404) {
      await new Promise((resolve) => setTimeout(resolve, 400));
      continue;
    }
    const reply = await response.json().catch(() => null);
    if (eventId !== lastEventId) return;
    if (!response.ok || !reply || !reply.data) {
      const why = reply && reply.error ? reply.error.code + ": " + reply.error.message : response.status;
      $("lineage-state").textContent = "no lineage: " + why;
      return;
    }
    const data = reply.data;
    $("lineage-state").textContent = data.events + " event(s)" + (data.truncated ? ", truncated" : "");
    $("lineage").replaceChildren(treeOf(data.root));
    return;
  }
  $("lineage-state").textContent = "not in the log store yet: is an admin node (or a logs pool) storing events?";
}

function treeOf(node) {
  const li = element("li");
  li.dataset.eventId = node.event_id || "";
  li.dataset.depth = String(node.depth ?? "");
  const line = element("div", "event " + (node.level || ""));
  const what = [node.template, node.op].filter(Boolean).join("/") || node.kind;
  line.append(element("span", "what", what));
  const facts = [node.kind, node.level, node.node];
  if (node.duration_us !== undefined && node.duration_us !== null) facts.push(node.duration_us + " µs");
  if (node.ts) facts.push(node.ts);
  line.append(element("span", "muted", "  " + facts.filter(Boolean).join(" · ")));
  if (node.message) line.append(element("span", "message", node.message));
  line.title = node.event_id || "";
  li.append(line);
  if (node.children && node.children.length) {
    const ul = element("ul");
    for (const child of node.children) ul.append(treeOf(child));
    li.append(ul);
  }
  return li;
}

async function checkReady() {
  try {
    const response = await fetch("/readyz");
    $("ready").textContent = response.ok ? "ready" : "not ready (" + response.status + ")";
    $("ready").className = "badge " + (response.ok ? "ok" : "bad");
  } catch (e) {
    $("ready").textContent = "gateway unreachable";
    $("ready").className = "badge bad";
  }
}

async function loadDocument() {
  const response = await fetch("/v1/openapi.json");
  if (!response.ok) throw new Error("GET /v1/openapi.json answered " + response.status);
  const doc = await response.json();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!operations.has(tag)) operations.set(tag, []);
      operations.get(tag).push({ path, method: method.toUpperCase(), op });
    }
  }
  // The data templates first, then the gateway's own routes.
  const own = new Set(["tickets", "lineage", "health", "other"]);
  const tags = [...operations.keys()].sort((a, b) => (own.has(a) - own.has(b)) || a.localeCompare(b));
  for (const tag of tags) $("template").append(new Option(tag, tag));
  showTemplate();
}

function start() {
  $("token").value = sessionStorage.getItem("beds.token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("beds.token", $("token").value));
  $("template").addEventListener("change", showTemplate);
  $("operation").addEventListener("change", showOperation);
  $("form").addEventListener("submit", send);
  $("use-parent").addEventListener("click", () => {
    parentId = lastEventId;
    setField("header", "X-Beds-Parent", parentId);
    $("header-box").open = true;
  });
  $("poll-ticket").addEventListener("click", () => {
    const ticket = lastTicket;
    if (choose("ticket_poll")) setField("path", "ticket", ticket);
  });
  checkReady();
  loadDocument().catch((e) => {
    $("load-error").textContent = "The OpenAPI document did not load: " + e.message;
    $("load-error").hidden = false;
  });
}

start();
