// v2 WatchEvents: the core's event bus from a cursor, as a stream.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { eventToV2 } from './conversions';

export function eventHandlers(core: AgentCore, rpc: RpcBoundary) {
  return {
    /**
     * Every event after after_seq (from_now: after the newest one), in
     * order, then each as it happens, until the client cancels. Each is sent
     * once the previous one was taken. A cursor the bus no longer holds (or
     * never did) is OUT_OF_RANGE naming the oldest seq held (the error's
     * metadata: oldest_seq, last_seq), before anything is sent; a client too
     * slow to keep up with the bus's window gets the same error mid-stream.
     */
    WatchEvents: rpc.serverStream(async (req, ctx, send) => {
      const after = req.from_now ? core.events.lastSeq : req.after_seq;
      const events = core.events.watch(after, ctx.signal);
      try {
        for await (const item of events) await send(eventToV2(item));
      } catch (err) {
        if (ctx.signal.aborted) return;
        throw err;
      }
    }),
  } satisfies Pick<AgentV2Handlers, 'WatchEvents'>;
}
