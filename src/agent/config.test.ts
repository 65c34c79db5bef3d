import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, helpText, loadConfig, parseKernelCmdline } from './config';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cmdline-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;

function cmdline(text: string): string {
  const file = path.join(dir, `cmdline-${files++}`);
  fs.writeFileSync(file, text);
  return file;
}

describe('config', () => {
  it('has defaults', () => {
    const { config } = loadConfig(['--cmdline-path', cmdline('')], {});
    assert.deepEqual(config.serverAddr, ['vsock://-1:1024']);
    assert.equal(config.channel, 'agent.channel.0');
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.ociRuntimeArgs, []);
  });

  it('reads agent.* keys from the kernel command line, quotes included', () => {
    const file = cmdline('console=ttyS0 agent.log_level=debug agent.server_addr="unix:///run/a b.sock" agent.oci_runtime_arg=--x,--y quiet\n');
    const { config, sources } = loadConfig(['--cmdline-path', file], {});
    assert.equal(config.logLevel, 'debug');
    assert.deepEqual(config.serverAddr, ['unix:///run/a b.sock']);
    assert.deepEqual(config.ociRuntimeArgs, ['--x', '--y']);
    assert.equal(sources.logLevel, 'kernel');
  });

  it('lets the environment override the kernel and flags override both', () => {
    const file = cmdline('agent.log_level=debug agent.state_dir=/k');
    const { config, sources } = loadConfig(['--cmdline-path', file, '--state-dir=/f'], {
      KATA_AGENT_LOG_LEVEL: 'warn',
      KATA_AGENT_STATE_DIR: '/e',
    });
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.stateDir, '/f');
    assert.equal(sources.stateDir, 'flag');
  });

  it('collects a repeated list flag', () => {
    const { config } = loadConfig(['--cmdline-path', cmdline(''), '--oci-runtime-arg', '--a', '--oci-runtime-arg=--b'], {});
    assert.deepEqual(config.ociRuntimeArgs, ['--a', '--b']);
  });

  it('rejects unknown flags, bad levels, bad numbers and a missing explicit command line', () => {
    const file = cmdline('');
    assert.throws(() => loadConfig(['--cmdline-path', file, '--nope', 'x'], {}), ConfigError);
    assert.throws(() => loadConfig(['--cmdline-path', file, '--log-level', 'loud'], {}), /not one of/);
    assert.throws(() => loadConfig(['--cmdline-path', file, '--max-message-bytes', '-4'], {}), /positive integer/);
    assert.throws(() => loadConfig(['--cmdline-path', file, '--state-dir'], {}), /needs a value/);
    assert.throws(() => loadConfig(['--cmdline-path', '/no/such/file'], {}), /cannot read kernel command line/);
  });

  it('parses a kernel command line into pairs', () => {
    const m = parseKernelCmdline('ro quiet agent.debug_console a=b=c');
    assert.equal(m.get('ro'), '');
    assert.equal(m.get('a'), 'b=c');
    assert.ok(m.has('agent.debug_console'));
  });

  it('documents every option three ways in --help', () => {
    const text = helpText();
    assert.match(text, /--server-addr/);
    assert.match(text, /agent\.server_addr/);
    assert.match(text, /KATA_AGENT_SERVER_ADDR/);
    assert.ok(loadConfig(['--help', '--cmdline-path', cmdline('')], {}).help);
  });
});
