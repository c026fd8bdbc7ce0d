// WebRTC made concrete: two users open an RTCPeerConnection data channel, the lab serving
// only as the signaling relay. The offer, the answer and the ICE candidates travel as
// "signal" messages over the page's WebSocket (PROTOCOL.md section 6); the data channel's
// messages then go straight from one browser to the other (SCTP over DTLS over UDP), and
// the lab never sees them.
//
// Loopback only: no STUN or TURN server ({iceServers: []}), so the only candidates are the
// machine's own host addresses. Chromium hides those behind random "<uuid>.local" mDNS names,
// which two pages of one browser resolve (the names are its own); between two browsers on a
// network where mDNS is blocked, Chromium's --disable-features=WebRtcHideLocalIpsWithMdns gives
// the plain addresses instead. Chromium leaves the loopback interface out of ICE: the machine
// needs one other interface up, though no packet leaves it.

import { $, clock, el } from "./dom.js";

const MAX_LINES = 100;

/**
 * @param {{request: Function, notice: (text: string) => void, me: () => ({id: number, username: string} | null)}} lab
 */
export function createRtc(lab) {
  const ui = {
    callForm: document.getElementById("rtc-call-form"),
    peer: $("rtc-peer"),
    call: $("rtc-call"),
    hangup: $("rtc-hangup"),
    connection: $("rtc-connection"),
    ice: $("rtc-ice"),
    channel: $("rtc-channel"),
    signals: $("rtc-signals"),
    sendForm: document.getElementById("rtc-send-form"),
    input: $("rtc-input"),
    send: $("rtc-send"),
    log: $("rtc-log"),
  };
  let pc = null;
  let channel = null;
  let peer = null; // {id, username, socket}: socket is null until the callee's tab is known
  let early = []; // ICE candidates that came before the remote description
  let handling = Promise.resolve(); // signals are handled one at a time, in arrival order

  function line(list, attrs, ...children) {
    list.prepend(el("li", attrs, el("time", {}, clock()), ...children));
    while (list.children.length > MAX_LINES) list.lastElementChild.remove();
  }

  function logSignal(direction, kind, who) {
    line(ui.signals, { "data-dir": direction, "data-kind": kind }, `${direction === "out" ? "↑ to" : "↓ from"} ${who} `, el("code", {}, kind));
  }

  function render() {
    ui.connection.textContent = pc ? pc.connectionState : "none";
    ui.ice.textContent = pc ? pc.iceConnectionState : "–";
    const state = channel ? channel.readyState : "none";
    ui.channel.textContent = state;
    ui.channel.dataset.state = state;
    ui.send.disabled = state !== "open";
    ui.hangup.disabled = pc === null;
  }

  function signal(kind, data) {
    if (!peer) return;
    const message = { type: "signal", to: peer.id, kind, data };
    if (peer.socket) message.to_socket = peer.socket; // the one tab that answered, not all of them
    logSignal("out", kind, peer.username);
    lab.request(message).catch((error) => lab.notice(`signal ${kind} not relayed: ${error.message}`));
  }

  function attach(dataChannel) {
    channel = dataChannel;
    for (const event of ["open", "close", "closing", "error"]) dataChannel.addEventListener(event, render);
    dataChannel.addEventListener("message", (event) => {
      line(ui.log, { class: "in", "data-dir": "in" }, el("span", { class: "from" }, peer?.username ?? "peer"), " ", el("span", { class: "text" }, String(event.data)));
    });
    render();
  }

  function open(to) {
    close(false);
    peer = to;
    pc = new RTCPeerConnection({ iceServers: [] }); // no STUN/TURN: loopback host candidates only
    pc.addEventListener("icecandidate", (event) => {
      if (event.candidate) signal("ice", event.candidate.toJSON());
    });
    pc.addEventListener("connectionstatechange", render);
    pc.addEventListener("iceconnectionstatechange", render);
    pc.addEventListener("datachannel", (event) => attach(event.channel));
    render();
  }

  function close(tellPeer) {
    if (tellPeer && pc) signal("hangup", null);
    channel?.close();
    pc?.close();
    pc = channel = peer = null;
    early = [];
    render();
  }

  async function acceptEarly() {
    for (const candidate of early) await pc.addIceCandidate(candidate);
    early = [];
  }

  async function call(user) {
    open({ ...user, socket: null });
    attach(pc.createDataChannel("lab")); // the caller makes the channel; the callee gets "datachannel"
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    signal("offer", { type: offer.type, sdp: offer.sdp });
  }

  async function handle(message) {
    const from = message.from;
    logSignal("in", message.kind, from.username);
    const ours = peer && peer.id === from.id && (!peer.socket || peer.socket === message.from_socket);
    switch (message.kind) {
      case "offer": {
        // Answered at once: in this lab, being called is consent enough.
        open({ id: from.id, username: from.username, socket: message.from_socket });
        await pc.setRemoteDescription(message.data);
        await acceptEarly();
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        signal("answer", { type: answer.type, sdp: answer.sdp });
        break;
      }
      case "answer":
        if (!ours || pc.remoteDescription) return; // another tab of the callee answered first
        peer.socket = message.from_socket;
        await pc.setRemoteDescription(message.data);
        await acceptEarly();
        break;
      case "ice":
        if (!ours) return;
        if (pc.remoteDescription) await pc.addIceCandidate(message.data);
        else early.push(message.data);
        break;
      case "hangup":
        if (ours) close(false);
        break;
      default:
        break;
    }
    render();
  }

  ui.callForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const option = ui.peer.selectedOptions[0];
    if (!option) {
      lab.notice("nobody else is online to call");
      return;
    }
    call({ id: Number(option.value), username: option.textContent }).catch((error) => lab.notice(`call failed: ${error.message}`));
  });

  ui.hangup.addEventListener("click", () => close(true));

  ui.sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.input.value;
    if (!text || channel?.readyState !== "open") return;
    channel.send(text); // peer to peer: this never crosses the lab's WebSocket
    ui.input.value = "";
    line(ui.log, { class: "out", "data-dir": "out" }, el("span", { class: "from" }, lab.me()?.username ?? "me"), " ", el("span", { class: "text" }, text));
  });

  render();

  return {
    /** A "signal" from the socket. */
    signal(message) {
      handling = handling.then(() => handle(message)).catch((error) => lab.notice(`WebRTC ${message.kind} failed: ${error.message}`));
    },
    /** Who can be called: the online users but oneself. */
    peers(users) {
      const me = lab.me()?.id;
      const chosen = ui.peer.value;
      ui.peer.replaceChildren(...users.filter((u) => u.id !== me).map((u) => el("option", { value: u.id }, u.username)));
      if ([...ui.peer.options].some((o) => o.value === chosen)) ui.peer.value = chosen;
      ui.call.disabled = ui.peer.options.length === 0;
    },
    hangup() {
      close(true);
      ui.signals.replaceChildren();
      ui.log.replaceChildren();
    },
  };
}
