// The version matrix (docs/compatibility.md, "Release archives and the
// version matrix"): today's protos against
// every archived release's, today's client against every archived agent, and
// every archived agentctl against today's agent.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentClient } from '../../src/client/client';
import { REPO, startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

const RELEASES = path.join(REPO, 'test/fixtures/releases');
const releases = fs.readdirSync(RELEASES).filter((v) => fs.existsSync(path.join(RELEASES, v, 'RELEASE.json'))).sort();

it('at least one release is archived', () => assert.ok(releases.length >= 1));

it('buf lint passes on today\'s protos', () => {
  execFileSync(path.join(REPO, 'node_modules/.bin/buf'), ['lint'], { cwd: REPO, stdio: 'pipe' });
});

/** A container run through `client`: proves the agent serves a real lifecycle, not just Negotiate. */
async function lifecycle(client: AgentClient, id: string): Promise<void> {
  const spec = containerSpec({ rootPath: 'busybox', args: ['sh', '-c', 'echo compat; exit 2'] });
  await client.v1('CreateContainer', { container_id: id, exec_id: id, oci_spec_json: JSON.stringify(spec) });
  await client.v1('StartContainer', { container_id: id });
  assert.equal(await readToEnd(client, id, ''), 'compat\n');
  assert.equal((await client.v1('WaitProcess', { container_id: id, exec_id: '' })).status, 2);
  await client.v1('RemoveContainer', { container_id: id });
}

for (const version of releases) {
  const dir = path.join(RELEASES, version);

  describe(`release ${version}`, () => {
    it('its protos: today\'s are wire- and JSON-compatible (buf breaking)', () => {
      execFileSync(path.join(REPO, 'node_modules/.bin/buf'), ['breaking', 'proto', '--against', path.join(dir, 'proto')], {
        cwd: REPO,
        stdio: 'pipe',
      });
    });

    describe('its agent, driven by today\'s client', () => {
      let agent: TestAgent;
      let client: AgentClient;
      before(async () => {
        agent = await startAgent({ bundle: path.join(dir, 'agent.cjs') });
        client = await agent.connect();
      });
      after(async () => {
        client?.close();
        await agent?.stop();
      });
      it('negotiates a version both speak and runs a container', async () => {
        assert.equal(client.agent.agent_version, version);
        assert.ok(client.agent.protocol_versions.includes(client.protocol));
        await lifecycle(client, 'old-agent');
      });
    });

    describe('its agentctl, against today\'s agent', () => {
      let agent: TestAgent;
      before(async () => {
        agent = await startAgent();
      });
      after(async () => agent?.stop());
      it('negotiates and runs a container', () => {
        const ctl = (...args: string[]) =>
          execFileSync(process.execPath, [path.join(dir, 'agentctl.cjs'), '--addr', agent.addr, '--json', ...args], { encoding: 'utf8' });
        const negotiated = JSON.parse(ctl('Negotiate'));
        assert.equal(negotiated.selected_version, 'v1');
        const spec = path.join(agent.dir, 'spec.json');
        fs.writeFileSync(spec, JSON.stringify(containerSpec({ rootPath: 'busybox', args: ['true'] })));
        ctl('CreateContainer', 'container_id=from-old-ctl', `oci_spec_json=@${spec}`);
        ctl('StartContainer', 'container_id=from-old-ctl');
        assert.equal(JSON.parse(ctl('WaitProcess', 'container_id=from-old-ctl')).status, 0);
        ctl('RemoveContainer', 'container_id=from-old-ctl');
      });
    });
  });
}
