// The agent policy through the bundled agent: a policy file given with
// --policy is reported by Negotiate and enforced at the RPC boundary
// (PERMISSION_DENIED naming the rule); a broken one stops an ordinary process
// with the reason. The policy's argument rules: test/integration/spec-checks.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AGENT_BUNDLE, startAgent, type TestAgent } from '../helpers/agent-process';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'policy-test-'));
const agents: TestAgent[] = [];
after(async () => {
  for (const a of agents) await a.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function policyFile(name: string, content: unknown): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const denied = (rule: RegExp) => (err: grpc.ServiceError) => {
  assert.equal(err.code, grpc.status.PERMISSION_DENIED, err.details);
  assert.match(err.details, rule);
  return true;
};

describe('agent policy', () => {
  it('is reported by Negotiate and denies the RPCs it names, per protocol version', async () => {
    const file = policyFile('deny-clock.json', {
      format: 1,
      rpcs: {
        default: 'allow',
        rules: [
          { protocols: ['v1'], methods: ['SetGuestDateTime', 'ReseedRandomDev'], action: 'deny', why: 'the image owns the clock and entropy' },
          { protocols: ['v2'], methods: ['*'], action: 'deny' },
        ],
      },
    });
    const agent = await startAgent({ args: ['--policy', file] });
    agents.push(agent);
    const client = await agent.connect();
    try {
      const digest = `sha256:${crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
      assert.deepEqual(client.agent.policy, { loaded: true, digest, source: file, error: '' });
      assert.ok(client.agent.capabilities.includes('feature:policy'));
      await assert.rejects(client.v1('SetGuestDateTime', { sec: 1, usec: 0 }),
        denied(/v1 SetGuestDateTime is denied by the agent policy \(.*deny-clock\.json, rule rpcs\.rules\[0\]: the image owns the clock and entropy\)/));
      await assert.rejects(client.v1('ReseedRandomDev', { data: Buffer.from('x') }), denied(/rules\[0\]/));
      // Not named: allowed (and this one answers normally).
      assert.ok((await client.v1('ListInterfaces', {})).interfaces.length > 0);
      assert.ok(agent.alive());
      const line = agent.logs().find((l) => l.msg === 'failed' && l.rpc === 'SetGuestDateTime');
      assert.equal(line?.code, 'PERMISSION_DENIED');
    } finally {
      client.close();
    }
  });

  it('copy_file.paths narrows where CopyFile may write inside the shared dir', async () => {
    // A shared dir of the test's own, so that the rule can name a directory inside it.
    const shared = fs.realpathSync(fs.mkdtempSync(path.join(tmp, 'shared-')));
    const file = policyFile('copy.json', { format: 1, copy_file: { paths: [path.join(shared, 'etc')] } });
    const agent = await startAgent({ args: ['--policy', file, '--shared-dir', shared] });
    agents.push(agent);
    const client = await agent.connect();
    try {
      const chunk = (p: string) => ({ path: p, file_size: 3, file_mode: 0o644, dir_mode: 0o755, uid: 0, gid: 0, offset: 0, data: Buffer.from('abc') });
      await client.v1('CopyFile', chunk(path.join(shared, 'etc', 'hosts')));
      assert.equal(fs.readFileSync(path.join(shared, 'etc', 'hosts'), 'utf8'), 'abc');
      await assert.rejects(client.v1('CopyFile', chunk(path.join(shared, 'elsewhere'))), denied(/CopyFile to .*elsewhere.* rule copy_file\.paths/));
      assert.equal(fs.existsSync(path.join(shared, 'elsewhere')), false);
    } finally {
      client.close();
    }
  });

  it('without --policy and without the image\'s file, no policy is loaded', async () => {
    const agent = await startAgent();
    agents.push(agent);
    const client = await agent.connect();
    try {
      assert.deepEqual(client.agent.policy, { loaded: false, digest: '', source: 'none', error: '' });
    } finally {
      client.close();
    }
  });

  it('a broken or missing policy file stops an ordinary agent with the reason (exit 2)', () => {
    for (const [file, reason] of [
      [policyFile('typo.json', { format: 1, rpcz: {} }), /top level has unknown key "rpcz"/],
      [policyFile('bad.json', '{"format":1,'), /is not valid JSON/],
      [path.join(tmp, 'absent.json'), /cannot read the policy file/],
    ] as const) {
      const r = spawnSync(process.execPath, [AGENT_BUNDLE, '--server-addr', `unix://${path.join(tmp, 'x.sock')}`, '--state-dir', path.join(tmp, 's'),
        '--shared-dir', path.join(tmp, 'sh'), '--policy', file], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, reason);
    }
  });
});
