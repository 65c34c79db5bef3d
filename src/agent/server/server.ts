// The gRPC server: agent.Discovery, every protocol version's AgentService,
// grpc.health.v1 and server reflection, served on every listener of its
// ListenerSet (listeners.ts: each opens, fails and retries on its own).
import * as grpc from '@grpc/grpc-js';
import { discoveryHandlers } from '../../handlers/discovery';
import { v1Handlers } from '../../handlers/v1';
import { v2Handlers } from '../../handlers/v2';
import { AgentV1Service, AgentV2Service, DiscoveryService, packageDefinition } from '../../protocol';
import type { AgentCore } from '../core';
import type { Logger } from '../log';
import { refuseMalformedRequests, strictDecodingServer, withStrictDecoding } from './decoding';
import { ListenerSet } from './listeners';
import { Health } from './health';
import { addReflection } from './reflection';
import { AgentError } from '../errors';
import { RpcBoundary } from './rpc';
import type { RpcMetrics } from './rpc-metrics';
import { capStatusMessages } from './status-text';

export interface AgentServer {
  server: grpc.Server;
  health: Health;
  /** Where the server listens; add() more at any time. */
  listeners: ListenerSet;
  /**
   * Stops accepting on every listener, then lets calls in flight finish
   * (grpc.Server.tryShutdown); `done` runs once they have.
   */
  shutdown(done: () => void): void;
  /** Ends every stream being served with UNAVAILABLE (see RpcBoundary.endStreams): before an exec in place. */
  endStreams(why: string): void;
}

export function createServer(core: AgentCore, metrics: RpcMetrics, log: Logger): AgentServer {
  const limit = core.config.maxMessageBytes;
  // v1 and Discovery answer plain statuses; v2's contract is a machine-readable
  // reason with every failure (google.rpc.Status in grpc-status-details-bin).
  const rpc = new RpcBoundary(log, metrics, core.policy, { booted: core.booted });
  const rpcV2 = new RpcBoundary(log, metrics, core.policy, { statusDetails: true, booted: core.booted });
  const paths = (s: grpc.ServiceDefinition) => Object.values(s).map((m) => m.path);
  // Calls to our own services are counted for GetMetrics, refused ones too.
  const counted = new Set([DiscoveryService.service, AgentV1Service.service, AgentV2Service.service].flatMap(paths));
  const v2Paths = new Set(paths(AgentV2Service.service));
  // Every request of every service is checked strictly as it is decoded
  // (decoding.ts); the second interceptor answers a malformed one with
  // INVALID_ARGUMENT before any handler runs. The first, the innermost, caps
  // every status message the server sends (status-text.ts).
  const server = new grpc.Server({
    'grpc.max_receive_message_length': limit,
    'grpc.max_send_message_length': limit,
    interceptors: [
      capStatusMessages(),
      refuseMalformedRequests((path, details) => (v2Paths.has(path) ? rpcV2 : rpc).refused(path, details, counted.has(path))),
    ],
  });
  server.addService(withStrictDecoding(DiscoveryService.service), discoveryHandlers(core, rpc));
  server.addService(withStrictDecoding(AgentV1Service.service), v1Handlers(core, rpc));
  server.addService(withStrictDecoding(AgentV2Service.service), v2Handlers(core, rpcV2));

  // Health and reflection register their own services: through a stand-in
  // that wraps their decoders the same way.
  const strict = strictDecodingServer(server);
  const health = new Health({
    '': 'SERVING', 'agent.Discovery': 'SERVING', 'agent.v1.AgentService': 'SERVING', 'agent.v2.AgentService': 'SERVING',
  });
  health.addToServer(strict);
  addReflection(server, packageDefinition, strictDecodingServer);

  const listeners = new ListenerSet(server, log.child({ module: 'listeners' }));
  return {
    server,
    health,
    listeners,
    endStreams(why) {
      for (const boundary of [rpc, rpcV2]) boundary.endStreams(new AgentError('unavailable', why, { reason: 'AGENT_UPGRADING' }));
    },
    shutdown(done) {
      // Stop accepting first, release only once the answers in flight have left.
      listeners.stopAccepting();
      server.tryShutdown(() => {
        listeners.close();
        done();
      });
    },
  };
}
