import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import protobuf from 'protobufjs';
import { AgentV1Service, DiscoveryService } from '../../protocol';
import { malformedReason, refuseMalformedRequests, requestTypeOf, strictDecodingServer, withStrictDecoding } from './decoding';

/** The service definitions @grpc/reflection registers, recorded on a stand-in server. */
function reflectionServices(): grpc.ServiceDefinition[] {
  const recorded: grpc.ServiceDefinition[] = [];
  new ReflectionService({}).addToServer({ addService: (s) => recorded.push(s) });
  return recorded;
}

const SERVED: Array<[string, grpc.ServiceDefinition]> = [
  ['agent.Discovery', DiscoveryService.service],
  ['agent.v1.AgentService', AgentV1Service.service],
  ['grpc.health.v1.Health', healthService as unknown as grpc.ServiceDefinition],
  ...reflectionServices().map((s): [string, grpc.ServiceDefinition] => [Object.values(s)[0]!.path.split('/')[1]!, s]),
];

/** A value for every field (two for repeated ones and maps), a few levels deep. */
function fill(type: protobuf.Type, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    field.resolve();
    const r = field.resolvedType;
    const one = (i: number): unknown => {
      if (r instanceof protobuf.Type) return depth < 3 ? fill(r, depth + 1) : {};
      if (r instanceof protobuf.Enum) return Object.values(r.values).at(-1);
      if (field.type === 'string') return `välue ${i}`;
      if (field.type === 'bytes') return Buffer.from([i, 0xff]);
      if (field.type === 'bool') return true;
      return 7 + i;
    };
    if (field instanceof protobuf.MapField) out[field.name] = { a: one(0), b: one(1) };
    else out[field.name] = field.repeated ? [one(0), one(1)] : one(0);
  }
  return out;
}

describe('strict decoding of every served method', () => {
  it('finds the request type of every method of every service the agent serves, from its own descriptors', () => {
    assert.deepEqual(SERVED.map(([name]) => name).sort(), [
      'agent.Discovery', 'agent.v1.AgentService', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]);
    for (const [, service] of SERVED) {
      for (const method of Object.values(service)) assert.ok(requestTypeOf(method) instanceof protobuf.Type, method.path);
    }
    assert.equal(requestTypeOf(AgentV1Service.service.CreateContainer as grpc.MethodDefinition<unknown, unknown>).fullName, '.agent.v1.CreateContainerRequest');
    assert.equal(requestTypeOf(healthService.Check as unknown as grpc.MethodDefinition<unknown, unknown>).fullName, '.grpc.health.v1.HealthCheckRequest');
  });

  it('decodes valid requests exactly as the unwrapped decoder does', () => {
    let methods = 0;
    for (const [, service] of SERVED) {
      const strict = withStrictDecoding(service);
      for (const [name, method] of Object.entries(service)) {
        const type = requestTypeOf(method);
        for (const bytes of [Buffer.from(type.encode(type.fromObject(fill(type))).finish()), Buffer.alloc(0)]) {
          const decoded = strict[name]!.requestDeserialize(bytes);
          assert.equal(malformedReason(decoded), null, `${method.path}: ${malformedReason(decoded)}`);
          assert.deepEqual(decoded, method.requestDeserialize(bytes), method.path);
        }
        methods++;
      }
    }
    assert.ok(methods > 35);
  });

  it('turns what protobufjs lets through (a cut-short string, a wrong wire type) into a marker naming method, type and field', () => {
    const create = AgentV1Service.service.CreateContainer!;
    const truncated = Buffer.from([0x0a, 0x64, 0x41, 0x42]);
    // The hole: protobufjs decodes these without complaint.
    assert.equal((create.requestDeserialize(truncated) as { container_id: string }).container_id, 'AB');
    assert.equal((create.requestDeserialize(Buffer.from([0x08, 0x05])) as { container_id: string }).container_id, '');
    const strict = withStrictDecoding(AgentV1Service.service);
    assert.equal(
      malformedReason(strict.CreateContainer!.requestDeserialize(truncated)),
      'the CreateContainer request is not a valid protobuf message: field 1 (container_id: string) of agent.v1.CreateContainerRequest ' +
        'at offset 0: length 100 runs past the end of the enclosing message (2 bytes left)',
    );
    assert.match(String(malformedReason(strict.CreateContainer!.requestDeserialize(Buffer.from([0x08, 0x05])))), /wire type 0 \(varint\)/);
    // Every method of every served service, the libraries' too.
    for (const [, service] of SERVED) {
      const wrapped = withStrictDecoding(service);
      for (const [name, method] of Object.entries(wrapped)) {
        const reason = malformedReason(method.requestDeserialize(Buffer.from([0x0e])));
        assert.match(String(reason), new RegExp(`^the ${name} request is not a valid protobuf message: field 1 .* of ${requestTypeOf(method).fullName.slice(1).replace(/\./g, '\\.')} at offset 0: invalid wire type 6`));
      }
    }
    // grpc.health.v1 has the same hole: a cut-short service name is read as "".
    assert.deepEqual(healthService.Check.requestDeserialize(Buffer.from([0x0a, 0x64])), { service: '' });
  });
});

describe('the interceptor in a real server', () => {
  let dir: string;
  let server: grpc.Server;
  let client: grpc.Client;
  const handled: string[] = [];
  const refusals: Array<[string, string]> = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strict-decoding-'));
    server = new grpc.Server({ interceptors: [refuseMalformedRequests((p, d) => refusals.push([p, d]))] });
    server.addService(withStrictDecoding(AgentV1Service.service), {
      CreateContainer: (call: grpc.ServerUnaryCall<{ container_id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        handled.push(`CreateContainer ${call.request.container_id}`);
        cb(null, {});
      },
    });
    const strict = strictDecodingServer(server);
    new HealthImplementation({ '': 'SERVING' }).addToServer(strict as grpc.Server);
    new ReflectionService({}).addToServer(strict);
    const sock = path.join(dir, 's.sock');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client?.close();
    server?.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const unary = (p: string, bytes: Buffer) =>
    new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) =>
      client.makeUnaryRequest(p, (b: Buffer) => b, (b: Buffer) => b, bytes, (err, res) => resolve({ err, res })),
    );

  it('answers INVALID_ARGUMENT and never calls the handler', async () => {
    const { err } = await unary('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0a, 0x64, 0x41, 0x42]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /CreateContainer request is not a valid protobuf message: field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset 0: length 100/);
    assert.deepEqual(handled, []);
    assert.deepEqual(refusals.map(([p]) => p), ['/agent.v1.AgentService/CreateContainer']);
    // A valid request, and one with a field from the future, still reach it.
    assert.equal((await unary('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0a, 0x02, 0x41, 0x42]))).err, null);
    assert.equal((await unary('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0a, 0x01, 0x43, 0xf8, 0x06, 0x01]))).err, null);
    assert.deepEqual(handled, ['CreateContainer AB', 'CreateContainer C']);
  });

  it('covers grpc.health.v1 Check (today a cut-short name reads as "", which is SERVING)', async () => {
    const healthy = await unary('/grpc.health.v1.Health/Check', Buffer.alloc(0));
    assert.equal(healthy.err, null);
    const { err } = await unary('/grpc.health.v1.Health/Check', Buffer.from([0x0a, 0x64]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /Check request is not a valid protobuf message: field 1 \(service: string\) of grpc\.health\.v1\.HealthCheckRequest at offset 0: length 100/);
  });

  it('covers a streaming request: the reflection stream ends with INVALID_ARGUMENT at the first bad message', async () => {
    const call = client.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', (b: Buffer) => b, (b: Buffer) => b);
    const answers: Buffer[] = [];
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('data', (b: Buffer) => answers.push(b));
    call.on('error', () => undefined);
    call.write(Buffer.from([0x3a, 0x00])); // list_services = "": a valid request
    call.write(Buffer.from([0x3a, 0x05, 0x61])); // list_services cut short
    const { code, details } = await status;
    assert.equal(code, grpc.status.INVALID_ARGUMENT);
    assert.match(details, /ServerReflectionInfo request is not a valid protobuf message: field 7 \(listServices: string\) of grpc\.reflection\.v1\.ServerReflectionRequest/);
    assert.equal(answers.length, 1, 'the valid request was answered');
  });
});
