// The playground page: ask the service for a room and a token, join with livekit-client, show
// what the agent publishes (PROTOCOL.md §3), send typed turns as user_text.
import { Room, RoomEvent, Track, DisconnectReason } from "/web/livekit-client.esm.js";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), leave: $("leave"), mic: $("mic"), level: $("mic-level"),
  camera: $("camera"), screen: $("screen"), enableAudio: $("enable-audio"),
  state: $("call-state"), agent: $("agent-status"), error: $("error"), notice: $("notice"),
  tokenBox: $("token-box"), token: $("playground-token"), transcript: $("transcript"),
  todo: $("todo"), handoff: $("handoff"), chart: $("latency-chart"),
  latency: $("latency-summary"), form: $("message-form"), message: $("message"),
  send: $("send"), audioSink: $("audio-sink"), media: $("media"),
};

let room = null;
let session = null;
let leaving = false;
let meterStop = null;
let info = { vision: false, persona: null };
const turns = [];
const entries = new Map(); // transcript_id -> <li>
const typed = []; // [{ text, li }]: typed messages shown at once, until the agent's echo arrives

function showError(text) { ui.error.textContent = text; ui.error.hidden = !text; }
function showNotice(text) { ui.notice.textContent = text; ui.notice.hidden = !text; }
function setState(text) { ui.state.textContent = text; }

function authHeaders() {
  const token = ui.token.value || sessionStorage.getItem("playground-token") || "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function loadInfo() {
  let response;
  try {
    response = await fetch("/playground/info", { headers: authHeaders() });
  } catch {
    showError("Could not reach the service.");
    return;
  }
  if (response.status === 401) {
    ui.tokenBox.hidden = false;
    return;
  }
  if (!response.ok) return;
  info = await response.json();
  ui.tokenBox.hidden = !ui.token.value;
  const persona = info.persona;
  const fill = (id, value) => { if (!$(id).value) $(id).value = value; }; // keep what was typed
  fill("greeting", persona.greeting);
  fill("instructions", persona.instructions);
  fill("voice", persona.voice);
  fill("todo-items", persona.todo_items.map((i) => `${i.id}: ${i.description}`).join("\n"));
  ui.camera.hidden = ui.screen.hidden = !info.vision;
}

function personaFromForm() {
  const persona = {};
  const greeting = $("greeting").value.trim();
  const instructions = $("instructions").value.trim();
  const voice = $("voice").value.trim();
  if (greeting) persona.greeting = greeting;
  if (instructions) persona.instructions = instructions;
  if (voice) persona.voice = voice;
  const lines = $("todo-items").value.split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return persona; // the configured todo list
  persona.todo_items = lines.map((line, n) => {
    const colon = line.indexOf(":");
    const id = colon > 0 ? line.slice(0, colon).trim() : `item${n + 1}`;
    const description = colon > 0 ? line.slice(colon + 1).trim() : line;
    return { id, description, status: "pending", required: true };
  });
  return persona;
}

async function microphoneAllowed() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    stream.getTracks().forEach((t) => t.stop());
    return true;
  } catch (e) {
    return false;
  }
}

async function requestSession() {
  let response;
  try {
    response = await fetch("/playground/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ persona: personaFromForm() }),
    });
  } catch {
    throw new Error("Could not reach the service.");
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    ui.tokenBox.hidden = false;
    throw new Error("This playground needs its token: enter it above and start again.");
  }
  if (response.status === 503) {
    const wait = body.retry_after || response.headers.get("Retry-After");
    throw new Error(`The service is busy (${body.error || "no capacity"}): every agent is in a call. ` +
      `Try again${wait ? ` in ${wait} s` : " later"}.`);
  }
  if (!response.ok) {
    const why = body.error || (typeof body.detail === "string" ? body.detail : response.statusText);
    throw new Error(`The service refused the call: ${why}`);
  }
  if (ui.token.value) sessionStorage.setItem("playground-token", ui.token.value);
  return body;
}

async function start() {
  showError(""); showNotice("");
  ui.start.disabled = true;
  resetView();
  if (!info.persona) await loadInfo(); // the form's defaults, once the token is known
  setState("asking for the microphone");
  const micOk = await microphoneAllowed();
  if (!micOk) {
    showError("Microphone refused: the agent cannot hear you. Allow the microphone for this " +
      "page and start again, or type your messages below.");
  }
  setState("asking the service for a room");
  try {
    session = await requestSession();
  } catch (e) {
    showError(e.message);
    setState("not started");
    ui.start.disabled = false;
    return;
  }
  if (session.server_url.startsWith("local://")) {
    showError("This service runs in-memory rooms (local://), which a browser cannot join: " +
      "configure LIVEKIT_URL and its API key and secret.");
    setState("not started");
    ui.start.disabled = false;
    return;
  }
  $("job").textContent = `job ${session.job_id}, room ${session.room}`;
  setState("connecting");
  room = new Room({ adaptiveStream: true, dynacast: true });
  wireRoom(room);
  try {
    await room.connect(session.server_url, session.token);
  } catch (e) {
    showError(`Could not connect to the room: ${e.message || e}`);
    setState("not connected");
    room = null;
    ui.start.disabled = false;
    return;
  }
  leaving = false;
  setState("connected");
  ui.leave.disabled = false;
  ui.message.disabled = ui.send.disabled = false;
  ui.camera.disabled = ui.screen.disabled = !info.vision;
  if (micOk) await setMicrophone(true);
  if (!room.canPlaybackAudio) ui.enableAudio.hidden = false;
}

async function setMicrophone(on) {
  try {
    await room.localParticipant.setMicrophoneEnabled(on);
  } catch (e) {
    showError(`Microphone refused: ${e.message || e}. You can still type your messages.`);
    on = false;
  }
  ui.mic.disabled = false;
  ui.mic.setAttribute("aria-pressed", String(on));
  if (on) startMeter(); else stopMeter();
}

function startMeter() {
  stopMeter();
  const publication = room.localParticipant.getTrackPublication(Track.Source.Microphone);
  const track = publication && publication.track;
  if (!track) return;
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    ui.level.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
  }, 100);
  meterStop = () => { clearInterval(timer); context.close(); ui.level.value = 0; };
}

function stopMeter() { if (meterStop) { meterStop(); meterStop = null; } }

function wireRoom(r) {
  r.on(RoomEvent.DataReceived, (payload) => onData(payload));
  r.on(RoomEvent.TrackSubscribed, (track, _pub, participant) => {
    const element = track.attach();
    if (track.kind === Track.Kind.Audio) {
      ui.audioSink.appendChild(element);
    } else {
      ui.media.hidden = false;
      ui.media.appendChild(element);
    }
    element.dataset.participant = participant.identity;
  });
  r.on(RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()));
  r.on(RoomEvent.AudioPlaybackStatusChanged, () => { ui.enableAudio.hidden = r.canPlaybackAudio; });
  r.on(RoomEvent.Reconnecting, () => { setState("reconnecting"); showNotice("Connection interrupted: reconnecting…"); });
  r.on(RoomEvent.Reconnected, () => { setState("connected"); showNotice(""); });
  r.on(RoomEvent.ParticipantConnected, (p) => {
    if (session && p.identity === session.agent_identity) ui.agent.textContent = "joined";
  });
  r.on(RoomEvent.ParticipantDisconnected, (p) => {
    if (session && p.identity === session.agent_identity) {
      ui.agent.textContent = "left the call";
      ui.agent.className = "pill";
    }
  });
  r.on(RoomEvent.Disconnected, (reason) => {
    stopMeter();
    const wasLeaving = leaving || reason === DisconnectReason.CLIENT_INITIATED;
    setState(wasLeaving ? "ended" : "connection lost");
    if (!wasLeaving) {
      showError(`Connection to the room lost (${DisconnectReason[reason] || reason || "unknown"}). ` +
        "Start a new call to continue.");
    }
    endControls();
  });
}

function endControls() {
  room = null;
  ui.start.disabled = false;
  ui.leave.disabled = true;
  ui.mic.disabled = ui.camera.disabled = ui.screen.disabled = true;
  ui.mic.setAttribute("aria-pressed", "false");
  ui.message.disabled = ui.send.disabled = true;
  ui.enableAudio.hidden = true;
}

async function leave() {
  if (!room) return;
  leaving = true;
  setState("leaving");
  await room.disconnect();
}

function onData(payload) {
  let message;
  try {
    message = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return;
  }
  const data = message.data;
  switch (message.type) {
    case "transcript_chunk": return showChunk(data);
    case "agent_status": return showStatus(data);
    case "todo_list": return showTodo(data.items);
    case "handoff": return showHandoff(data);
    case "agent_metrics": return showMetrics(data);
    default: return undefined;
  }
}

function speakerName(identity) {
  if (session && identity === session.agent_identity) return "Agent";
  if (session && identity === session.identity) return "You";
  return identity;
}

function addEntry(key, { who, agent, time, text, final, interrupted }) { // returns the <li>
  let li = key ? entries.get(key) : null;
  if (!li) {
    li = document.createElement("li");
    li.innerHTML = '<time></time><span class="who"></span><span class="text"></span>';
    if (key) entries.set(key, li);
    ui.transcript.appendChild(li);
  }
  li.className = `${agent ? "agent" : "user"} ${final ? "final" : "interim"}`;
  li.dataset.speaker = who;
  li.querySelector("time").textContent = new Date(time).toLocaleTimeString();
  li.querySelector("time").dateTime = time;
  li.querySelector(".who").textContent = `${who}:`;
  li.querySelector(".text").textContent = text;
  if (interrupted && !li.querySelector(".cut")) {
    const cut = document.createElement("span");
    cut.className = "cut";
    cut.textContent = "(interrupted)";
    li.appendChild(cut);
  }
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return li;
}

function showChunk(d) {
  const agent = session && d.participant_id === session.agent_identity;
  if (session && d.participant_id === session.identity && d.is_final && !entries.has(d.transcript_id)) {
    const echo = typed.findIndex((t) => t.text === d.text.trim());
    if (echo >= 0) {
      entries.set(d.transcript_id, typed[echo].li); // the agent got the typed message
      typed.splice(echo, 1);
    }
  }
  addEntry(d.transcript_id, {
    who: speakerName(d.participant_id), agent, time: d.timestamp, text: d.text,
    final: d.is_final, interrupted: d.interrupted,
  });
}

function showStatus(d) {
  ui.agent.textContent = d.status + (d.message ? ` (${d.message})` : "");
  ui.agent.className = `pill ${d.status}`;
}

function showTodo(items) {
  ui.todo.replaceChildren();
  if (!items.length) {
    ui.todo.innerHTML = '<li class="muted">no items</li>';
    return;
  }
  const marks = { pending: "○", in_progress: "◐", completed: "✓" };
  for (const item of items) {
    const li = document.createElement("li");
    li.className = item.status;
    li.dataset.id = item.id;
    li.dataset.status = item.status;
    li.innerHTML = '<span class="mark" aria-hidden="true"></span><span class="desc"></span> <span class="pill"></span>';
    li.querySelector(".mark").textContent = marks[item.status] || "?";
    li.querySelector(".desc").textContent = item.description + (item.required ? "" : " (optional)");
    li.querySelector(".pill").textContent = item.status.replace("_", " ");
    ui.todo.appendChild(li);
  }
}

function showHandoff(d) {
  ui.handoff.hidden = false;
  ui.handoff.textContent = `The agent handed this call to a person: ${d.reason} ${d.summary}`;
}

function showMetrics(d) {
  const stages = d.stages || {};
  const ms = stages.first_audio ?? stages.first_token ?? stages.done;
  if (ms === undefined) return;
  turns.push({ ms, kind: d.kind, interrupted: d.interrupted });
  drawChart();
}

function drawChart() {
  const svgNS = "http://www.w3.org/2000/svg";
  const width = ui.chart.clientWidth || 300;
  const height = 120;
  const shown = turns.slice(-20);
  const max = Math.max(1000, ...shown.map((t) => t.ms));
  const bar = width / Math.max(shown.length, 8);
  ui.chart.replaceChildren();
  shown.forEach((t, i) => {
    const h = Math.max(2, (t.ms / max) * (height - 16));
    const rect = document.createElementNS(svgNS, "rect");
    rect.setAttribute("x", String(i * bar + 2));
    rect.setAttribute("y", String(height - 14 - h));
    rect.setAttribute("width", String(Math.max(2, bar - 4)));
    rect.setAttribute("height", String(h));
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `turn ${turns.length - shown.length + i + 1}: ${Math.round(t.ms)} ms (${t.kind})`;
    rect.appendChild(title);
    ui.chart.appendChild(rect);
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", String(i * bar + 2));
    label.setAttribute("y", String(height - 2));
    label.textContent = String(Math.round(t.ms));
    ui.chart.appendChild(label);
  });
  const sorted = turns.map((t) => t.ms).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  ui.latency.textContent = `${turns.length} turn(s); last ${Math.round(turns.at(-1).ms)} ms, ` +
    `median ${Math.round(median)} ms to the agent's first audio (or first token for text)`;
}

function resetView() {
  entries.clear();
  typed.length = 0;
  turns.length = 0;
  ui.transcript.replaceChildren();
  ui.todo.innerHTML = '<li class="muted">none yet</li>';
  ui.handoff.hidden = true;
  ui.chart.replaceChildren();
  ui.latency.textContent = "no turns yet";
  ui.agent.textContent = "not in the call";
  ui.agent.className = "pill";
  ui.media.replaceChildren();
  ui.media.hidden = true;
}

async function sendMessage(event) {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text || !room) return;
  const payload = new TextEncoder().encode(JSON.stringify({ type: "user_text", data: text }));
  try {
    await room.localParticipant.publishData(payload, { reliable: true, topic: "user_text" });
  } catch (e) {
    showError(`Could not send the message: ${e.message || e}`);
    return;
  }
  ui.message.value = "";
  const li = addEntry(null, { who: "You", agent: false, time: new Date().toISOString(), text, final: true });
  typed.push({ text, li });
}

async function toggle(button, enable) {
  const on = button.getAttribute("aria-pressed") !== "true";
  try {
    await enable(on);
    button.setAttribute("aria-pressed", String(on));
  } catch (e) {
    showError(`${button.textContent} failed: ${e.message || e}`);
  }
}

ui.start.addEventListener("click", start);
ui.leave.addEventListener("click", leave);
ui.form.addEventListener("submit", sendMessage);
ui.mic.addEventListener("click", () => setMicrophone(ui.mic.getAttribute("aria-pressed") !== "true"));
ui.camera.addEventListener("click", () => toggle(ui.camera, (on) => room.localParticipant.setCameraEnabled(on)));
ui.screen.addEventListener("click", () => toggle(ui.screen, (on) => room.localParticipant.setScreenShareEnabled(on)));
ui.enableAudio.addEventListener("click", async () => { if (room) await room.startAudio(); });
window.addEventListener("beforeunload", () => { if (room) room.disconnect(); });
loadInfo();
