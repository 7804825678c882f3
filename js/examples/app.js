// The example page (index.html): this tab joins a room and shares one store with the
// other peers there. Plain DOM, no framework; crdt-stores comes through the import map
// that examples/serve.js puts in the page.
//
// Query parameters fill the form: signaling, room, name, key (room key), store,
// media=1 (ask for the microphone before joining), ice=127.0.0.1[,...] (the host
// addresses ICE may use: Meeting's iceAddresses) and autojoin=1. `window.demo` gives scripts (and
// the tests) the meeting, the store and the page's own value formatting.

import { Float, Meeting } from "crdt-stores";

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const params = new URLSearchParams(location.search);
const MAX_LOG_LINES = 200;

/** @type {Meeting | null} */
let meeting = null;
/** @type {import("crdt-stores").Store | null} */
let store = null;
let unsubscribe = () => {};
let statusTimer = null;
let lastError = "";
/** @type {Map<string, HTMLTableRowElement>} */
const rows = new Map();

// -- values: JSON in, JSON out, by the number rule -------------------------------------

/**
 * JSON text to a store value. Where the browser tells a reviver the source text of a
 * number, `1.0` becomes a Float (a float that is a whole number) and an integer beyond
 * ±(2**53 - 1) a bigint, so both reach the other peers as typed; elsewhere numbers are
 * plain JavaScript numbers.
 */
export function parseValue(text) {
  return JSON.parse(text, function (_key, value, context) {
    if (typeof value !== "number" || typeof context?.source !== "string") return value;
    const source = context.source;
    if (/^-?\d+$/.test(source)) {
      if (Object.is(value, -0)) return 0; // "-0" is the integer 0
      return Number.isSafeInteger(value) ? value : BigInt(source);
    }
    return Number.isSafeInteger(value) && !Object.is(value, -0) ? new Float(value) : value;
  });
}

/** A float as Python's repr writes it (`1.0`, `1e-05`, `1e+16`), as `crdt-stores peer` prints it. */
function pythonFloat(n) {
  if (Number.isNaN(n)) return "NaN";
  if (!Number.isFinite(n)) return n > 0 ? "Infinity" : "-Infinity";
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0";
  const [mantissa, exp] = Math.abs(n).toExponential().split("e"); // shortest round-trip digits
  const digits = mantissa.replace(".", "");
  const e = Number(exp);
  const sign = n < 0 ? "-" : "";
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  if (digits.length <= e + 1) return `${sign}${digits}${"0".repeat(e + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
}

/** A store value as JSON text, the way `crdt-stores peer` prints it (Python's json.dumps). */
export function show(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return String(value);
  if (typeof value === "bigint") return String(value);
  if (value instanceof Float) return pythonFloat(value.value);
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && !Object.is(value, -0) ? String(value) : pythonFloat(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(show).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${show(v)}`).join(", ")}}`;
  }
  return String(value);
}

// -- the page -------------------------------------------------------------------------

function log(text, level = "info") {
  const line = `${new Date().toLocaleTimeString()}  ${text}\n`;
  const box = $("log");
  box.textContent = (line + box.textContent).split("\n").slice(0, MAX_LOG_LINES).join("\n");
  if (level === "error") console.error(text);
  else if (level === "warn") console.warn(text);
}

function showError(text) {
  lastError = text;
  $("error").textContent = text;
}

/** The meeting's logger: its warnings and errors go to the page's log as well. */
const logger = {
  debug() {},
  info: (...args) => log(args.map(String).join(" ")),
  warn: (...args) => log(args.map(String).join(" "), "warn"),
  error: (...args) => log(args.map((a) => a?.stack ?? String(a)).join(" "), "error"),
};

function setState(state) {
  const node = $("state");
  node.textContent = state;
  node.className = `state ${state}`;
}

function renderStatus() {
  if (!meeting) return;
  setState(meeting.state);
  $("room-name").textContent = meeting.room;
  $("peer-id").textContent = meeting.joined ? meeting.peerId : "–";
  const linked = new Set(meeting.peers);
  const everyone = [...new Set([...linked, ...meeting.roomPeers])].sort();
  const list = $("peers");
  list.replaceChildren(
    ...everyone.map((peer) => {
      const item = document.createElement("li");
      item.className = linked.has(peer) ? "linked" : "listed";
      item.dataset.peer = peer;
      item.textContent = `${peer}${linked.has(peer) ? "" : " (not linked yet)"}`;
      return item;
    }),
  );
  if (!everyone.length) {
    const none = document.createElement("li");
    none.id = "no-peers";
    none.textContent = meeting.joined ? "nobody else in the room" : "none";
    list.append(none);
  }
}

function renderRow(key, { flash = false } = {}) {
  let row = rows.get(key);
  if (!store || !store.has(key)) {
    row?.remove();
    rows.delete(key);
  } else {
    if (!row) {
      row = document.createElement("tr");
      row.dataset.key = key;
      const keyCell = document.createElement("td");
      keyCell.className = "key";
      keyCell.textContent = key;
      const valueCell = document.createElement("td");
      valueCell.className = "value";
      const actions = document.createElement("td");
      actions.className = "actions";
      const edit = document.createElement("button");
      edit.type = "button";
      edit.textContent = "edit";
      edit.className = "edit";
      edit.addEventListener("click", () => {
        /** @type {HTMLInputElement} */ ($("write-key")).value = key;
        /** @type {HTMLTextAreaElement} */ ($("write-value")).value = show(store?.get(key));
        $("write-value").focus();
      });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "delete";
      remove.className = "delete";
      remove.addEventListener("click", () => write("delete", key));
      actions.append(edit, " ", remove);
      row.append(keyCell, valueCell, actions);
      rows.set(key, row);
      // keep the rows sorted by key
      const after = [...rows.keys()].filter((k) => k > key).sort()[0];
      $("entries").insertBefore(row, after === undefined ? null : /** @type {Node} */ (rows.get(after)));
    }
    row.cells[1].textContent = show(store.get(key));
    if (flash) {
      row.classList.remove("changed");
      void row.offsetWidth; // restart the animation
      row.classList.add("changed");
    }
  }
  $("empty").hidden = rows.size > 0;
}

function renderStore() {
  for (const row of rows.values()) row.remove();
  rows.clear();
  $("store-name").textContent = store ? JSON.stringify(store.name) : "";
  for (const key of store ? [...store.keys()].sort() : []) renderRow(key);
  $("empty").hidden = rows.size > 0;
}

function setJoined(joined) {
  for (const id of ["set", "update", "delete", "leave"]) /** @type {HTMLButtonElement} */ ($(id)).disabled = !joined;
  /** @type {HTMLButtonElement} */ ($("join")).disabled = joined;
  for (const id of ["signaling", "room", "name", "key", "store", "media"]) {
    /** @type {HTMLInputElement} */ ($(id)).disabled = joined;
  }
}

// -- joining and leaving --------------------------------------------------------------

/** Chromium offers plain host addresses (not mDNS names), those of every interface and,
 * with --allow-loopback-in-peer-connection, 127.0.0.1, only to a page holding a media
 * permission: take the microphone once and stop it. */
async function mediaPermission() {
  if (!navigator.mediaDevices?.getUserMedia) return false;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const track of stream.getTracks()) track.stop();
    return true;
  } catch (error) {
    log(`no microphone permission (${error?.name ?? error}): only the default route's address is offered`, "warn");
    return false;
  }
}

async function join() {
  if (meeting && meeting.state !== "left") return;
  const field = (id) => /** @type {HTMLInputElement} */ ($(id)).value.trim();
  const url = field("signaling");
  const room = field("room");
  const name = field("name");
  const roomKey = field("key");
  const storeName = field("store") || "demo";
  showError("");
  setJoined(true);
  /** @type {HTMLButtonElement} */ ($("leave")).disabled = true;
  setState("joining");
  if (/** @type {HTMLInputElement} */ ($("media")).checked) await mediaPermission();
  const ice = (params.get("ice") ?? "").split(",").map((a) => a.trim()).filter(Boolean);
  let joining;
  try {
    joining = new Meeting({
      url,
      room,
      peerId: name || null,
      roomKey: roomKey || null,
      iceAddresses: ice.length ? ice : undefined,
      logger,
    });
  } catch (error) {
    showError(String(error?.message ?? error));
    setState("failed");
    setJoined(false);
    return;
  }
  meeting = joining;
  $("sealed").textContent = roomKey ? "yes (room key)" : "no: the signaling server could read the signals";
  joining.on("peer_joined", (peer) => {
    log(`peer ${peer} linked`);
    renderStatus();
  });
  joining.on("peer_left", (peer) => {
    log(`peer ${peer} left`);
    renderStatus();
  });
  joining.on("peer_misbehaved", (peer, reason) => log(`peer ${peer} misbehaved: ${reason}`, "warn"));
  joining.on("signal_refused", (peer, reason) => log(`refused a signal from ${peer}: ${reason}`, "warn"));
  log(`joining room ${JSON.stringify(room)} at ${url}…`);
  clearInterval(statusTimer);
  statusTimer = setInterval(renderStatus, 500); // signaling's list changes without an event
  renderStatus();
  try {
    await joining.join();
  } catch (error) {
    if (meeting !== joining) return;
    showError(`cannot join: ${error?.message ?? error}`);
    log(`cannot join: ${error?.message ?? error}`, "warn");
    clearInterval(statusTimer);
    meeting = null;
    setState("failed");
    setJoined(false);
    return;
  }
  if (meeting !== joining || !joining.joined) return; // left while joining
  store = joining.stores.create(storeName);
  unsubscribe = store.subscribe("*", (key, value) => {
    log(`${key} ${store?.has(key) ? `= ${show(value)}` : "deleted"} (from a peer)`);
    renderRow(key, { flash: true });
  });
  renderStore();
  renderStatus();
  /** @type {HTMLButtonElement} */ ($("leave")).disabled = false;
  log(`joined as ${joining.peerId}; linked to ${JSON.stringify(joining.peers)}`);
}

async function leave() {
  const leaving = meeting;
  if (!leaving) return;
  /** @type {HTMLButtonElement} */ ($("leave")).disabled = true;
  unsubscribe();
  unsubscribe = () => {};
  try {
    await leaving.leave();
  } finally {
    clearInterval(statusTimer);
    renderStatus();
    setJoined(false);
    log("left the room (the table keeps what this tab had)");
  }
}

// -- writes ---------------------------------------------------------------------------

async function write(operation, keyArg) {
  showError("");
  if (!store || !meeting?.joined) return showError("join a room first");
  const key = keyArg ?? /** @type {HTMLInputElement} */ ($("write-key")).value;
  if (!key) return showError("a key, please");
  try {
    if (operation === "delete") {
      await store.delete(key);
      log(`deleted ${key}`);
    } else {
      const text = /** @type {HTMLTextAreaElement} */ ($("write-value")).value;
      let value;
      try {
        value = parseValue(text);
      } catch (error) {
        return showError(`the value is not JSON: ${error?.message ?? error} (strings need double quotes)`);
      }
      await store[operation](key, value);
      log(`${operation} ${key} ${show(value)}`);
    }
  } catch (error) {
    showError(`${operation} failed: ${error?.message ?? error}`);
  }
  renderRow(key, { flash: true });
}

// -- wiring ---------------------------------------------------------------------------

for (const id of ["signaling", "room", "name", "key", "store"]) {
  if (params.has(id)) /** @type {HTMLInputElement} */ ($(id)).value = /** @type {string} */ (params.get(id));
}
if (params.has("media")) /** @type {HTMLInputElement} */ ($("media")).checked = params.get("media") === "1";

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join();
});
$("leave").addEventListener("click", () => leave());
$("write-form").addEventListener("submit", (event) => {
  event.preventDefault();
  write("set");
});
$("update").addEventListener("click", () => write("update"));
$("delete").addEventListener("click", () => write("delete"));
addEventListener("pagehide", () => {
  meeting?.leave(); // best effort: the others see this tab go at once
});

/** For scripts and tests: the live meeting and store, and the page's value format. */
globalThis.demo = {
  get meeting() {
    return meeting;
  },
  get store() {
    return store;
  },
  get status() {
    return {
      state: meeting?.state ?? "new",
      ready: Boolean(store) && Boolean(meeting?.joined),
      peerId: meeting?.joined ? meeting.peerId : null,
      peers: meeting ? [...meeting.peers].sort() : [],
      roomPeers: meeting ? meeting.roomPeers : [],
      error: lastError,
    };
  },
  join,
  leave,
  write,
  show,
  parseValue,
  Float,
};

if (params.get("autojoin") === "1") join();
