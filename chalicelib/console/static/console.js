// The operator console: plain JavaScript over the replay API, no framework, no build step.
// The API's routes are found next to this script (<base>/console/console.js), not next to the
// page, so the page works under a deployed stage's path prefix, with or without a trailing
// slash, and on 127.0.0.1 alike. Values reach the page through textContent only, never as HTML.
"use strict";

const JOB_POLL_MS = 1000;
const LIVE_POLL_MS = 2000;
const API_BASE = new URL("../", document.currentScript.src);

function apiUrl(path) {
  return new URL(path, API_BASE).href;
}

function $(id) {
  return document.getElementById(id);
}

// encodeURIComponent writes "+" as %2B: a bare "+" in a query string reads as a space.
function query(params) {
  const parts = [];
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") {
      parts.push(encodeURIComponent(name) + "=" + encodeURIComponent(value));
    }
  }
  return parts.length ? "?" + parts.join("&") : "";
}

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), options);
  } catch (error) {
    throw new Error("the API is not reachable (" + error.message + ")");
  }
  let document_ = null;
  try {
    document_ = await response.json();
  } catch (error) {
    document_ = null;
  }
  if (!response.ok) {
    const message = document_ && (document_.Message || document_.message);
    throw new Error(response.status + " " + (message || response.statusText));
  }
  return document_;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function flags(row, event) {
  const td = cell(row, "");
  for (const name of ["late", "replay"]) {
    if (event[name]) {
      const span = document.createElement("span");
      span.className = "flag " + name;
      span.textContent = name;
      td.appendChild(span);
      td.appendChild(document.createTextNode(" "));
    }
  }
}

function stageOrState(event) {
  if (event.stage && event.state) return event.stage + " / " + event.state;
  return event.stage || event.state || "";
}

// received_at - occurred_at: how long the event took to reach the relay.
function lag(event) {
  const ms = Date.parse(event.received_at) - Date.parse(event.occurred_at);
  if (Number.isNaN(ms)) return "";
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
}

function message(id, text, isError) {
  const element = $(id);
  element.textContent = text;
  element.classList.toggle("error", Boolean(isError));
}

// ---- timeline ------------------------------------------------------------------------------

const timeline = { id: null, cursor: null, count: 0 };

async function loadTimeline(reset) {
  const body = $("timeline-table").querySelector("tbody");
  if (reset) {
    body.replaceChildren();
    timeline.cursor = null;
    timeline.count = 0;
  }
  const path =
    "interactions/" + encodeURIComponent(timeline.id) + "/events" +
    query({ limit: 100, cursor: timeline.cursor });
  try {
    const page = await api("GET", path);
    for (const event of page.events) {
      timeline.count += 1;
      const row = document.createElement("tr");
      cell(row, timeline.count, "num");
      cell(row, event.sequence !== null && event.sequence !== undefined ? "seq " + event.sequence : event.occurred_at);
      cell(row, event.detail_type);
      cell(row, stageOrState(event));
      flags(row, event);
      cell(row, event.occurred_at);
      cell(row, event.received_at);
      cell(row, lag(event), "num");
      cell(row, event.event_id);
      body.appendChild(row);
    }
    timeline.cursor = page.next_cursor;
    $("timeline-table").hidden = timeline.count === 0;
    $("timeline-more").hidden = !timeline.cursor;
    message(
      "timeline-message",
      timeline.count === 0
        ? "No stored events for " + timeline.id + "."
        : timeline.count + " event(s) of " + timeline.id + (timeline.cursor ? " so far" : ""),
    );
  } catch (error) {
    message("timeline-message", error.message, true);
  }
}

$("timeline-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  timeline.id = $("timeline-id").value.trim();
  loadTimeline(true);
});
$("timeline-more").addEventListener("click", () => loadTimeline(false));

// ---- time window, paged ----------------------------------------------------------------------

// cursors[n] is the cursor that fetches page n (page 0 needs none).
const windowState = { filters: null, cursors: [null], page: 0 };

async function loadWindowPage(page) {
  const filters = windowState.filters;
  const path = "replay" + query({ ...filters, cursor: windowState.cursors[page] });
  try {
    const result = await api("GET", path);
    const body = $("window-table").querySelector("tbody");
    body.replaceChildren();
    const first = page * Number(filters.limit);
    result.events.forEach((event, index) => {
      const row = document.createElement("tr");
      cell(row, first + index + 1, "num");
      cell(row, event.occurred_at);
      cell(row, event.interaction_id);
      cell(row, event.detail_type);
      cell(row, stageOrState(event));
      flags(row, event);
      cell(row, event.received_at);
      cell(row, event.event_id);
      body.appendChild(row);
    });
    windowState.page = page;
    windowState.cursors[page + 1] = result.next_cursor;
    $("window-table").hidden = result.events.length === 0;
    $("window-previous").disabled = page === 0;
    $("window-next").disabled = !result.next_cursor;
    $("window-page").textContent = "page " + (page + 1);
    message(
      "window-message",
      result.events.length === 0 && page === 0
        ? "No stored events in this window."
        : "events " + (first + 1) + "–" + (first + result.events.length) +
            (result.next_cursor ? " (more on the next page)" : " (last page)"),
    );
  } catch (error) {
    message("window-message", error.message, true);
  }
}

$("window-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  windowState.filters = {
    since: $("window-since").value.trim(),
    until: $("window-until").value.trim(),
    detail_type: $("window-detail-type").value.trim(),
    interaction_id: $("window-interaction").value.trim(),
    limit: $("window-limit").value.trim() || "25",
  };
  windowState.cursors = [null];
  // The re-drive form starts from the window being looked at.
  $("redrive-since").value = windowState.filters.since;
  $("redrive-until").value = windowState.filters.until;
  $("redrive-interaction").value = windowState.filters.interaction_id;
  $("redrive-detail-type").value = windowState.filters.detail_type;
  loadWindowPage(0);
});
$("window-next").addEventListener("click", () => loadWindowPage(windowState.page + 1));
$("window-previous").addEventListener("click", () => loadWindowPage(windowState.page - 1));

// ---- re-drive jobs ---------------------------------------------------------------------------

function chosenConsumers() {
  const boxes = [...$("redrive-consumers").querySelectorAll("input[type=checkbox]")];
  if (boxes.length) return boxes.filter((box) => box.checked).map((box) => box.value);
  return $("redrive-consumer-names").value.split(",").map((name) => name.trim()).filter(Boolean);
}

function showJob(job) {
  $("job").hidden = false;
  $("job-id").textContent = job.job_id;
  $("job-status").textContent = job.status;
  $("job-progress").value = Number(job.progress || (job.status === "done" ? 1 : 0));
  $("job-matched").textContent = job.matched || 0;
  $("job-published").textContent = job.published || 0;
}

async function followJob(jobId) {
  for (;;) {
    const job = await api("GET", "replay/jobs/" + encodeURIComponent(jobId));
    showJob(job);
    if (job.status === "done" || job.status === "failed") {
      if (job.status === "failed") message("redrive-message", job.error || "the job failed", true);
      return job;
    }
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
}

$("redrive-form").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  message("redrive-message", "");
  const body = {
    since: $("redrive-since").value.trim(),
    until: $("redrive-until").value.trim(),
    consumers: chosenConsumers(),
  };
  const interaction = $("redrive-interaction").value.trim();
  const detailType = $("redrive-detail-type").value.trim();
  if (interaction) body.interaction_id = interaction;
  if (detailType) body.detail_type = detailType;
  if (!body.consumers.length) {
    message("redrive-message", "choose at least one consumer", true);
    return;
  }
  $("redrive-start").disabled = true;
  try {
    const created = await api("POST", "replay/jobs", body);
    showJob(created);
    await followJob(created.job_id);
  } catch (error) {
    message("redrive-message", error.message, true);
  } finally {
    $("redrive-start").disabled = false;
  }
});

// ---- the local stack's live counters (absent from deployed stages) ---------------------------

function consumerBoxes(names) {
  const holder = $("redrive-consumers");
  if (holder.childElementCount || !names.length) return;
  for (const name of names) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = name;
    box.name = "consumer";
    label.appendChild(box);
    label.appendChild(document.createTextNode(name));
    holder.appendChild(label);
  }
  $("redrive-consumer-names-label").hidden = true;
}

async function pollLive() {
  let status;
  try {
    const response = await fetch(apiUrl("_local/status"), { headers: { Accept: "application/json" } });
    if (response.status === 404) return; // a deployed stage: no live panel, no more polls
    status = await response.json();
  } catch (error) {
    setTimeout(pollLive, LIVE_POLL_MS); // the stack is busy or restarting
    return;
  }
  $("live-section").hidden = false;
  $("where").textContent = "local stack · " + (status.api_url || location.host);
  consumerBoxes(status.consumers || []);
  const body = $("live-table").querySelector("tbody");
  body.replaceChildren();
  for (const [label, value] of status.rows || []) {
    const row = document.createElement("tr");
    cell(row, label);
    cell(row, value, "num");
    body.appendChild(row);
  }
  setTimeout(pollLive, LIVE_POLL_MS);
}

pollLive();
