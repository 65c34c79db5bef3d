// Request ids: every mutating v2 call goes through the core's one ledger
// (core/requests.ts), keyed by the client's request id, the method and the
// request's other arguments. A retry with the same id and arguments gets the
// first call's answer and acts once; the same id with other arguments (or for
// another method) is ALREADY_EXISTS, reason REQUEST_ID_REUSED. An empty id
// asks for no idempotency: the call simply runs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary, RpcContext } from '../../agent/server/rpc';
import type * as grpc from '@grpc/grpc-js';
import { argumentsOf } from './conversions';

export type Mutating = <Req extends { request_id: string }, Res>(
  method: string,
  fn: (req: Req, ctx: RpcContext) => Promise<Res> | Res,
) => grpc.handleUnaryCall<Req, Res>;

/** rpc.unary for a mutating call: `fn` runs at most once per request id. */
export function mutatingCalls(core: AgentCore, rpc: RpcBoundary): Mutating {
  return (method, fn) =>
    rpc.unary((req, ctx) => core.requests.once(req.request_id, method, argumentsOf(req), async () => fn(req, ctx)));
}
