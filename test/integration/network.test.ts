// The v1 network RPCs end to end: the bundled agent (dist/agent.cjs), driven
// by the real client, once in a network namespace of its own (started with
// --net: links, addresses, routes and neighbours configured over gRPC, checked
// with `nsenter ... ip`, errors as gRPC codes) and once sharing this machine's
// namespace (every change refused with FAILED_PRECONDITION, listing works).
// Nothing here changes this machine's network: the first test proves the
// agent's namespace differs before changing anything in it.
// Needs root, iproute2, unshare, nsenter and `npm run build`.
// Run: node --import tsx --test test/integration/network.test.ts

import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startAgent, type TestAgent } from '../helpers/agent-process';

const agents: TestAgent[] = [];
after(async () => {
  for (const a of agents) await a.stop();
});

type GrpcError = Error & { code: number; details: string };
const grpcCode = (code: grpc.status, text?: RegExp) => (err: unknown) => {
  const e = err as GrpcError;
  assert.equal(e.code, code, `expected ${grpc.status[code]}, got ${e.code}: ${e.details ?? e.message}`);
  if (text) assert.match(e.details, text);
  return true;
};

function netnsInode(pid: number | 'self'): number {
  return fs.statSync(`/proc/${pid}/ns/net`).ino;
}

describe('end to end through the bundled agent', () => {
  test('in its own network namespace: configure a link, routes and neighbours over gRPC', async () => {
    const agent = await startAgent({ unshare: ['--net'] });
    agents.push(agent);
    const pid = agent.child.pid!;
    // Safety: the agent's namespace must not be ours before anything is changed in it.
    assert.notEqual(netnsInode(pid), netnsInode('self'));
    const inAgentNs = (...args: string[]) => execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', ...args], { encoding: 'utf8' });
    inAgentNs('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');

    const client = await agent.connect();
    try {
      const before = await client.v1('ListInterfaces', {});
      assert.deepEqual(before.interfaces!.map((i) => i.name).sort(), ['eth0', 'lo', 'peer0']);
      const lo = before.interfaces!.find((i) => i.name === 'lo')!;
      assert.equal(lo.type, 'loopback');
      assert.equal(lo.up, false);

      const { interface: eth0 } = await client.v1('UpdateInterface', {
        interface: {
          name: 'eth0', mtu: 1450, up: true,
          ip_addresses: [
            { family: 'IP_FAMILY_V4', address: '172.30.0.2', mask: '24' },
            { family: 'IP_FAMILY_V6', address: 'fd10::2', mask: '64' },
          ],
        },
      });
      assert.equal(eth0!.name, 'eth0');
      assert.equal(eth0!.device, 'eth0');
      assert.equal(Number(eth0!.mtu), 1450);
      assert.equal(eth0!.up, true);
      assert.equal(eth0!.type, 'veth');
      assert.deepEqual(eth0!.ip_addresses!.filter((a) => !a.address!.startsWith('fe80')), [
        { family: 'IP_FAMILY_V4', address: '172.30.0.2', mask: '24' },
        { family: 'IP_FAMILY_V6', address: 'fd10::2', mask: '64' },
      ]);
      const listed = (await client.v1('ListInterfaces', {})).interfaces!.find((i) => i.name === 'eth0');
      assert.deepEqual(listed, eth0);
      assert.match(inAgentNs('addr', 'show', 'dev', 'eth0'), /<[^>]*\bUP\b[^>]*> mtu 1450 [\s\S]*inet 172\.30\.0\.2\/24/);

      const { routes } = await client.v1('UpdateRoutes', {
        routes: [
          { dest: 'default', gateway: '172.30.0.1', device: 'eth0', family: 'IP_FAMILY_V4' },
          { dest: '10.40.0.0/16', gateway: '172.30.0.1', device: 'eth0' },
          { dest: 'fd20::/64', gateway: 'fd10::1', device: 'eth0', family: 'IP_FAMILY_V6' },
        ],
      });
      const listedRoutes = (await client.v1('ListRoutes', {})).routes!;
      assert.deepEqual(listedRoutes, routes);
      const find = (dest: string) => listedRoutes.find((r) => r.dest === dest);
      assert.deepEqual(find('default'), { dest: 'default', gateway: '172.30.0.1', device: 'eth0', source: '', scope: '', family: 'IP_FAMILY_V4' });
      assert.deepEqual(find('10.40.0.0/16'), { dest: '10.40.0.0/16', gateway: '172.30.0.1', device: 'eth0', source: '', scope: '', family: 'IP_FAMILY_V4' });
      assert.equal(find('fd20::/64')?.family, 'IP_FAMILY_V6');
      assert.equal(find('172.30.0.0/24')?.scope, 'link');
      assert.match(inAgentNs('route', 'show'), /^default via 172\.30\.0\.1 dev eth0/m);

      await client.v1('AddARPNeighbors', {
        neighbors: [{ to_ip_address: { family: 'IP_FAMILY_V4', address: '172.30.0.9', mask: '' }, device: 'eth0', lladdr: '02:00:00:00:00:09', state: 'permanent' }],
      });
      assert.match(inAgentNs('neigh', 'show', 'dev', 'eth0'), /^172\.30\.0\.9 lladdr 02:00:00:00:00:09 PERMANENT/m);

      // Errors arrive as the right gRPC codes, and the agent keeps serving.
      await assert.rejects(
        client.v1('UpdateInterface', { interface: { name: 'eth0', ip_addresses: [{ family: 'IP_FAMILY_V4', address: '172.30.0.300', mask: '24' }] } }),
        grpcCode(grpc.status.INVALID_ARGUMENT, /172\.30\.0\.300/),
      );
      await assert.rejects(
        client.v1('UpdateInterface', { interface: { name: 'eth0', ip_addresses: [{ family: 'IP_FAMILY_V4', address: '172.30.0.2', mask: '99' }] } }),
        grpcCode(grpc.status.INVALID_ARGUMENT, /99/),
      );
      await assert.rejects(client.v1('UpdateInterface', { interface: { name: 'et/h0' } }), grpcCode(grpc.status.INVALID_ARGUMENT, /et\/h0/));
      await assert.rejects(client.v1('UpdateInterface', { interface: { name: 'nosuch0' } }), grpcCode(grpc.status.NOT_FOUND, /nosuch0/));
      await assert.rejects(client.v1('UpdateInterface', {}), grpcCode(grpc.status.INVALID_ARGUMENT, /interface is missing/));
      await assert.rejects(
        client.v1('UpdateRoutes', { routes: [{ dest: '10.0.0.0/8', device: 'eth0', family: 5 as never }] }),
        grpcCode(grpc.status.INVALID_ARGUMENT, /routes\[0\]\.family 5/),
      );
      await assert.rejects(
        client.v1('UpdateRoutes', { routes: [{ dest: '10.77.0.0/16', gateway: '10.99.0.1' }] }),
        grpcCode(grpc.status.FAILED_PRECONDITION, /invalid gateway|unreachable/i),
      );
      const after = (await client.v1('ListInterfaces', {})).interfaces!.find((i) => i.name === 'eth0');
      assert.deepEqual(after, eth0);
    } finally {
      client.close();
    }
    assert.ok(agent.alive());
  });

  test('without its own network namespace: changes are refused with FAILED_PRECONDITION, listing still works', async () => {
    const agent = await startAgent();
    agents.push(agent);
    // This agent shares our network namespace: the requests below name links that do not
    // exist, so even a broken guard could not change anything here.
    assert.equal(netnsInode(agent.child.pid!), netnsInode('self'));
    const client = await agent.connect();
    try {
      await assert.rejects(
        client.v1('UpdateInterface', { interface: { name: 'agtnone0', mtu: 1400, up: true } }),
        grpcCode(grpc.status.FAILED_PRECONDITION, /refused: .*net namespace/),
      );
      await assert.rejects(
        client.v1('UpdateRoutes', { routes: [{ dest: '10.123.0.0/16', device: 'agtnone0' }] }),
        grpcCode(grpc.status.FAILED_PRECONDITION, /refused/),
      );
      await assert.rejects(
        client.v1('AddARPNeighbors', { neighbors: [{ to_ip_address: { address: '10.123.0.1' }, device: 'agtnone0', lladdr: '02:00:00:00:00:01' }] }),
        grpcCode(grpc.status.FAILED_PRECONDITION, /refused/),
      );
      // Still serving.
      const { interfaces } = await client.v1('ListInterfaces', {});
      assert.ok(interfaces!.some((i) => i.type === 'loopback'), JSON.stringify(interfaces));
      assert.ok(Array.isArray((await client.v1('ListRoutes', {})).routes));
    } finally {
      client.close();
    }
    assert.ok(agent.alive());
  });
});
