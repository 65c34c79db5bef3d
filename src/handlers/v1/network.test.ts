// Tests of the network module and the v1 network RPCs. Nothing here changes
// this machine's network: every change happens in a network namespace the
// test creates (a child under `unshare --net`, or the agent started with
// --net), and the checks below prove the namespace differs before using it.
// Needs iproute2 and unshare; the end-to-end tests need dist/agent.cjs
// (node build/gen-protos.mjs && node build/bundle.mjs).
// Run: node --import tsx --test src/handlers/v1/network.test.ts

import { execFileSync, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentError } from '../../agent/errors';
import { silentLogger } from '../../agent/log';
import { Network } from '../../agent/network';
import { parseDest, parseIp, validateIfName, validateMac } from '../../agent/network/validate';
import type { Spawner } from '../../agent/process/command';
import { runCommand } from '../../agent/process/command';
import { Reaper } from '../../agent/process/reaper';
import { startAgent, type TestAgent } from '../../../test/helpers/agent-process';
import { familyFromWire, interfaceFromWire, neighborFromWire, routeFromWire } from './network';

const REPO = path.resolve(__dirname, '..', '..', '..');
const NETWORK_TS = path.join(REPO, 'src', 'agent', 'network', 'index.ts');
const REAPER_TS = path.join(REPO, 'src', 'agent', 'process', 'reaper.ts');
const LOG_TS = path.join(REPO, 'src', 'agent', 'log.ts');

const kindOf = (kind: string) => (err: unknown) => {
  assert.ok(err instanceof AgentError, `not an AgentError: ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  return true;
};

/** A spawner that fails the test if anything is run. */
const noSpawn: Spawner = {
  spawn(command, args) {
    throw new Error(`nothing may be run here, but ${command} ${args.join(' ')} was`);
  },
};

// ---------------------------------------------------------------------------
// Conversions and validation (no namespace needed).

describe('v1 conversions', () => {
  test('IPFamily names map to families; unknown values are refused', () => {
    assert.equal(familyFromWire('f', 'IP_FAMILY_V4'), 4);
    assert.equal(familyFromWire('f', 'IP_FAMILY_V6'), 6);
    assert.equal(familyFromWire('f', 'IP_FAMILY_UNSPECIFIED'), undefined);
    assert.throws(() => familyFromWire('routes[0].family', 7), (e) => kindOf('invalid-argument')(e) && /routes\[0\]\.family 7/.test((e as Error).message));
  });

  test('Interface: device stands for name, mask is parsed, a rename is refused', () => {
    const base = { device: '', name: '', ip_addresses: [], mtu: 0, hw_addr: '', type: '', up: false };
    assert.deepEqual(
      interfaceFromWire({ ...base, device: 'eth0', mtu: 1400, up: true,
        ip_addresses: [{ family: 'IP_FAMILY_V4', address: '10.0.0.2', mask: '24' }] }),
      { name: 'eth0', mtu: 1400, up: true, addresses: [{ family: 4, address: '10.0.0.2', prefix: 24 }] },
    );
    assert.deepEqual(interfaceFromWire({ ...base, hw_addr: '02:00:00:00:00:01' }), { hwAddr: '02:00:00:00:00:01', up: false, addresses: [] });
    assert.throws(() => interfaceFromWire({ ...base, device: 'eth0', name: 'eth1' }), kindOf('invalid-argument'));
    assert.throws(
      () => interfaceFromWire({ ...base, name: 'eth0', ip_addresses: [{ family: 'IP_FAMILY_V4', address: '10.0.0.2', mask: '/24' }] }),
      (e) => kindOf('invalid-argument')(e) && /ip_addresses\[0\]\.mask "\/24"/.test((e as Error).message),
    );
  });

  test('Route and ARPNeighbor conversions', () => {
    assert.deepEqual(
      routeFromWire({ dest: 'default', gateway: '10.0.0.1', device: 'eth0', source: '', scope: '', family: 'IP_FAMILY_UNSPECIFIED' }, 'r'),
      { dest: 'default', gateway: '10.0.0.1', device: 'eth0', source: '', scope: '' },
    );
    const n = { to_ip_address: { family: 'IP_FAMILY_V4' as const, address: '10.0.0.9', mask: '' }, device: 'eth0', lladdr: '02:00:00:00:00:09', state: '' };
    assert.deepEqual(neighborFromWire(n, 'n'), { address: '10.0.0.9', family: 4, device: 'eth0', lladdr: '02:00:00:00:00:09', state: '' });
    assert.throws(() => neighborFromWire({ ...n, to_ip_address: { ...n.to_ip_address, mask: '24' } }, 'n'), kindOf('invalid-argument'));
    assert.throws(() => neighborFromWire({ ...n, to_ip_address: null }, 'n'), kindOf('invalid-argument'));
  });

  test('validators: names, addresses, CIDRs, MACs', () => {
    assert.equal(validateIfName('n', 'eth0.100'), 'eth0.100');
    for (const bad of ['', 'a/b', 'a b', 'a:1', '.', '..', '-x', 'sixteen-chars-xx', 'é']) {
      assert.throws(() => validateIfName('n', bad), kindOf('invalid-argument'), bad);
    }
    assert.equal(parseIp('a', 'FD00:0:0::5').address, 'fd00::5');
    for (const bad of ['10.0.0.256', '010.0.0.1', 'fe80::1%eth0', 'x', '']) assert.throws(() => parseIp('a', bad), kindOf('invalid-argument'), bad);
    assert.throws(() => parseIp('a', '10.0.0.1', 6), kindOf('invalid-argument'));
    assert.deepEqual(parseDest('d', '10.1.0.0/16'), { family: 4, dest: '10.1.0.0/16' });
    assert.deepEqual(parseDest('d', '10.1.2.3'), { family: 4, dest: '10.1.2.3/32' });
    assert.deepEqual(parseDest('d', 'fd00:0::/64'), { family: 6, dest: 'fd00::/64' });
    assert.deepEqual(parseDest('d', '0.0.0.0/0'), { family: 4, dest: 'default' });
    assert.throws(() => parseDest('d', '10.1.2.3/16'), kindOf('invalid-argument'));
    assert.throws(() => parseDest('d', 'fd00::1/64'), kindOf('invalid-argument'));
    assert.throws(() => parseDest('d', '10.0.0.0/33'), kindOf('invalid-argument'));
    assert.equal(validateMac('m', '02:AB:00:00:00:01'), '02:ab:00:00:00:01');
    assert.throws(() => validateMac('m', '02:ab:00:00:00'), kindOf('invalid-argument'));
    assert.throws(() => validateMac('m', '01:00:5e:00:00:01', true), kindOf('invalid-argument'));
  });
});

// ---------------------------------------------------------------------------
// runCommand through the Reaper.

describe('runCommand', () => {
  const reaper = new Reaper(silentLogger);
  test('collects output, types failures, times out', async () => {
    assert.deepEqual(await runCommand(reaper, 'sh', ['-c', 'echo out; echo err >&2']), { stdout: 'out\n', stderr: 'err\n' });
    assert.equal((await runCommand(reaper, 'cat', [], { input: 'abc' })).stdout, 'abc');
    await assert.rejects(runCommand(reaper, 'sh', ['-c', 'echo boom >&2; exit 3']),
      (e) => kindOf('failed-precondition')(e) && /exited with 3: boom/.test((e as Error).message));
    await assert.rejects(runCommand(reaper, '/nonexistent/cmd', [], { spawnHint: 'install it' }),
      (e) => kindOf('failed-precondition')(e) && /cannot run \/nonexistent\/cmd: .*ENOENT.*; install it/.test((e as Error).message));
    await assert.rejects(runCommand(reaper, 'sleep', ['5'], { timeoutMs: 100 }), /timed out after 100 ms/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(runCommand(reaper, 'sleep', ['5'], { signal: ac.signal }), kindOf('unavailable'));
  });
});

// ---------------------------------------------------------------------------
// The core outside a namespace of its own: reading works, changing is refused before any command runs.

describe('core on the shared (host) network namespace', () => {
  test('every change is refused with failed-precondition, and no command is run', () => {
    const net = new Network({}, noSpawn, silentLogger);
    assert.throws(() => net.updateInterface({ name: 'lo', up: true, addresses: [] }), kindOf('failed-precondition'));
    assert.throws(() => net.updateRoutes([{ dest: 'default', gateway: '10.0.0.1', device: '', source: '', scope: '' }]), kindOf('failed-precondition'));
    assert.throws(() => net.addArpNeighbors([{ address: '10.0.0.1', device: 'lo', lladdr: '02:00:00:00:00:01' }]), kindOf('failed-precondition'));
  });

  test('listing is allowed and includes the loopback', async () => {
    const net = new Network({}, new Reaper(silentLogger), silentLogger);
    const links = await net.listInterfaces();
    const lo = links.find((l) => l.type === 'loopback' || l.name === 'lo');
    assert.ok(lo, JSON.stringify(links));
    assert.ok(Array.isArray(await net.listRoutes()));
  });
});

// ---------------------------------------------------------------------------
// The core inside a fresh network namespace: a child `node` under `unshare --net`.

/**
 * Runs `body` (CommonJS JavaScript) in a child node inside a new network
 * namespace with: `net` (a Network), `sh(...args)` (runs ip and returns its
 * stdout), `attempt(promiseFn)` (→ {ok} or {kind, message}). Returns the JSON
 * the body's value serializes to.
 */
function inNetns(body: string): any {
  const script = `
    const { execFileSync } = require('node:child_process');
    const { Network } = require(${JSON.stringify(NETWORK_TS)});
    const { Reaper } = require(${JSON.stringify(REAPER_TS)});
    const { silentLogger } = require(${JSON.stringify(LOG_TS)});
    const fs = require('node:fs');
    if (fs.statSync('/proc/self/ns/net').ino === fs.statSync('/proc/' + process.ppid + '/ns/net').ino) {
      throw new Error('not in a network namespace of its own: refusing to run');
    }
    const net = new Network({}, new Reaper(silentLogger), silentLogger);
    const ip = (...args) => execFileSync('ip', args, { encoding: 'utf8' });
    const attempt = async (fn) => { try { await fn(); return { ok: true }; } catch (e) { return { kind: e.kind, message: e.message }; } };
    (async () => {\n${body}\n})().then((r) => console.log(JSON.stringify(r ?? null)), (e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync('unshare', ['--net', process.execPath, '--import', 'tsx', '-e', script], {
    cwd: REPO, encoding: 'utf8', timeout: 60_000,
  });
  assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}):\n${r.stderr}${r.stdout}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

describe('core in a fresh network namespace', () => {
  test('UpdateInterface sets MTU, addresses and up; ListInterfaces shows it; the address set is replaced', () => {
    const r = inNetns(`
      ip('link', 'add', 'tv0', 'type', 'veth', 'peer', 'name', 'tv1');
      const first = await net.updateInterface({ name: 'tv0', mtu: 1400, up: true,
        addresses: [{ address: '10.11.0.2', prefix: 24 }, { family: 6, address: 'FD00:0::2', prefix: 64 }] });
      const listed = await net.listInterfaces();
      const second = await net.updateInterface({ name: 'tv0', up: true, addresses: [{ address: '10.11.0.3', prefix: 16 }] });
      const shown = JSON.parse(ip('-json', 'addr', 'show', 'dev', 'tv0'))[0];
      const mac = listed.find((l) => l.name === 'tv1').hwAddr;
      const byMac = await net.updateInterface({ hwAddr: mac.toUpperCase(), mtu: 1300, up: false, addresses: [{ address: '10.12.0.1', prefix: 30 }] });
      return { first, listed, second, shown, byMac, tv1: JSON.parse(ip('-json', 'addr', 'show', 'dev', 'tv1'))[0] };
    `);
    assert.equal(r.first.name, 'tv0');
    assert.equal(r.first.mtu, 1400);
    assert.equal(r.first.up, true);
    assert.equal(r.first.type, 'veth');
    assert.deepEqual(r.first.addresses.filter((a: any) => !a.address.startsWith('fe80')), [
      { family: 4, address: '10.11.0.2', prefix: 24 },
      { family: 6, address: 'fd00::2', prefix: 64 },
    ]);
    const names = r.listed.map((l: any) => l.name).sort();
    assert.deepEqual(names, ['lo', 'tv0', 'tv1']);
    assert.deepEqual(r.listed.find((l: any) => l.name === 'tv0'), r.first);
    // The second call replaced the set: old IPv4 and the IPv6 address are gone.
    assert.deepEqual(r.second.addresses.filter((a: any) => !a.address.startsWith('fe80')), [{ family: 4, address: '10.11.0.3', prefix: 16 }]);
    assert.deepEqual(r.shown.addr_info.filter((a: any) => !a.local.startsWith('fe80')).map((a: any) => `${a.local}/${a.prefixlen}`), ['10.11.0.3/16']);
    // Found by MAC when the name is empty; up=false leaves it down.
    assert.equal(r.byMac.name, 'tv1');
    assert.equal(r.byMac.mtu, 1300);
    assert.equal(r.byMac.up, false);
    assert.equal(r.tv1.mtu, 1300);
    assert.deepEqual(r.tv1.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`), ['10.12.0.1/30']);
  });

  test('UpdateRoutes installs routes (gateway after link routes) and replaces those of the devices named; ListRoutes shows them', () => {
    const r = inNetns(`
      ip('link', 'add', 'tv0', 'type', 'veth', 'peer', 'name', 'tv1');
      await net.updateInterface({ name: 'tv0', up: true, addresses: [{ address: '10.11.0.2', prefix: 24 }, { address: 'fd00::2', prefix: 64 }] });
      ip('route', 'add', '10.99.0.0/16', 'via', '10.11.0.1', 'dev', 'tv0');
      const installed = await net.updateRoutes([
        { dest: 'default', gateway: '10.11.0.1', device: 'tv0', source: '', scope: '' },
        { dest: '10.20.0.0/16', gateway: '10.30.0.1', device: 'tv0', source: '', scope: '' },
        { dest: '10.30.0.1', gateway: '', device: 'tv0', source: '10.11.0.2', scope: 'link' },
        { dest: 'fd01::/64', gateway: 'fd00::1', device: 'tv0', source: '', scope: '' },
      ]);
      const listed = await net.listRoutes();
      const shown4 = ip('-4', 'route', 'show');
      const shown6 = ip('-6', 'route', 'show');
      return { installed, listed, shown4, shown6 };
    `);
    assert.deepEqual(r.listed, r.installed);
    const has = (route: object) => assert.ok(r.listed.some((x: any) => Object.entries(route).every(([k, v]) => x[k] === v)), `missing ${JSON.stringify(route)} in ${JSON.stringify(r.listed)}`);
    has({ family: 4, dest: 'default', gateway: '10.11.0.1', device: 'tv0' });
    has({ family: 4, dest: '10.20.0.0/16', gateway: '10.30.0.1', device: 'tv0' });
    has({ family: 4, dest: '10.30.0.1/32', gateway: '', device: 'tv0', source: '10.11.0.2', scope: 'link' });
    has({ family: 6, dest: 'fd01::/64', gateway: 'fd00::1', device: 'tv0' });
    // Kernel routes of the device stay; the unrequested manual one is gone.
    has({ family: 4, dest: '10.11.0.0/24', device: 'tv0', scope: 'link' });
    assert.ok(!r.listed.some((x: any) => x.dest === '10.99.0.0/16'), JSON.stringify(r.listed));
    assert.match(r.shown4, /^default via 10\.11\.0\.1 dev tv0/m);
    assert.match(r.shown4, /^10\.20\.0\.0\/16 via 10\.30\.0\.1 dev tv0/m);
    assert.doesNotMatch(r.shown4, /10\.99\.0\.0/);
    assert.match(r.shown6, /^fd01::\/64 via fd00::1 dev tv0/m);
  });

  test('AddARPNeighbors: ip neigh show sees the entries', () => {
    const r = inNetns(`
      ip('link', 'add', 'tv0', 'type', 'veth', 'peer', 'name', 'tv1');
      await net.updateInterface({ name: 'tv0', up: true, addresses: [{ address: '10.11.0.2', prefix: 24 }] });
      await net.addArpNeighbors([
        { address: '10.11.0.7', device: 'tv0', lladdr: '02:00:00:00:00:07' },
        { address: 'fd00::7', family: 6, device: 'tv0', lladdr: '02:00:00:00:00:08', state: 'reachable' },
      ]);
      await net.addArpNeighbors([{ address: '10.11.0.7', device: 'tv0', lladdr: '02:00:00:00:00:09', state: 'permanent' }]);
      return ip('neigh', 'show', 'dev', 'tv0');
    `);
    assert.match(r, /^10\.11\.0\.7 lladdr 02:00:00:00:00:09 PERMANENT/m);
    assert.match(r, /^fd00::7 lladdr 02:00:00:00:00:08 /m);
  });

  test('bad inputs get the right error kinds and change nothing', () => {
    const r = inNetns(`
      ip('link', 'add', 'tv0', 'type', 'veth', 'peer', 'name', 'tv1');
      const up = (x) => net.updateInterface({ name: 'tv0', up: true, addresses: [], ...x });
      const out = {
        badIp: await attempt(() => up({ addresses: [{ address: '10.1.1.300', prefix: 24 }] })),
        prefix99: await attempt(() => up({ addresses: [{ address: '10.1.1.3', prefix: 99 }] })),
        v6prefix129: await attempt(() => up({ addresses: [{ address: 'fd00::1', prefix: 129 }] })),
        familyMismatch: await attempt(() => up({ addresses: [{ family: 6, address: '10.1.1.3', prefix: 24 }] })),
        slashName: await attempt(() => net.updateInterface({ name: 'tv/0', up: true, addresses: [] })),
        longName: await attempt(() => net.updateInterface({ name: 'a234567890123456', up: true, addresses: [] })),
        unknown: await attempt(() => net.updateInterface({ name: 'nosuch0', up: true, addresses: [] })),
        unknownMac: await attempt(() => net.updateInterface({ hwAddr: '02:de:ad:be:ef:00', up: true, addresses: [] })),
        badMac: await attempt(() => net.updateInterface({ hwAddr: 'zz:00:00:00:00:00', up: true, addresses: [] })),
        mtuLow: await attempt(() => up({ mtu: 10 })),
        mtuHigh: await attempt(() => up({ mtu: 70000 })),
        mtuLink: await attempt(() => up({ mtu: 65536 })),
        routeBadDest: await attempt(() => net.updateRoutes([{ dest: '10.0.0.1/16', gateway: '', device: 'tv0', source: '', scope: '' }])),
        routeUnknownDev: await attempt(() => net.updateRoutes([{ dest: '10.0.0.0/16', gateway: '', device: 'nosuch0', source: '', scope: '' }])),
        routeMixed: await attempt(() => net.updateRoutes([{ dest: '10.0.0.0/16', gateway: 'fd00::1', device: 'tv0', source: '', scope: '' }])),
        routeScope: await attempt(() => net.updateRoutes([{ dest: '10.0.0.0/16', gateway: '', device: 'tv0', source: '', scope: 'galaxy' }])),
        neighBadIp: await attempt(() => net.addArpNeighbors([{ address: '10.0.0.x', device: 'tv0', lladdr: '02:00:00:00:00:01' }])),
        neighBadMac: await attempt(() => net.addArpNeighbors([{ address: '10.0.0.1', device: 'tv0', lladdr: '02:00:00:00:01' }])),
        neighUnknownDev: await attempt(() => net.addArpNeighbors([{ address: '10.0.0.1', device: 'nosuch0', lladdr: '02:00:00:00:00:01' }])),
        neighState: await attempt(() => net.addArpNeighbors([{ address: '10.0.0.1', device: 'tv0', lladdr: '02:00:00:00:00:01', state: 'happy' }])),
      };
      out.after = JSON.parse(ip('-json', 'addr', 'show', 'dev', 'tv0'))[0];
      return out;
    `);
    const expect = (name: string, kind: string, text: RegExp) => {
      assert.equal(r[name].kind, kind, `${name}: ${JSON.stringify(r[name])}`);
      assert.match(r[name].message, text, name);
    };
    expect('badIp', 'invalid-argument', /"10\.1\.1\.300"/);
    expect('prefix99', 'invalid-argument', /prefix.* 99 /);
    expect('v6prefix129', 'invalid-argument', /129/);
    expect('familyMismatch', 'invalid-argument', /IPv4 address, but the family says IPv6/);
    expect('slashName', 'invalid-argument', /interface name "tv\/0"/);
    expect('longName', 'invalid-argument', /"a234567890123456"/);
    expect('unknown', 'not-found', /"nosuch0"/);
    expect('unknownMac', 'not-found', /02:de:ad:be:ef:00/);
    expect('badMac', 'invalid-argument', /"zz:00:00:00:00:00"/);
    expect('mtuLow', 'invalid-argument', /mtu.* 10 /);
    expect('mtuHigh', 'invalid-argument', /70000/);
    expect('mtuLink', 'invalid-argument', /65536 is out of range for interface tv0/);
    expect('routeBadDest', 'invalid-argument', /routes\[0\]\.dest "10\.0\.0\.1\/16" has bits set/);
    expect('routeUnknownDev', 'not-found', /routes\[0\]\.device "nosuch0"/);
    expect('routeMixed', 'invalid-argument', /routes\[0\]\.gateway/);
    expect('routeScope', 'invalid-argument', /"galaxy"/);
    expect('neighBadIp', 'invalid-argument', /"10\.0\.0\.x"/);
    expect('neighBadMac', 'invalid-argument', /lladdr/);
    expect('neighUnknownDev', 'not-found', /"nosuch0"/);
    expect('neighState', 'invalid-argument', /"happy"/);
    // None of the refused calls changed the link.
    assert.equal(r.after.mtu, 1500);
    assert.deepEqual(r.after.addr_info, []);
    assert.ok(!r.after.flags.includes('UP'), JSON.stringify(r.after.flags));
  });

  test('a missing ip binary is a clear failed-precondition', () => {
    const r = inNetns(`
      const broken = new Network({ binary: '/nonexistent/ip' }, new Reaper(silentLogger), silentLogger);
      return attempt(() => broken.listInterfaces());
    `);
    assert.equal(r.kind, 'failed-precondition');
    assert.match(r.message, /cannot run \/nonexistent\/ip: .*ENOENT.*iproute2/);
  });
});

// ---------------------------------------------------------------------------
// End to end: the bundled agent, driven by the real client.

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
