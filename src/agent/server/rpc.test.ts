import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentError, type ErrorKind } from '../errors';
import { silentLogger } from '../log';
import { ANSWERED_DURING_BOOT, RpcBoundary, describePath, toStatus } from './rpc';
import { unusablePolicy } from '../policy/policy';
import { RpcMetrics } from './rpc-metrics';
import { selectVersion } from './negotiate';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../../status-details';

/** A stand-in for a grpc-js unary call: just what the boundary touches. */
function fakeCall(path: string, request: unknown) {
  return { getPath: () => path, once: () => undefined, request } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
}

function invoke(handler: grpc.handleUnaryCall<unknown, unknown>, path: string, request: unknown = {}) {
  return new Promise<{ err: Partial<grpc.StatusObject> | null; res: unknown }>((resolve) =>
    handler(fakeCall(path, request), ((err: Partial<grpc.StatusObject> | null, res: unknown) => resolve({ err, res })) as grpc.sendUnaryData<unknown>),
  );
}

describe('RPC boundary', () => {
  const cases: Array<[ErrorKind, grpc.status]> = [
    ['not-found', grpc.status.NOT_FOUND],
    ['already-exists', grpc.status.ALREADY_EXISTS],
    ['invalid-argument', grpc.status.INVALID_ARGUMENT],
    ['failed-precondition', grpc.status.FAILED_PRECONDITION],
    ['resource-exhausted', grpc.status.RESOURCE_EXHAUSTED],
    ['unimplemented', grpc.status.UNIMPLEMENTED],
  ];
  for (const [kind, code] of cases) {
    it(`maps a ${kind} core error to ${grpc.status[code]}`, async () => {
      const rpc = new RpcBoundary(silentLogger, new RpcMetrics());
      const { err } = await invoke(rpc.unary(() => { throw new AgentError(kind, 'what and why'); }), '/agent.v1.AgentService/X');
      assert.equal(err?.code, code);
      assert.equal(err?.details, 'what and why');
    });
  }

  it('turns anything unexpected, thrown or rejected, into INTERNAL naming the method', async () => {
    const rpc = new RpcBoundary(silentLogger, new RpcMetrics());
    const thrown = await invoke(rpc.unary(() => { throw new TypeError('boom'); }), '/agent.v1.AgentService/Boom');
    assert.equal(thrown.err?.code, grpc.status.INTERNAL);
    assert.match(String(thrown.err?.details), /Boom failed unexpectedly: boom/);
    const rejected = await invoke(rpc.unary(() => Promise.reject('plain')), '/agent.v1.AgentService/Rej');
    assert.equal(rejected.err?.code, grpc.status.INTERNAL);
  });

  it('passes results through and counts calls per version, method and code', async () => {
    const metrics = new RpcMetrics();
    const rpc = new RpcBoundary(silentLogger, metrics);
    const ok = await invoke(rpc.unary(() => ({ a: 1 })), '/agent.v1.AgentService/Ok');
    assert.deepEqual(ok.res, { a: 1 });
    await invoke(rpc.unary(() => { throw new AgentError('not-found', 'x'); }), '/agent.v1.AgentService/Ok');
    await invoke(rpc.unary(() => ({})), '/agent.Discovery/Negotiate');
    const text = metrics.render();
    assert.match(text, /agent_rpc_calls_total\{version="v1",method="Ok",code="OK"\} 1/);
    assert.match(text, /agent_rpc_calls_total\{version="v1",method="Ok",code="NOT_FOUND"\} 1/);
    assert.match(text, /version="stable",method="Negotiate"/);
  });

  it('holds a call until the first-boot work is done, except the few that touch no device; a refused call is refused at once', async () => {
    let done!: () => void;
    const booted = new Promise<void>((r) => (done = r));
    const rpc = new RpcBoundary(silentLogger, new RpcMetrics(), unusablePolicy('test', 'broken'), { booted });
    const open = new RpcBoundary(silentLogger, new RpcMetrics(), undefined, { booted });
    const ran: string[] = [];
    const handler = (name: string) => rpc.unary(() => void ran.push(name));
    const held = invoke(open.unary(() => void ran.push('CreateContainer')), '/agent.v1.AgentService/CreateContainer');
    const early = await invoke(open.unary(() => (ran.push('Negotiate'), {})), '/agent.Discovery/Negotiate');
    const details = await invoke(open.unary(() => (ran.push('GetGuestDetails'), {})), '/agent.v2.AgentService/GetGuestDetails');
    const refused = await invoke(handler('UpdateInterface'), '/agent.v1.AgentService/UpdateInterface');
    assert.equal(early.err, null);
    assert.equal(details.err, null);
    assert.equal(refused.err?.code, grpc.status.PERMISSION_DENIED, 'the policy answers without waiting');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(ran, ['Negotiate', 'GetGuestDetails'], 'CreateContainer waits');
    done();
    assert.equal((await held).err, null);
    assert.deepEqual(ran, ['Negotiate', 'GetGuestDetails', 'CreateContainer']);
    assert.deepEqual([...ANSWERED_DURING_BOOT].sort(), ['GetGuestDetails', 'GetMetrics', 'Negotiate']);
  });

  it('reads version and method from the call path', () => {
    assert.deepEqual(describePath('/agent.v2.AgentService/ReadOutput'), { version: 'v2', method: 'ReadOutput' });
    assert.deepEqual(describePath('/agent.Discovery/Negotiate'), { version: 'stable', method: 'Negotiate' });
    assert.equal(toStatus(new Error('x'), 'M').code, grpc.status.INTERNAL);
  });
});

describe('version negotiation', () => {
  it('picks the highest common version', () => {
    assert.equal(selectVersion(['v1', 'v2'], ['v1', 'v2']), 'v2');
    assert.equal(selectVersion(['v2', 'v1'], ['v1']), 'v1');
    assert.equal(selectVersion(['v10', 'v9'], ['v9', 'v10']), 'v10');
    assert.equal(selectVersion([], ['v1']), '');
  });
  it('fails clearly when there is none', () => {
    assert.throws(() => selectVersion(['v3'], ['v1', 'v2']), (e: unknown) =>
      e instanceof AgentError && e.kind === 'failed-precondition' && /v3/.test(e.message) && /v1, v2/.test(e.message));
  });
});

describe('RPC boundary: streams and status details', () => {
  /** A stand-in server-streaming call whose writes never leave (a client that stopped reading): no write callback, ever. */
  function stuckStream(path: string) {
    const call = new EventEmitter() as unknown as grpc.ServerWritableStream<unknown, unknown> & { ended: boolean; status?: unknown };
    Object.assign(call, {
      getPath: () => path,
      request: {},
      write: () => false,
      end: () => (call.ended = true),
    });
    call.on('error', (s: unknown) => (call.status = s));
    return call;
  }

  it('a send waiting for its message to leave settles when the client cancels: the stream function finishes', async () => {
    const rpc = new RpcBoundary(silentLogger, new RpcMetrics());
    let sendFailed: unknown;
    let finished!: () => void;
    const done = new Promise<void>((r) => (finished = r));
    const call = stuckStream('/agent.v2.AgentService/ReadOutput');
    rpc.serverStream(async (_req, _ctx, send) => {
      try {
        await send({});
      } catch (err) {
        sendFailed = err;
        throw err;
      } finally {
        finished();
      }
    }, { budget: 0, sizeOf: () => 1 })(call);
    await new Promise((r) => setImmediate(r));
    call.emit('cancelled');
    await done;
    assert.ok(sendFailed instanceof AgentError && sendFailed.kind === 'unavailable', String(sendFailed));
  });

  it('v2 statuses carry the reason and metadata in grpc-status-details-bin; v1 ones do not', async () => {
    const fail = () => { throw new AgentError('out-of-range', 'bytes before 42 were released', { metadata: { first_offset: '42' } }); };
    const v2 = new RpcBoundary(silentLogger, new RpcMetrics(), undefined, { statusDetails: true });
    const { err } = await invoke(v2.unary(fail), '/agent.v2.AgentService/X');
    assert.equal(err?.code, grpc.status.OUT_OF_RANGE);
    const bin = (err?.metadata as grpc.Metadata).get(STATUS_DETAILS_KEY)[0] as Buffer;
    assert.deepEqual(decodeStatusDetails(bin), {
      code: grpc.status.OUT_OF_RANGE, message: 'bytes before 42 were released', reason: 'OUT_OF_RANGE', domain: 'agent', metadata: { first_offset: '42' },
    });
    const v1 = new RpcBoundary(silentLogger, new RpcMetrics());
    assert.equal((await invoke(v1.unary(fail), '/agent.v1.AgentService/X')).err?.metadata, undefined);
  });
});
