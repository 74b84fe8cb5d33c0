// Live call page: events over /ws/events?call_id=..., hang-up and DTMF buttons. No dependencies.
"use strict";
(function () {
  const root = document.getElementById("call");
  const callId = root.dataset.callId;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = document.getElementById("events");
  const statusEl = document.getElementById("status");
  const reasonEl = document.getElementById("reason");
  const live = document.getElementById("live");
  const seen = new Set(Array.from(list.children).map((li) => li.dataset.type + "@" + li.dataset.ts));
  const STATUS_BY_EVENT = {
    "call.queued": "queued", "call.dialing": "dialing", "call.ringing": "ringing", "call.answered": "ivr",
    "hold.started": "holding", "human.detected": "human_detected", "device.ringing": "connecting",
    "call.bridged": "transferred",
  };

  function show(ev) {
    const key = ev.type + "@" + ev.ts;
    if (seen.has(key)) return;
    seen.add(key);
    const li = document.createElement("li");
    li.dataset.type = ev.type;
    li.dataset.ts = ev.ts;
    const t = document.createElement("time");
    t.textContent = new Date(ev.ts * 1000).toISOString().slice(11, 23);
    const b = document.createElement("b");
    b.textContent = ev.type;
    const code = document.createElement("code");
    code.textContent = JSON.stringify(ev.data);
    li.append(t, " ", b, " ", code);
    list.appendChild(li);
    const status = (ev.data && ev.data.status) || STATUS_BY_EVENT[ev.type];
    if (status) { statusEl.textContent = status; statusEl.className = "status-" + status; }
    if (ev.data && ev.data.reason) reasonEl.textContent = ev.data.reason;
  }

  function connect(delay) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/events?call_id=" + encodeURIComponent(callId));
    ws.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      if (ev.type === "ws.subscribed") { live.textContent = "live"; return; }
      show(ev);
    };
    ws.onclose = () => {
      live.textContent = "reconnecting…";
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }
  connect(1000);

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await r.json();
    if (!r.ok) alert(data.error ? data.error.message : "failed");
    return data;
  }
  document.getElementById("hangup").addEventListener("click", () => post("/api/calls/" + callId + "/hangup"));
  document.getElementById("dtmf").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = e.target.elements.digits;
    post("/api/calls/" + callId + "/dtmf", { digits: input.value }).then(() => { input.value = ""; });
  });
})();
