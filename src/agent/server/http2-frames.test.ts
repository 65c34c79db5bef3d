// Frame-boundary tracking on in-memory byte streams.
// Run: node --import tsx --test src/agent/server/http2-frames.test.ts
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CLIENT_PREFACE,
  FrameType,
  InboundTracker,
  OutboundFilter,
  encodeFrame,
  parseFrameHeader,
  type InboundEvent,
} from './http2-frames';

const { DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE } = FrameType;

/** A plausible client connection: preface, settings, a call whose DATA payload contains the preface bytes, ping, goaway. */
function clientConnection(tag: string): Buffer {
  const goaway = Buffer.alloc(8); // last stream id 0, NO_ERROR
  return Buffer.concat([
    CLIENT_PREFACE,
    encodeFrame(SETTINGS, 0, 0, Buffer.from('000300000064', 'hex')),
    encodeFrame(WINDOW_UPDATE, 0, 0, Buffer.from('00010000', 'hex')),
    encodeFrame(HEADERS, 0x4, 1, Buffer.from(`headers-${tag}`)),
    encodeFrame(DATA, 0, 1, Buffer.concat([Buffer.from(`data-${tag}:`), CLIENT_PREFACE, Buffer.from(':end')])),
    encodeFrame(DATA, 0x1, 1), // empty END_STREAM
    encodeFrame(SETTINGS, 0x1, 0), // ack, no payload
    encodeFrame(PING, 0, 0, Buffer.from('0123456789abcdef', 'hex')),
    encodeFrame(GOAWAY, 0, 0, goaway),
  ]);
}

type Summary = Array<'preface' | 'goaway' | { bytes: string } | { discarded: number }>;

/** Events with adjacent bytes/discards merged, so that any chunking of the same stream compares equal. */
function summarize(events: InboundEvent[]): Summary {
  const out: Summary = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (e.kind === 'bytes') {
      if (last && typeof last === 'object' && 'bytes' in last) last.bytes += e.bytes.toString('hex');
      else out.push({ bytes: e.bytes.toString('hex') });
    } else if (e.kind === 'discarded') {
      if (last && typeof last === 'object' && 'discarded' in last) last.discarded += e.length;
      else out.push({ discarded: e.length });
    } else {
      out.push(e.kind);
    }
  }
  return out;
}

function feed(chunks: Buffer[], tracker = new InboundTracker()): Summary {
  return summarize(chunks.flatMap((c) => tracker.push(c)));
}

function splitAt(b: Buffer, ...cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(b.subarray(from, c));
    from = c;
  }
  out.push(b.subarray(from));
  return out;
}

/** Deterministic pseudo-random chunking. */
function randomChunks(b: Buffer, seed: number, max = 40): Buffer[] {
  let x = seed;
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; ) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (x % max);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

const hex = (b: Buffer) => b.toString('hex');
const goawayAt = (conn: Buffer) => conn.length - (9 + 8); // offset of the GOAWAY frame in clientConnection()

describe('InboundTracker', () => {
  const a = clientConnection('a');
  const b = clientConnection('b');
  const stream = Buffer.concat([a, b]);
  // One connection's bytes up to (and including) its GOAWAY header are reported before the goaway event.
  const expected: Summary = [
    'preface',
    { bytes: hex(a.subarray(0, goawayAt(a) + 9)) },
    'goaway',
    { bytes: hex(a.subarray(goawayAt(a) + 9)) },
    'preface',
    { bytes: hex(b.subarray(0, goawayAt(b) + 9)) },
    'goaway',
    { bytes: hex(b.subarray(goawayAt(b) + 9)) },
  ];

  it('finds both connections and both GOAWAYs in one chunk; the preface inside DATA is data', () => {
    assert.deepEqual(feed([stream]), expected);
  });

  it('gives the same answer for a split at every offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      assert.deepEqual(feed(splitAt(stream, cut)), expected, `cut at ${cut}`);
    }
  });

  it('gives the same answer for two splits at every pair of offsets around the second preface', () => {
    // Every pair would be ~50k runs; the interesting region is the end of a's GOAWAY and b's preface + first frame.
    const from = goawayAt(a) - 2;
    const to = a.length + CLIENT_PREFACE.length + 12;
    for (let c1 = from; c1 <= to; c1++) {
      for (let c2 = c1; c2 <= to; c2++) {
        assert.deepEqual(feed(splitAt(stream, c1, c2)), expected, `cuts at ${c1}, ${c2}`);
      }
    }
  });

  it('gives the same answer byte by byte and for random chunkings', () => {
    assert.deepEqual(feed([...stream].map((x) => Buffer.of(x))), expected);
    for (let seed = 1; seed <= 200; seed++) assert.deepEqual(feed(randomChunks(stream, seed)), expected, `seed ${seed}`);
  });

  it('sees a preface in the middle of a chunk, right after a frame ends', () => {
    const settings = encodeFrame(SETTINGS, 0, 0);
    const chunk = Buffer.concat([CLIENT_PREFACE, settings, CLIENT_PREFACE, settings]);
    assert.deepEqual(feed([chunk]), [
      'preface',
      { bytes: hex(Buffer.concat([CLIENT_PREFACE, settings])) },
      'preface',
      { bytes: hex(Buffer.concat([CLIENT_PREFACE, settings])) },
    ]);
  });

  it('does not start a connection for a preface in the middle of a frame (old frame incomplete)', () => {
    // A DATA frame announcing 100 bytes, of which only 10 arrive before a preface: all of it is payload.
    const header = encodeFrame(DATA, 0, 1).subarray(0, 9);
    header.writeUIntBE(100, 0, 3);
    const rest = Buffer.concat([Buffer.alloc(10, 0x61), CLIENT_PREFACE, encodeFrame(SETTINGS, 0, 0)]);
    const all = Buffer.concat([CLIENT_PREFACE, header, rest]);
    for (let cut = 0; cut <= all.length; cut++) {
      assert.deepEqual(feed(splitAt(all, cut)), ['preface', { bytes: hex(all) }], `cut at ${cut}`);
    }
    // ...and once the frame is complete, the next preface does start one.
    const tracker = new InboundTracker();
    feed([all], tracker);
    const fill = Buffer.alloc(100 - rest.length, 0x62);
    assert.deepEqual(feed([fill, CLIENT_PREFACE], tracker), [{ bytes: hex(fill) }, 'preface', { bytes: hex(CLIENT_PREFACE) }]);
  });

  it('drops bytes before the first preface, also when a false start precedes it across chunks', () => {
    const junk = Buffer.from('xxPRI * HTTP/2.0\r\n\r\nSX'); // 20-byte false start, then the real thing
    const all = Buffer.concat([junk, CLIENT_PREFACE, encodeFrame(PING, 0, 0, Buffer.alloc(8))]);
    const want: Summary = ['preface', { bytes: hex(all.subarray(junk.length)) }];
    assert.deepEqual(feed([all]), [{ discarded: junk.length }, ...want]);
    for (let cut = 0; cut <= all.length; cut++) {
      assert.deepEqual(feed(splitAt(all, cut)), [{ discarded: junk.length }, ...want], `cut at ${cut}`);
    }
    assert.deepEqual(feed([...all].map((x) => Buffer.of(x))), [{ discarded: junk.length }, ...want]);
    // "PRI * HTTP" then the preface: the P of HTTP could start a preface too (overlapping false start).
    const overlap = Buffer.concat([Buffer.from('PRI * HTTP'), CLIENT_PREFACE]);
    for (let cut = 0; cut <= overlap.length; cut++) {
      assert.deepEqual(feed(splitAt(overlap, cut)), [{ discarded: 10 }, 'preface', { bytes: hex(CLIENT_PREFACE) }], `cut at ${cut}`);
    }
  });

  it('holds a partial preface at a boundary only until it stops matching, then treats it as a frame header', () => {
    // 'PRI * HTTX...' at a boundary: not a preface, so a (nonsensical) header with a 5 MB payload follows.
    const tracker = new InboundTracker();
    feed([CLIENT_PREFACE], tracker);
    assert.deepEqual(feed([Buffer.from('PRI * HTT')], tracker), []); // held: could still be a preface
    assert.equal(parseFrameHeader(Buffer.from('PRI * HTT')).length, 0x505249);
    assert.deepEqual(feed([Buffer.from('X')], tracker), [{ bytes: hex(Buffer.from('PRI * HTTX')) }]);
    // Now inside that payload: a real preface is data.
    assert.deepEqual(feed([CLIENT_PREFACE], tracker), [{ bytes: hex(CLIENT_PREFACE) }]);
  });

  it('after reset() drops the rest of the old connection until a preface', () => {
    const tracker = new InboundTracker();
    const first = feed([a.subarray(0, 60)], tracker);
    assert.equal(first[0], 'preface');
    assert.equal(tracker.connected, true);
    tracker.reset();
    assert.equal(tracker.connected, false);
    const rest = a.subarray(60); // contains a preface inside a DATA payload: found while scanning
    const out = feed([rest, b], tracker);
    assert.equal(out[0] && typeof out[0] === 'object' && 'discarded' in out[0], true);
    assert.equal(out.filter((e) => e === 'preface').length >= 1, true);
    // A hangup-like reset right before a clean connection: only that connection, nothing dropped.
    tracker.reset();
    assert.deepEqual(feed([b], tracker), expected.slice(4));
  });

  it('reports a GOAWAY whose header is split across chunks exactly once', () => {
    const conn = Buffer.concat([CLIENT_PREFACE, encodeFrame(GOAWAY, 0, 0, Buffer.alloc(8))]);
    for (let cut = CLIENT_PREFACE.length; cut <= conn.length; cut++) {
      const s = feed(splitAt(conn, cut));
      assert.equal(s.filter((e) => e === 'goaway').length, 1, `cut at ${cut}`);
    }
    // A GOAWAY-typed frame on a stream other than 0 is not a connection GOAWAY.
    assert.deepEqual(feed([Buffer.concat([CLIENT_PREFACE, encodeFrame(GOAWAY, 0, 3, Buffer.alloc(8))])]).includes('goaway'), false);
  });
});

describe('OutboundFilter', () => {
  // What a server writes: its SETTINGS, an ack, a response, a GOAWAY, then more.
  const frames = [
    encodeFrame(SETTINGS, 0, 0, Buffer.from('000400400000', 'hex')),
    encodeFrame(SETTINGS, 0x1, 0),
    encodeFrame(HEADERS, 0x4, 1, Buffer.from('response-headers')),
    encodeFrame(DATA, 0, 1, Buffer.alloc(300, 0x41)),
    encodeFrame(GOAWAY, 0, 0, Buffer.from('0000000100000000', 'hex')),
    encodeFrame(PING, 0x1, 0, Buffer.alloc(8, 7)),
    encodeFrame(GOAWAY, 0, 0, Buffer.from('00000001000000000000', 'hex')), // with debug data
    encodeFrame(WINDOW_UPDATE, 0, 0, Buffer.from('00001000', 'hex')),
  ];
  const stream = Buffer.concat(frames);
  const withoutGoaway = Buffer.concat(frames.filter((f) => f[3] !== GOAWAY));

  function run(chunks: Buffer[], dropGoaway: boolean): { out: Buffer; dropped: number } {
    const f = new OutboundFilter();
    f.dropGoaway = dropGoaway;
    const out = Buffer.concat(chunks.flatMap((c) => f.push(c)));
    return { out, dropped: f.droppedFrames };
  }

  it('passes every byte through unchanged while the peer has not sent GOAWAY, at every split', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { out, dropped } = run(splitAt(stream, cut), false);
      assert.equal(hex(out), hex(stream), `cut at ${cut}`);
      assert.equal(dropped, 0);
    }
  });

  it('drops exactly the GOAWAY frames once the peer has sent GOAWAY, at every split and every pair near them', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { out, dropped } = run(splitAt(stream, cut), true);
      assert.equal(hex(out), hex(withoutGoaway), `cut at ${cut}`);
      assert.equal(dropped, 2);
    }
    const g = stream.indexOf(frames[4]!);
    for (let c1 = g - 3; c1 <= g + 20; c1++) {
      for (let c2 = c1; c2 <= g + 20; c2++) {
        assert.equal(hex(run(splitAt(stream, c1, c2), true).out), hex(withoutGoaway), `cuts at ${c1}, ${c2}`);
      }
    }
    assert.equal(hex(run([...stream].map((x) => Buffer.of(x)), true).out), hex(withoutGoaway));
    for (let seed = 1; seed <= 100; seed++) assert.equal(hex(run(randomChunks(stream, seed), true).out), hex(withoutGoaway));
  });

  it('applies dropGoaway to frames whose header starts after it is set', () => {
    const f = new OutboundFilter();
    const head = Buffer.concat(frames.slice(0, 5)); // ends with the first GOAWAY: sent
    const tail = Buffer.concat(frames.slice(5)); // second GOAWAY: dropped
    const out1 = Buffer.concat(f.push(head));
    f.dropGoaway = true;
    const out2 = Buffer.concat(f.push(tail));
    assert.equal(hex(out1), hex(head));
    assert.equal(hex(out2), hex(Buffer.concat([frames[5]!, frames[7]!])));
    assert.equal(f.droppedFrames, 1);
  });
});
