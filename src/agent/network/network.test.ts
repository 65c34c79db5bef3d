// Tests of the network module (src/agent/network): the validators, the module
// on the shared (host) network namespace, where it may read but every change is
// refused before any command runs, and the module in a fresh network namespace
// (a child node under `unshare --net`) changing links, addresses, routes and
// neighbours with iproute2. Nothing here changes this machine's network: the
// child proves its namespace differs from the test's before using it.
// Needs iproute2, unshare and root; no build.
// Run: node --import tsx --test src/agent/network/network.test.ts

import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { isKind } from '../errors.testing';
import { silentLogger } from '../log';
import type { Spawner } from '../process/command';
import { Reaper } from '../process/reaper';
import { Network } from './index';
import { parseDest, parseIp, validateIfName, validateMac } from './validate';

const REPO = path.resolve(__dirname, '..', '..', '..');
const NETWORK_TS = path.join(REPO, 'src', 'agent', 'network', 'index.ts');
const REAPER_TS = path.join(REPO, 'src', 'agent', 'process', 'reaper.ts');
const LOG_TS = path.join(REPO, 'src', 'agent', 'log.ts');

/** A spawner that fails the test if anything is run. */
const noSpawn: Spawner = {
  spawn(command, args) {
    throw new Error(`nothing may be run here, but ${command} ${args.join(' ')} was`);
  },
};

// ---------------------------------------------------------------------------
// Validation (no namespace needed).

describe('validate', () => {
  test('validators: names, addresses, CIDRs, MACs', () => {
    assert.equal(validateIfName('n', 'eth0.100'), 'eth0.100');
    for (const bad of ['', 'a/b', 'a b', 'a:1', '.', '..', '-x', 'sixteen-chars-xx', 'é']) {
      assert.throws(() => validateIfName('n', bad), isKind('invalid-argument'), bad);
    }
    assert.equal(parseIp('a', 'FD00:0:0::5').address, 'fd00::5');
    for (const bad of ['10.0.0.256', '010.0.0.1', 'fe80::1%eth0', 'x', '']) assert.throws(() => parseIp('a', bad), isKind('invalid-argument'), bad);
    assert.throws(() => parseIp('a', '10.0.0.1', 6), isKind('invalid-argument'));
    assert.deepEqual(parseDest('d', '10.1.0.0/16'), { family: 4, dest: '10.1.0.0/16' });
    assert.deepEqual(parseDest('d', '10.1.2.3'), { family: 4, dest: '10.1.2.3/32' });
    assert.deepEqual(parseDest('d', 'fd00:0::/64'), { family: 6, dest: 'fd00::/64' });
    assert.deepEqual(parseDest('d', '0.0.0.0/0'), { family: 4, dest: 'default' });
    assert.throws(() => parseDest('d', '10.1.2.3/16'), isKind('invalid-argument'));
    assert.throws(() => parseDest('d', 'fd00::1/64'), isKind('invalid-argument'));
    assert.throws(() => parseDest('d', '10.0.0.0/33'), isKind('invalid-argument'));
    assert.equal(validateMac('m', '02:AB:00:00:00:01'), '02:ab:00:00:00:01');
    assert.throws(() => validateMac('m', '02:ab:00:00:00'), isKind('invalid-argument'));
    assert.throws(() => validateMac('m', '01:00:5e:00:00:01', true), isKind('invalid-argument'));
  });
});

// ---------------------------------------------------------------------------
// The core outside a namespace of its own: reading works, changing is refused before any command runs.

describe('core on the shared (host) network namespace', () => {
  test('every change is refused with failed-precondition, and no command is run', () => {
    const net = new Network({}, noSpawn, silentLogger);
    assert.throws(() => net.updateInterface({ name: 'lo', up: true, addresses: [] }), isKind('failed-precondition'));
    assert.throws(() => net.updateRoutes([{ dest: 'default', gateway: '10.0.0.1', device: '', source: '', scope: '' }]), isKind('failed-precondition'));
    assert.throws(() => net.addArpNeighbors([{ address: '10.0.0.1', device: 'lo', lladdr: '02:00:00:00:00:01' }]), isKind('failed-precondition'));
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
