// The UI's Live tab (tuned_whisper/serving/ui_live.py): Gradio runs this with `element` (the tab's HTML)
// and `server` (its Python functions) in scope.
const find = (selector) => element.querySelector(selector);
const button = find(".tw-live-toggle"), status = find(".tw-live-status");
const out = find(".tw-live-text"), language = find(".tw-live-language");
const RATE = 24000;
let socket = null, stream = null, audio = null, node = null;
let turns = new Map();

function render() {
  const lines = [];
  for (const turn of turns.values()) {
    if (turn.done && turn.text) lines.push(turn.text);
    else if (!turn.done && turn.text.trim()) lines.push(turn.text.trim() + " …");
  }
  out.textContent = lines.join("\n");
}
function say(text) { status.textContent = text; }
function turn(id) {
  if (!turns.has(id)) turns.set(id, { text: "", done: false });
  return turns.get(id);
}
function pcm16(samples, from) {
  const step = from / RATE, count = Math.floor(samples.length / step), pcm = new Int16Array(count);
  for (let i = 0; i < count; i++) {
    const v = Math.max(-1, Math.min(1, samples[Math.floor(i * step)]));
    pcm[i] = v < 0 ? v * 32768 : v * 32767;
  }
  return pcm;
}
function base64(pcm) {
  const bytes = new Uint8Array(pcm.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}
function send(event) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(event)); }

function onEvent(message) {
  const event = JSON.parse(message.data);
  if (event.type === "session.created") {
    const transcription = { model: "whisper-1" };
    if (language.value !== "auto") transcription.language = language.value;
    send({ type: "session.update", session: { type: "transcription", audio: { input: {
      format: { type: "audio/pcm", rate: RATE }, transcription, turn_detection: { type: "server_vad" } } } } });
  } else if (event.type === "session.updated") {
    say("Listening: speak, and pause between sentences.");
  } else if (event.type === "input_audio_buffer.speech_started") {
    turn(event.item_id);
  } else if (event.type === "conversation.item.input_audio_transcription.delta") {
    turn(event.item_id).text += event.delta;
  } else if (event.type === "conversation.item.input_audio_transcription.completed") {
    Object.assign(turn(event.item_id), { text: event.transcript, done: true });
  } else if (event.type === "conversation.item.input_audio_transcription.failed" || event.type === "error") {
    say("Error: " + ((event.error && event.error.message) || "the server could not transcribe this"));
  }
  render();
}

async function start() {
  button.disabled = true;
  say("Connecting…");
  try {
    const secret = await server.live_secret();
    if (typeof secret !== "string") throw new Error("the server gave the page no session key");
    const url = new URL("/v1/realtime?intent=transcription", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const protocols = ["realtime"];
    if (secret) protocols.push("openai-insecure-api-key." + secret);
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    socket = new WebSocket(url, protocols);
    socket.onmessage = onEvent;
    socket.onclose = (closed) => { if (closed.code !== 1000) say("Disconnected: " + (closed.reason || closed.code)); };
    await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = () => reject(new Error("the realtime connection failed")); });
    audio = new AudioContext();
    node = audio.createScriptProcessor(2048, 1, 1);
    node.onaudioprocess = (e) => send({ type: "input_audio_buffer.append",
      audio: base64(pcm16(e.inputBuffer.getChannelData(0), audio.sampleRate)) });
    audio.createMediaStreamSource(stream).connect(node);
    node.connect(audio.destination);
    button.textContent = "Stop";
  } catch (error) {
    say("Could not start: " + error.message);
    await stop();
  }
  button.disabled = false;
}

async function stop() {
  if (node) node.disconnect();
  if (audio) await audio.close();
  if (stream) stream.getTracks().forEach((track) => track.stop());
  node = audio = stream = null;
  if (socket && [...turns.values()].some((t) => !t.done)) {
    send({ type: "input_audio_buffer.commit" });
    say("Finishing the last turn…");
    for (let waited = 0; waited < 300 && [...turns.values()].some((t) => !t.done); waited++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  if (socket) socket.close(1000);
  socket = null;
  button.textContent = "Start";
  say("Stopped.");
}

button.addEventListener("click", () => (socket ? stop() : start()));
