// The launcher's choice of accelerator (build/accel.ts): overrides, and what
// the probe answers when KVM cannot be tried. The real probe runs wherever a
// guest boots (demo, guest tests), which print the choice and its reason.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chooseAccel, probeKvm } from '../../build/accel';

test('AGENT_VM_ACCEL and the caller override the probe; a bad value is an error naming the choices', async () => {
  assert.deepEqual(await chooseAccel({ env: { AGENT_VM_ACCEL: 'tcg' } }), { accel: 'tcg', cpu: 'max', reason: 'AGENT_VM_ACCEL=tcg' });
  assert.deepEqual(await chooseAccel({ env: { AGENT_VM_ACCEL: 'kvm' } }), { accel: 'kvm', cpu: 'host', reason: 'AGENT_VM_ACCEL=kvm (no probe)' });
  assert.equal((await chooseAccel({ override: 'tcg', env: { AGENT_VM_ACCEL: 'kvm' } })).accel, 'tcg', 'the caller wins');
  await assert.rejects(chooseAccel({ env: { AGENT_VM_ACCEL: 'fast' } }), /AGENT_VM_ACCEL="fast" is not kvm, tcg or auto/);
});

test('auto: TCG with the reason when there is nothing to probe with', async () => {
  const choice = await probeKvm(path.join(os.tmpdir(), 'no-such-vmlinux'));
  assert.deepEqual(choice, { accel: 'tcg', cpu: 'max', reason: `cannot probe KVM: ${path.join(os.tmpdir(), 'no-such-vmlinux')} is missing` });
  const auto = await chooseAccel({ env: {}, noCache: true });
  assert.ok(auto.reason.length > 0);
  assert.equal(auto.cpu, auto.accel === 'kvm' ? 'host' : 'max');
  if (!fs.existsSync('/dev/kvm')) assert.match(auto.reason, /no usable \/dev\/kvm/);
});
