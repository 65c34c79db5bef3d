// grpc.health.v1 and server reflection are served by the *bundled* agent,
// whose third-party .proto files are embedded (build/bundle.mjs). Reflection
// lists and describes every service served, in descriptors that a strict
// descriptor pool (Debian's python3-protobuf, C++/upb) accepts.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { REPO, startAgent, type TestAgent } from '../helpers/agent-process';

const load = (file: string, includeDir: string) =>
  grpc.loadPackageDefinition(protoLoader.loadSync(file, { includeDirs: [includeDir], keepCase: true, defaults: true, enums: String, oneofs: true })) as any;

describe('health and reflection', () => {
  let agent: TestAgent;
  let target: string;
  before(async () => {
    agent = await startAgent();
    target = `unix:${agent.addr.slice('unix://'.length)}`;
  });
  after(async () => agent?.stop());

  it('answers grpc.health.v1 Check for the agent services', async () => {
    const health = load('health/v1/health.proto', path.join(REPO, 'node_modules/grpc-health-check/proto'));
    const client = new health.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
    for (const service of ['', 'agent.Discovery', 'agent.v1.AgentService', 'agent.v2.AgentService']) {
      const res = await new Promise<any>((resolve, reject) =>
        client.Check({ service }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))),
      );
      assert.equal(res.status, 'SERVING');
    }
    client.close();
  });

  const REFLECTION_PROTOS = path.join(REPO, 'node_modules/@grpc/reflection/build/proto');
  /** One request on a fresh ServerReflectionInfo stream of the given reflection version; its one answer. */
  const reflect = (version: 'v1' | 'v1alpha', req: object) => {
    const refl = load(`grpc/reflection/${version}/reflection.proto`, REFLECTION_PROTOS);
    const client = new refl.grpc.reflection[version].ServerReflection(target, grpc.credentials.createInsecure());
    return new Promise<any>((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.on('data', (d: unknown) => {
        resolve(d);
        call.end();
      });
      call.on('error', reject);
      call.write(req);
    }).finally(() => client.close());
  };
  const decodeFiles = (res: any): IFileDescriptorProto[] => {
    assert.ok(!res.error_response, JSON.stringify(res.error_response));
    return res.file_descriptor_response.file_descriptor_proto.map((b: Buffer) => FileDescriptorProto.decode(b) as unknown as IFileDescriptorProto);
  };

  const SERVED = [
    'agent.Discovery', 'agent.v1.AgentService', 'agent.v2.AgentService', 'grpc.health.v1.Health',
    'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection',
  ];

  for (const version of ['v1', 'v1alpha'] as const) {
    it(`lists every service served through reflection ${version}`, async () => {
      const listed = await reflect(version, { list_services: '*' });
      const names = listed.list_services_response.service.map((s: { name: string }) => s.name).sort();
      assert.deepEqual(names, [...SERVED].sort());
    });
  }

  it('describes a message of the agent protocol', async () => {
    const [file] = decodeFiles(await reflect('v1', { file_containing_symbol: 'agent.v1.CreateContainerRequest' }));
    assert.equal(file!.package, 'agent.v1');
    assert.ok(file!.messageType!.some((m) => m.name === 'CreateContainerRequest'));
  });

  it('describes grpc.health.v1.Health: its file, methods and messages', async () => {
    const [file, ...deps] = decodeFiles(await reflect('v1', { file_containing_symbol: 'grpc.health.v1.Health' }));
    assert.equal(deps.length, 0);
    assert.equal(file!.name, 'grpc/health/v1/health.proto');
    assert.equal(file!.package, 'grpc.health.v1');
    const health = file!.service!.find((s) => s.name === 'Health');
    assert.ok(health, 'service Health in the file');
    const methods = Object.fromEntries(health.method!.map((m) => [m.name, m]));
    assert.equal(methods.Check?.inputType, '.grpc.health.v1.HealthCheckRequest');
    assert.equal(methods.Check?.outputType, '.grpc.health.v1.HealthCheckResponse');
    assert.equal(methods.Watch?.serverStreaming, true);
    const request = file!.messageType!.find((m) => m.name === 'HealthCheckRequest');
    assert.deepEqual(request?.field?.map((f) => f.name), ['service']);
    // The same file is found by its name, and by the symbol through v1alpha.
    assert.equal(decodeFiles(await reflect('v1', { file_by_filename: 'grpc/health/v1/health.proto' }))[0]!.name, file!.name);
    assert.equal(decodeFiles(await reflect('v1alpha', { file_containing_symbol: 'grpc.health.v1.Health.Check' }))[0]!.name, file!.name);
  });

  for (const version of ['v1', 'v1alpha'] as const) {
    it(`describes grpc.reflection.${version}.ServerReflection with the field names of its .proto`, async () => {
      const [file] = decodeFiles(await reflect('v1', { file_containing_symbol: `grpc.reflection.${version}.ServerReflection` }));
      assert.equal(file!.name, `grpc/reflection/${version}/reflection.proto`);
      assert.ok(file!.service!.some((s) => s.name === 'ServerReflection'));
      // Compare every message with the .proto as written (fields and oneofs in snake_case).
      const root = new protobuf.Root().loadSync(path.join(REFLECTION_PROTOS, `grpc/reflection/${version}/reflection.proto`), { keepCase: true });
      const ns = root.lookup(`grpc.reflection.${version}`) as protobuf.Namespace;
      const types = ns.nestedArray.filter((t): t is protobuf.Type => t instanceof protobuf.Type);
      assert.deepEqual(file!.messageType!.map((m) => m.name).sort(), types.map((t) => t.name).sort());
      for (const type of types) {
        const served = file!.messageType!.find((m) => m.name === type.name)!;
        assert.deepEqual(served.field!.map((f) => [f.name, f.number]), type.fieldsArray.map((f) => [f.name, f.id]), type.name);
        assert.deepEqual((served.oneofDecl ?? []).map((o) => o.name), type.oneofsArray.map((o) => o.name), type.name);
      }
    });
  }

  it('names map entries <Field>Entry, as protobuf requires', async () => {
    const entries = async (symbol: string, message: string) => {
      const [file] = decodeFiles(await reflect('v1', { file_containing_symbol: symbol }));
      const type = file!.messageType!.find((m) => m.name === message)!;
      return { nested: type.nestedType!.map((t) => t.name), refs: type.field!.filter((f) => f.label === 3 && f.typeName).map((f) => f.typeName) };
    };
    assert.deepEqual(await entries('agent.Discovery', 'NegotiateResponse'), { nested: ['LimitsEntry'], refs: ['LimitsEntry'] });
    assert.deepEqual(await entries('grpc.health.v1.Health', 'HealthListResponse'), { nested: ['StatusesEntry'], refs: ['StatusesEntry'] });
  });

  const PYTHON = '/usr/bin/python3';
  const PROTOC = '/usr/bin/protoc';
  const GRPC_PLUGIN = '/usr/bin/grpc_python_plugin';
  const pythonMissing = (() => {
    for (const f of [PYTHON, PROTOC, GRPC_PLUGIN]) if (!fs.existsSync(f)) return `${f} is missing`;
    const r = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
    return r.status === 0 ? false : 'python3-grpcio or python3-protobuf is missing';
  })();

  it('a Python grpcio reflection client lists every service and loads each into a strict descriptor pool', { skip: pythonMissing }, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reflection-py-'));
    try {
      // Stubs under a name of their own: grpc/reflection/v1/reflection_pb2.py would shadow the grpc package.
      fs.copyFileSync(path.join(REFLECTION_PROTOS, 'grpc/reflection/v1/reflection.proto'), path.join(tmp, 'reflection_v1.proto'));
      const gen = spawnSync(PROTOC, ['-I', tmp, `--python_out=${tmp}`, `--plugin=protoc-gen-grpc_python=${GRPC_PLUGIN}`, `--grpc_python_out=${tmp}`, 'reflection_v1.proto'], { encoding: 'utf8' });
      assert.equal(gen.status, 0, gen.stderr);
      fs.writeFileSync(path.join(tmp, 'check.py'), PYTHON_CHECK);
      const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(PYTHON, [path.join(tmp, 'check.py'), agent.addr], { cwd: tmp, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.once('error', reject);
        child.once('close', (status) => {
          clearTimeout(timer);
          resolve({ status, stdout, stderr });
        });
      });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const out = JSON.parse(r.stdout) as { services: Record<string, { file: string; methods: string[] }>; errors: string[] };
      assert.deepEqual(out.errors, []);
      assert.deepEqual(Object.keys(out.services).sort(), [...SERVED].sort());
      assert.equal(out.services['grpc.health.v1.Health']!.file, 'grpc/health/v1/health.proto');
      assert.ok(out.services['grpc.health.v1.Health']!.methods.includes('Check(grpc.health.v1.HealthCheckRequest)'));
      assert.ok(out.services['agent.v1.AgentService']!.methods.includes('CreateContainer(agent.v1.CreateContainerRequest)'));
      assert.ok(out.services['agent.v2.AgentService']!.methods.includes('ReadOutput(agent.v2.ReadOutputRequest)'));
      assert.ok(out.services['agent.Discovery']!.methods.includes('Negotiate(agent.NegotiateRequest)'));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

// Lists the services through grpc.reflection.v1 and adds each one's files
// (dependencies first) to a fresh descriptor pool, which validates them.
const PYTHON_CHECK = `
import json, sys
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
import reflection_v1_pb2 as pb, reflection_v1_pb2_grpc as rpc

stub = rpc.ServerReflectionStub(grpc.insecure_channel(sys.argv[1]))
def ask(**request):
    answer = next(stub.ServerReflectionInfo(iter([pb.ServerReflectionRequest(**request)]), timeout=10))
    if answer.HasField('error_response'):
        raise SystemExit(f'{request}: {answer.error_response}')
    return answer

pool = descriptor_pool.DescriptorPool()
out = {'services': {}, 'errors': []}
for service in ask(list_services='*').list_services_response.service:
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in ask(file_containing_symbol=service.name).file_descriptor_response.file_descriptor_proto]
    for file in reversed(files):
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            try:
                pool.Add(file)
            except Exception as e:
                out['errors'].append(f'{file.name}: {e}')
    try:
        d = pool.FindServiceByName(service.name)
        out['services'][service.name] = {'file': d.file.name, 'methods': [f'{m.name}({m.input_type.full_name})' for m in d.methods]}
    except KeyError as e:
        out['errors'].append(f'{service.name}: {e}')
print(json.dumps(out))
`;
