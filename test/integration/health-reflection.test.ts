// grpc.health.v1 and server reflection are served by the *bundled* agent,
// whose third-party .proto files are embedded (build/bundle.mjs).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
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
    for (const service of ['', 'agent.v1.AgentService']) {
      const res = await new Promise<any>((resolve, reject) =>
        client.Check({ service }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))),
      );
      assert.equal(res.status, 'SERVING');
    }
    client.close();
  });

  it('lists the agent services through reflection and describes a message', async () => {
    const refl = load('grpc/reflection/v1/reflection.proto', path.join(REPO, 'node_modules/@grpc/reflection/build/proto'));
    const client = new refl.grpc.reflection.v1.ServerReflection(target, grpc.credentials.createInsecure());
    const ask = (req: object) =>
      new Promise<any>((resolve, reject) => {
        const call = client.ServerReflectionInfo();
        call.on('data', (d: unknown) => {
          resolve(d);
          call.end();
        });
        call.on('error', reject);
        call.write(req);
      });
    const listed = await ask({ list_services: '*' });
    const names = listed.list_services_response.service.map((s: { name: string }) => s.name);
    for (const n of ['agent.Discovery', 'agent.v1.AgentService']) assert.ok(names.includes(n), `${n} in ${names}`);
    const file = await ask({ file_containing_symbol: 'agent.v1.CreateContainerRequest' });
    assert.ok(file.file_descriptor_response.file_descriptor_proto.length > 0);
    client.close();
  });
});
