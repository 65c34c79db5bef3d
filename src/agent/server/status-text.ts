// The last line of defence for status messages. A status message travels in
// the grpc-message trailer, and clients cap the headers they accept (grpc
// C-core: 8 KiB for all of them): a longer one reaches the client as
// RESOURCE_EXHAUSTED instead of the real status, and can spoil the next call
// on the channel. Messages quote input through errors.ts excerpt(); this cap
// holds whatever a core or library error says: toStatus (rpc.ts) applies it
// to every status of the RPC boundary, and capStatusMessages() to every
// status the server sends, health's and reflection's included.
import * as grpc from '@grpc/grpc-js';

/** Most bytes (UTF-8) of a status message. */
export const MAX_STATUS_BYTES = 1024;

/**
 * `details` fit for a status: control characters replaced (tab, CR and LF by a
 * space, the others by \uXXXX), and at most `maxBytes` bytes of UTF-8, cut at
 * a character boundary, with a note of the original size when cut.
 */
export function capStatusMessage(details: string, maxBytes = MAX_STATUS_BYTES): string {
  // Look at no more of a huge message than can be shown (6 bytes per escaped character at most).
  const head = details.length > maxBytes * 6 ? details.slice(0, maxBytes * 6) : details;
  // A lone surrogate (half of an emoji from a cut or a JSON parser's message)
  // makes grpc-js throw while encoding the trailer, and no status is sent at all.
  const clean = wellFormed(head).replace(/[\t\n\r]/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const bytes = Buffer.from(clean, 'utf8');
  if (bytes.length <= maxBytes) return clean;
  const note = `... (status message cut, ${Buffer.byteLength(wellFormed(details), 'utf8')} bytes)`;
  let end = Math.max(0, maxBytes - note.length);
  // Back off to the start of a character: never leave half of a UTF-8 sequence.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  // Nor half of an escape this function wrote.
  return bytes.subarray(0, end).toString('utf8').replace(/\\u[0-9a-f]{0,3}$/, '') + note;
}

/** `text` with every lone surrogate replaced by U+FFFD (String.prototype.toWellFormed, which ES2022 lacks). */
function wellFormed(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** A server interceptor that caps the message of every status the server sends. */
export function capStatusMessages(maxBytes = MAX_STATUS_BYTES): grpc.ServerInterceptor {
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      sendStatus: (status, next) => next(status.details ? { ...status, details: capStatusMessage(status.details, maxBytes) } : status),
    });
}
