// HTTP/2 frame boundaries on a raw byte stream, for transports that carry
// one host connection after another over the same pipe without telling us
// where one ends and the next begins (the virtio-serial port: see
// serial-port.ts and docs/machine-facts.md, "virtio-serial").
//
// Every HTTP/2 frame starts with a 9-byte header: 24-bit payload length,
// 8-bit type, 8-bit flags, 1 reserved bit + 31-bit stream id (RFC 9113 §4.1).
// A client connection opens with the 24-byte preface
// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`. Read as a frame header its first three
// bytes give a payload length of 0x505249 (5.2 MB), far above the largest
// frame a peer may send us (SETTINGS_MAX_FRAME_SIZE, 16 KiB unless we raise
// it), and type 0x20 is not a frame type: a preface at a frame boundary can
// only be a NEW client connection. Inside a frame's payload the same bytes are
// just data.
//
// Pure logic, no I/O: InboundTracker (host -> guest) and OutboundFilter
// (guest -> host) are fed chunks exactly as they arrive and answer with what
// to do with them.

export const CLIENT_PREFACE: Buffer = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME_HEADER_LENGTH = 9;

/** Frame types of RFC 9113 §6 used here. */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
} as const;

export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

export function parseFrameHeader(b: Buffer, offset = 0): FrameHeader {
  return {
    length: b.readUIntBE(offset, 3),
    type: b[offset + 3]!,
    flags: b[offset + 4]!,
    streamId: b.readUInt32BE(offset + 5) & 0x7fffffff,
  };
}

/** A complete frame (for tests and tools): header + payload. */
export function encodeFrame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_LENGTH);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

export type InboundEvent =
  /** A new client connection starts here: its bytes (the preface first) follow as 'bytes' events. */
  | { kind: 'preface' }
  /** Bytes of the current connection, in order, to hand to the HTTP/2 server. */
  | { kind: 'bytes'; bytes: Buffer }
  /** The current connection's peer sent GOAWAY (reported once its header is complete). */
  | { kind: 'goaway'; header: FrameHeader }
  /** Bytes that belong to no connection (before any preface, or after reset()), dropped. */
  | { kind: 'discarded'; length: number };

/** Collects events, merging adjacent 'bytes' (and 'discarded') into one. */
class EventSink {
  readonly events: InboundEvent[] = [];
  private pending: Buffer[] = [];
  private discarded = 0;

  bytes(b: Buffer): void {
    if (b.length === 0) return;
    this.flushDiscarded();
    this.pending.push(b);
  }

  discard(n: number): void {
    if (n <= 0) return;
    this.flushBytes();
    this.discarded += n;
  }

  event(e: InboundEvent): void {
    this.flush();
    this.events.push(e);
  }

  flush(): void {
    this.flushBytes();
    this.flushDiscarded();
  }

  private flushBytes(): void {
    if (this.pending.length === 0) return;
    const bytes = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.events.push({ kind: 'bytes', bytes });
  }

  private flushDiscarded(): void {
    if (this.discarded === 0) return;
    this.events.push({ kind: 'discarded', length: this.discarded });
    this.discarded = 0;
  }
}

/** Length of the longest suffix of b[from..] (at most 23 bytes) that is a proper prefix of the preface. */
function prefacePrefixSuffix(b: Buffer, from: number): number {
  const max = Math.min(CLIENT_PREFACE.length - 1, b.length - from);
  for (let n = max; n > 0; n--) {
    if (b.compare(CLIENT_PREFACE, 0, n, b.length - n, b.length) === 0) return n;
  }
  return 0;
}

/**
 * Follows the host -> guest byte stream. Outside a connection (at the start,
 * and after reset()) it looks for a client preface anywhere and drops what
 * comes before it. Inside one it tracks frame boundaries; a preface at a
 * boundary starts a new connection, a preface inside a payload is data.
 *
 * At a frame boundary, bytes that so far match the preface are held back
 * until they either complete it or stop matching (a real frame header never
 * starts like the preface, see the top of this file), so a preface split
 * across chunks at any offset is still recognised.
 */
export class InboundTracker {
  private inConnection = false;
  /** Payload bytes still to come in the current frame. */
  private remaining = 0;
  /** Bytes collected at a frame boundary (a header, or a preface candidate); outside a connection, a partial preface. */
  private readonly head = Buffer.alloc(CLIENT_PREFACE.length);
  private headLength = 0;
  /** Whether head[0..headLength] is (still) a prefix of the preface. */
  private headIsPreface = true;

  /** Whether a connection is being followed (a preface was seen and no reset() since). */
  get connected(): boolean {
    return this.inConnection;
  }

  /**
   * The bytes held back at the end of what was pushed (a frame header or a
   * preface not yet complete), which no event has carried yet; the tracker
   * starts afresh, as after reset().
   */
  takeHeld(): Buffer {
    const held = Buffer.from(this.head.subarray(0, this.headLength));
    this.reset();
    return held;
  }

  /** The current connection is over (the host hung up): look for a new preface. Held bytes are dropped. */
  reset(): void {
    this.inConnection = false;
    this.remaining = 0;
    this.headLength = 0;
    this.headIsPreface = true;
  }

  push(chunk: Buffer): InboundEvent[] {
    const sink = new EventSink();
    this.feed(chunk, sink);
    sink.flush();
    return sink.events;
  }

  private feed(chunk: Buffer, sink: EventSink): void {
    let i = 0;
    while (i < chunk.length) {
      if (!this.inConnection) {
        i = this.scan(chunk, i, sink);
      } else if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - i);
        sink.bytes(chunk.subarray(i, i + n));
        this.remaining -= n;
        i += n;
      } else {
        this.atBoundary(chunk[i++]!, sink);
      }
    }
  }

  /** One byte at a frame boundary or inside a frame header. */
  private atBoundary(byte: number, sink: EventSink): void {
    const at = this.headLength;
    this.head[this.headLength++] = byte;
    if (this.headIsPreface && byte !== CLIENT_PREFACE[at]) this.headIsPreface = false;
    if (this.headIsPreface) {
      if (this.headLength === CLIENT_PREFACE.length) this.startConnection(sink);
      return;
    }
    if (this.headLength < FRAME_HEADER_LENGTH) return;
    // A frame header (possibly followed by a few bytes held while they looked like a preface).
    const header = parseFrameHeader(this.head);
    const extra = Buffer.from(this.head.subarray(FRAME_HEADER_LENGTH, this.headLength));
    sink.bytes(Buffer.from(this.head.subarray(0, FRAME_HEADER_LENGTH)));
    this.headLength = 0;
    this.headIsPreface = true;
    this.remaining = header.length;
    if (header.type === FrameType.GOAWAY && header.streamId === 0) sink.event({ kind: 'goaway', header });
    if (extra.length > 0) this.feed(extra, sink);
  }

  /** Outside a connection: find a preface from chunk[i]; returns where to continue. */
  private scan(chunk: Buffer, i: number, sink: EventSink): number {
    // Continue a partial match carried over from the previous chunk, byte by byte.
    while (this.headLength > 0 && i < chunk.length) {
      this.head[this.headLength++] = chunk[i++]!;
      // Keep the longest suffix of what is held that is still a prefix of the preface.
      let drop = 0;
      while (drop < this.headLength && this.head.compare(CLIENT_PREFACE, 0, this.headLength - drop, drop, this.headLength) !== 0) drop++;
      if (drop > 0) {
        sink.discard(drop);
        this.head.copy(this.head, 0, drop, this.headLength);
        this.headLength -= drop;
      }
      if (this.headLength === CLIENT_PREFACE.length) {
        this.startConnection(sink);
        return i;
      }
    }
    if (i >= chunk.length) return i;
    const at = chunk.indexOf(CLIENT_PREFACE, i);
    if (at >= 0) {
      sink.discard(at - i);
      sink.event({ kind: 'preface' });
      sink.bytes(chunk.subarray(at, at + CLIENT_PREFACE.length));
      this.inConnection = true;
      this.remaining = 0;
      this.headLength = 0;
      this.headIsPreface = true;
      return at + CLIENT_PREFACE.length;
    }
    const keep = prefacePrefixSuffix(chunk, i);
    sink.discard(chunk.length - i - keep);
    chunk.copy(this.head, 0, chunk.length - keep);
    this.headLength = keep;
    return chunk.length;
  }

  /** head holds a whole preface. */
  private startConnection(sink: EventSink): void {
    sink.event({ kind: 'preface' });
    sink.bytes(Buffer.from(CLIENT_PREFACE));
    this.inConnection = true;
    this.remaining = 0;
    this.headLength = 0;
    this.headIsPreface = true;
  }
}

/**
 * Follows the guest -> host byte stream of ONE connection (the server side
 * sends no preface string: it starts with its SETTINGS frame) and drops the
 * GOAWAY frames it writes once `dropGoaway` is set (the peer said goodbye
 * first; a late GOAWAY would otherwise reach whichever host connects next and
 * make it fail with a protocol error). Everything else passes unchanged.
 * A frame header split across chunks is held back until it is complete.
 */
export class OutboundFilter {
  /** Set when the peer has sent GOAWAY: our own GOAWAY frames are dropped from then on. */
  dropGoaway = false;
  /** GOAWAY frames dropped so far. */
  droppedFrames = 0;
  private remaining = 0;
  private dropping = false;
  private readonly head = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headLength = 0;

  /** The parts of chunk to send, in order (empty if all of it is dropped). */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let runStart = 0; // start of a run of chunk bytes passed through unchanged
    let i = 0;
    const endRun = (to: number) => {
      if (to > runStart) out.push(chunk.subarray(runStart, to));
    };
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - i);
        if (this.dropping) {
          endRun(i);
          runStart = i + n;
        }
        this.remaining -= n;
        i += n;
        continue;
      }
      // Header bytes are collected in `head` (a header may span chunks) and sent
      // from there once complete, unless the frame is dropped.
      endRun(i);
      const n = Math.min(FRAME_HEADER_LENGTH - this.headLength, chunk.length - i);
      chunk.copy(this.head, this.headLength, i, i + n);
      this.headLength += n;
      i += n;
      runStart = i;
      if (this.headLength < FRAME_HEADER_LENGTH) break; // rest of the header in a later chunk
      const header = parseFrameHeader(this.head);
      this.headLength = 0;
      this.remaining = header.length;
      this.dropping = this.dropGoaway && header.type === FrameType.GOAWAY;
      if (this.dropping) this.droppedFrames++;
      else out.push(Buffer.from(this.head));
    }
    endRun(chunk.length);
    return out;
  }
}
