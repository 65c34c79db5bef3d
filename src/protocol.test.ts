// protocol.ts makes the service definitions itself (without proto-loader's
// descriptors up front): they must be what proto-loader would have made.
// Run: node --import tsx --test src/protocol.test.ts
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { AgentV1Service, AgentV2Service, DiscoveryService, packageDefinition } from './protocol';

const ours: Array<[string, grpc.ServiceDefinition]> = [
  ['agent.Discovery', DiscoveryService.service],
  ['agent.v1.AgentService', AgentV1Service.service],
  ['agent.v2.AgentService', AgentV2Service.service],
];

it("every method is proto-loader's: path, streaming, alias, and the same bytes and objects through its (de)serializers", () => {
  const full = packageDefinition();
  for (const [name, service] of ours) {
    const theirs = full[name] as grpc.ServiceDefinition;
    assert.deepEqual(Object.keys(service).sort(), Object.keys(theirs).sort(), name);
    for (const [method, m] of Object.entries(service)) {
      const t = theirs[method]!;
      const where = `${name}/${method}`;
      assert.equal(m.path, t.path, where);
      assert.equal(m.requestStream, t.requestStream, where);
      assert.equal(m.responseStream, t.responseStream, where);
      assert.equal(m.originalName, t.originalName, where);
      // Defaults filled in, enums as names, longs as numbers: the empty message shows all of it.
      assert.deepEqual(m.requestDeserialize(Buffer.alloc(0)), t.requestDeserialize(Buffer.alloc(0)), where);
      assert.deepEqual(m.responseDeserialize(Buffer.alloc(0)), t.responseDeserialize(Buffer.alloc(0)), where);
      const sample = t.responseDeserialize(Buffer.alloc(0)) as object;
      assert.deepEqual(m.responseSerialize(sample), t.responseSerialize(sample), where);
      assert.deepEqual((m as unknown as { requestType: { fileDescriptorProtos: Buffer[] } }).requestType.fileDescriptorProtos,
        (t as unknown as { requestType: { fileDescriptorProtos: Buffer[] } }).requestType.fileDescriptorProtos, where);
    }
  }
});
