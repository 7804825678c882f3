// The WebRTC transport's pure parts (SDP candidate filter, signal checks, id order) and
// its signal state machine (PROTOCOL.md §3) over a fake RTCPeerConnection: no network.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  WebRTCTransport,
  candidateAddress,
  countCandidates,
  filterCandidates,
  hostAddresses,
  idLess,
  readSignal,
} from "../src/transport/webrtc.js";

const SDP = [
  "v=0",
  "o=- 1 1 IN IP4 0.0.0.0",
  "m=application 5000 UDP/DTLS/SCTP webrtc-datachannel",
  "c=IN IP4 127.0.0.1",
  "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
  "a=candidate:2 1 udp 2130706431 192.168.1.7 5001 typ host",
  "a=candidate:3 1 udp 1694498815 203.0.113.9 5002 typ srflx raddr 192.168.1.7 rport 5001",
  "a=candidate:4 1 UDP 2114977791 FE80::1 5003 typ host",
  "a=candidate:5 1 udp 2130706431 abcd.local 5004 typ host",
  "a=candidate:broken",
  "a=end-of-candidates",
  "",
].join("\r\n");

test("the SDP candidate filter keeps only listed addresses, and every other line", () => {
  const only = filterCandidates(SDP, ["127.0.0.1"]);
  assert.equal(countCandidates(only), 1);
  assert.ok(only.includes("a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"));
  assert.ok(only.includes("c=IN IP4 127.0.0.1\r\na=candidate:1"));
  assert.ok(only.endsWith("a=end-of-candidates\r\n"), "line endings and the end kept");
  assert.equal(only.split("\r\n").length, SDP.split("\r\n").length - 5);
  const two = filterCandidates(SDP, ["192.168.1.7", "fe80::1"]);
  assert.deepEqual(
    two.split("\r\n").filter((l) => l.startsWith("a=candidate:")).map(candidateAddress),
    ["192.168.1.7", "fe80::1"],
  );
  assert.equal(filterCandidates(SDP, null), SDP, "no list: unchanged");
  assert.equal(countCandidates(filterCandidates(SDP, [])), 0);
  const lf = SDP.replaceAll("\r\n", "\n");
  assert.equal(filterCandidates(lf, ["127.0.0.1"]), only.replaceAll("\r\n", "\n"));
  assert.equal(candidateAddress("a=candidate:broken"), null);
});

test("host addresses come from the option, else CRDT_STORES_ICE_ADDRESSES", () => {
  const saved = process.env.CRDT_STORES_ICE_ADDRESSES;
  try {
    process.env.CRDT_STORES_ICE_ADDRESSES = " 127.0.0.1 , ::1,";
    assert.deepEqual(hostAddresses(undefined), ["127.0.0.1", "::1"]);
    assert.deepEqual(hostAddresses(["10.0.0.1"]), ["10.0.0.1"]);
    delete process.env.CRDT_STORES_ICE_ADDRESSES;
    assert.equal(hostAddresses(undefined), null);
    assert.throws(() => hostAddresses("127.0.0.1"), TypeError);
  } finally {
    if (saved === undefined) delete process.env.CRDT_STORES_ICE_ADDRESSES;
    else process.env.CRDT_STORES_ICE_ADDRESSES = saved;
  }
});

test("signal payloads are checked as §3.1 says", () => {
  assert.deepEqual(readSignal({ kind: "offer", session: "s", sdp: "v=0" }), { kind: "offer", session: "s", sdp: "v=0" });
  assert.deepEqual(readSignal({ kind: "busy", session: "s", sdp: "" }), { kind: "busy", session: "s" });
  assert.deepEqual(readSignal({ kind: "later", session: "s", sdp: "" }), { kind: "ignore" });
  assert.ok(readSignal({ kind: "offer", session: 1, sdp: "" }).refused);
  assert.ok(readSignal({ kind: "offer", session: "x".repeat(65), sdp: "" }).refused);
  assert.ok(!readSignal({ kind: "offer", session: "x".repeat(64), sdp: "" }).refused);
  assert.ok(readSignal({ kind: "offer", session: "s", sdp: "x".repeat(32 * 1024 + 1) }).refused);
  assert.ok(readSignal({ kind: "offer", session: "s", sdp: "a=candidate:\n".repeat(17) }).refused);
  assert.ok(!readSignal({ kind: "offer", session: "s", sdp: "a=candidate:\n".repeat(16) }).refused);
});

test("ids compare by code points", () => {
  assert.ok(idLess("alice", "bob"));
  assert.ok(!idLess("bob", "alice"));
  assert.ok(idLess("a", "ab"));
  // U+FF61 < U+1F600 by code point, though its UTF-16 unit is bigger than a surrogate.
  assert.ok(idLess("\uff61", "\u{1f600}"));
  assert.ok(!("\uff61" < "\u{1f600}"));
});

// -- the signal state machine over a fake RTCPeerConnection ---------------------------------

class FakeChannel extends EventTarget {
  readyState = "connecting";
  bufferedAmount = 0;
  close() {
    this.readyState = "closed";
  }
  send() {}
}

class FakePC extends EventTarget {
  static made = [];
  constructor(config) {
    super();
    this.config = config;
    this.signalingState = "stable";
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.iceGatheringState = "complete";
    this.localDescription = null;
    this.remote = null;
    this.closed = false;
    FakePC.made.push(this);
  }
  createDataChannel(label, options) {
    this.channelArgs = [label, options];
    this.channel = new FakeChannel();
    return this.channel;
  }
  async createOffer() {
    return { type: "offer", sdp: SDP };
  }
  async createAnswer() {
    return { type: "answer", sdp: SDP };
  }
  async setLocalDescription(description) {
    this.localDescription = description;
    if (description.type === "offer") this.signalingState = "have-local-offer";
  }
  async setRemoteDescription(description) {
    this.remote = description;
    this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
  }
  close() {
    this.closed = true;
  }
  open() {
    this.channel.readyState = "open";
    this.channel.dispatchEvent(new Event("open"));
  }
}

function transport(peerId, present) {
  const sent = [];
  const events = [];
  const t = new WebRTCTransport({
    url: "ws://127.0.0.1:1",
    room: "r",
    peerId,
    iceAddresses: ["127.0.0.1"],
    RTCPeerConnection: FakePC,
    connectTimeout: 30,
    spareAfter: 30,
  });
  t._signaling = {
    signal: (peer, data) => {
      sent.push([peer, data]);
      return true;
    },
    close() {},
  };
  t._RTCPeerConnection = FakePC;
  t._present = new Set(present);
  t._handler = {
    linkUp: (peer) => events.push(["up", peer]),
    linkDown: (peer) => events.push(["down", peer]),
    frame: (peer, data) => events.push(["frame", peer, data]),
    signalRefused: (peer, reason) => events.push(["refused", peer, reason]),
  };
  return { t, sent, events };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test("an offer is answered with its session, candidates filtered both ways; strangers are refused", async () => {
  const { t, sent, events } = transport("bob", ["alice"]);
  t.signal("mallory", { kind: "offer", session: "m1", sdp: SDP });
  assert.deepEqual(events, [["refused", "mallory", "offer from a peer signaling did not list in the room"]]);
  t.signal("alice", { kind: "offer", session: "s1", sdp: SDP });
  await settle();
  assert.equal(sent.length, 1);
  const [to, data] = sent[0];
  assert.equal(to, "alice");
  assert.equal(data.kind, "answer");
  assert.equal(data.session, "s1");
  assert.equal(countCandidates(data.sdp), 1, "only 127.0.0.1 is offered");
  const pc = FakePC.made.at(-1);
  assert.deepEqual(pc.channelArgs, ["crdt-stores", { negotiated: true, id: 0, ordered: true }]);
  assert.equal(pc.config.bindAddress, "127.0.0.1");
  assert.deepEqual(pc.config.iceServers, [], "no STUN server by default");
  assert.equal(countCandidates(pc.remote.sdp), 1, "only 127.0.0.1 is used");
  pc.open();
  assert.deepEqual(events.at(-1), ["up", "alice"]);
  pc.channel.dispatchEvent(Object.assign(new Event("message"), { data: new Uint8Array([1, 2]).buffer }));
  assert.deepEqual(events.at(-1), ["frame", "alice", new Uint8Array([1, 2])]);
  t.signal("alice", { sealed: "xyz", v: 1 });
  assert.match(events.at(-1)[2], /no room key/);
  await t.close();
});

test("offers are rate limited per peer; bad signals are refused; unknown answers ignored", async () => {
  const { t, sent, events } = transport("bob", ["alice"]);
  for (let i = 0; i < 5; i++) t.signal("alice", { kind: "offer", session: `s${i}`, sdp: SDP });
  await settle();
  assert.equal(t.stats.offers_answered, 4);
  assert.deepEqual(events.at(-1), ["refused", "alice", "offers too often"]);
  // At most 3 attempts at once: the oldest went before its answer was sent.
  assert.equal(t._tries("alice").length, 3);
  assert.deepEqual(
    sent.map(([, d]) => d.session),
    ["s1", "s2", "s3"],
  );
  t.signal("alice", { kind: "offer", session: 5, sdp: SDP });
  assert.equal(events.at(-1)[2], "malformed signal");
  t.signal("alice", { kind: "offer", session: "s", sdp: "a=candidate:x\n".repeat(17) });
  assert.match(events.at(-1)[2], /too large/);
  t.signal("alice", { kind: "answer", session: "nobody", sdp: SDP });
  assert.equal(t.stats.answers_ignored, 1);
  await t.close();
});

test("crossing offers: the smaller id's offer wins", async () => {
  // alice (smaller) offers to bob and gets bob's crossing offer: she ignores it.
  const a = transport("alice", ["bob"]);
  a.t._connect("bob");
  await settle();
  assert.equal(a.sent.length, 1);
  assert.equal(a.sent[0][1].kind, "offer");
  a.t.signal("bob", { kind: "offer", session: "from-bob", sdp: SDP });
  await settle();
  assert.equal(a.sent.length, 1, "no answer to the crossing offer");
  // ... and takes bob's answer to her own session.
  const mine = a.t._peers.get("bob");
  a.t.signal("bob", { kind: "answer", session: a.sent[0][1].session, sdp: SDP });
  await settle();
  assert.equal(mine.pc.remote.type, "answer");
  assert.equal(countCandidates(mine.pc.remote.sdp), 1);
  await a.t.close();

  // bob (bigger) drops his own attempt and answers alice's.
  const b = transport("bob", ["alice"]);
  b.t._connect("alice");
  await settle();
  const own = b.t._peers.get("alice");
  b.t.signal("alice", { kind: "offer", session: "from-alice", sdp: SDP });
  await settle();
  assert.ok(own.closed && own.pc.closed, "his own attempt is dropped");
  assert.deepEqual(
    b.sent.map(([, d]) => [d.kind, d.kind === "answer" ? d.session : "-"]),
    [
      ["offer", "-"],
      ["answer", "from-alice"],
    ],
  );
  await b.t.close();
});

test("busy drops the attempt without retry; a link that closes is reported down", async () => {
  const { t, sent, events } = transport("alice", ["bob", "carol"]);
  t._connect("bob");
  await settle();
  t.signal("bob", { kind: "busy", session: "another", sdp: "" });
  assert.ok(t._peers.has("bob"), "busy for another session changes nothing");
  t.signal("bob", { kind: "busy", session: sent[0][1].session, sdp: "" });
  assert.ok(!t._peers.has("bob"));
  assert.equal(t.stats.offers_declined_by_peer, 1);
  assert.equal(t._retrying.size, 0, "no retry after busy");

  t._connect("carol");
  await settle();
  const pc = t._peers.get("carol").pc;
  pc.open();
  assert.deepEqual(events.at(-1), ["up", "carol"]);
  pc.channel.dispatchEvent(new Event("close"));
  assert.deepEqual(events.at(-1), ["down", "carol"]);
  assert.ok(t._retrying.has("carol"), "the smaller id retries");
  await t.close();
});
