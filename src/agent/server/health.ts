// grpc.health.v1.Health (Check, Watch, List), as grpc-health-check serves it,
// without loading that package at start-up: it parses its .proto file when
// required, which costs a fifth of the agent's start-up (bench/footprint.ts).
// The messages are defined here as protobufjs JSON; server reflection still
// describes the service from grpc-health-check's own files (reflection.ts),
// loaded on the first reflection call.
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { serviceDefinition } from '../../protocol';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const root = protobuf.Root.fromJSON(({
  nested: { grpc: { nested: { health: { nested: { v1: { nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: 'ServingStatus', id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
    HealthListRequest: { fields: {} },
    HealthListResponse: { fields: { statuses: { keyType: 'string', type: 'HealthCheckResponse', id: 1 } } },
    Health: {
      methods: {
        Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' },
        List: { requestType: 'HealthListRequest', responseType: 'HealthListResponse' },
        Watch: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse', responseStream: true },
      },
    },
  } } } } } } },
}) as unknown as protobuf.INamespace);
root.resolveAll();

export const HEALTH_SERVICE = serviceDefinition('grpc.health.v1.Health', root);

/** grpc-health-check's limit on List. */
const LIST_LIMIT = 100;

export class Health {
  private readonly statuses: Map<string, ServingStatus>;
  private readonly watchers = new Map<string, Set<(s: ServingStatus) => void>>();

  constructor(initial: Record<string, ServingStatus>) {
    this.statuses = new Map(Object.entries(initial));
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher(status);
  }

  addToServer(server: Pick<grpc.Server, 'addService'>): void {
    server.addService(HEALTH_SERVICE, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const status = this.statuses.get(call.request.service);
        if (status) callback(null, { status });
        else callback({ code: grpc.status.NOT_FOUND, details: `Health status unknown for service ${call.request.service}` });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        const service = call.request.service;
        const watcher = (status: ServingStatus) => call.write({ status });
        const set = this.watchers.get(service) ?? new Set();
        set.add(watcher);
        this.watchers.set(service, set);
        call.on('cancelled', () => set.delete(watcher));
        watcher(this.statuses.get(service) ?? 'SERVICE_UNKNOWN');
      },
      List: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
        if (this.statuses.size > LIST_LIMIT) {
          callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'Too many services to list.' });
          return;
        }
        callback(null, { statuses: Object.fromEntries([...this.statuses].map(([name, status]) => [name, { status }])) });
      },
    });
  }
}
