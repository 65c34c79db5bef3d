import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, DEFAULT_KERNEL_MODULES, helpText, loadConfig, parseKernelCmdline } from './config';

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
    assert.throws(() => loadConfig(['--cmdline-path', file, '--max-message-bytes', '-4'], {}), /not a whole number from 65536/);
    assert.throws(() => loadConfig(['--cmdline-path', file, '--server-addr', 'http://x'], {}), /is not unix/);
    assert.throws(() => loadConfig(['--cmdline-path', file, '--state-dir', 'relative'], {}), /not an absolute path/);
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

  it('takes 0 for log_vport, the value its help calls "off"', () => {
    const { config } = loadConfig(['--cmdline-path', cmdline('agent.log_vport=0')], {});
    assert.equal(config.logVport, 0);
    assert.throws(() => loadConfig(['--cmdline-path', cmdline('agent.log_vport=4294967295')], {}), /from 0 to 4294967294/);
  });

  it("accepts the Kata agent's spellings: agent.log=debug, warning, critical; our own key wins over the alias", () => {
    assert.equal(loadConfig(['--cmdline-path', cmdline('agent.log=debug')], {}).config.logLevel, 'debug');
    assert.equal(loadConfig(['--cmdline-path', cmdline('agent.log=warning')], {}).config.logLevel, 'warn');
    assert.equal(loadConfig(['--cmdline-path', cmdline('agent.log=CRITICAL')], {}).config.logLevel, 'fatal');
    assert.equal(loadConfig(['--cmdline-path', cmdline('agent.log_level=error agent.log=debug')], {}).config.logLevel, 'error');
    assert.match(helpText(), /agent\.log=/);
  });

  it('as the guest init (lenient), a bad value is reported with what was used instead, and the rest still applies', () => {
    const file = cmdline('agent.log_vport=-1 agent.log=loud agent.server_addr=bogus agent.max_message_bytes=12abc agent.state_dir=/s agent.kernel_modules=ok,bad/name');
    const { config, problems } = loadConfig(['--cmdline-path', file, '--no-such-flag'], {}, { lenient: true });
    assert.equal(config.logVport, 0);
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.serverAddr, ['vsock://-1:1024']);
    assert.equal(config.maxMessageBytes, 4 * 1024 * 1024);
    assert.equal(config.stateDir, '/s', 'good values still apply');
    assert.deepEqual(config.kernelModules, [...DEFAULT_KERNEL_MODULES]);
    const bySource = Object.fromEntries(problems.map((p) => [p.source, p]));
    assert.deepEqual(Object.keys(bySource).sort(), [
      'command line', 'kernel command line agent.kernel_modules', 'kernel command line agent.log',
      'kernel command line agent.log_vport', 'kernel command line agent.max_message_bytes', 'kernel command line agent.server_addr',
    ]);
    assert.equal(bySource['kernel command line agent.log_vport']!.used, 0);
    assert.equal(bySource['kernel command line agent.log']!.used, 'info');
    assert.match(bySource['kernel command line agent.server_addr']!.problem, /bogus.*is refused/);
    // The same command line is an error for an ordinary process.
    assert.throws(() => loadConfig(['--cmdline-path', file], {}), ConfigError);
  });

  it('lenient: an unreadable explicit command line is a problem, not an exit', () => {
    const { problems } = loadConfig(['--cmdline-path', '/no/such/file'], {}, { lenient: true });
    assert.match(problems[0]!.problem, /cannot read kernel command line/);
  });

  it('names unknown agent.* keys and KATA_AGENT_* variables, and Kata keys it knows but ignores', () => {
    const file = cmdline('agent.root=/dev/vdb agent.lgo_level=debug agent.debug_console agent.hotplug_timeout=3 agent.log=info other.key=1');
    const { unknownKeys, ignoredKeys, problems } = loadConfig(['--cmdline-path', file], { KATA_AGENT_SERVR_ADDR: 'x', KATA_AGENT_LOG_LEVEL: 'info' });
    assert.deepEqual(unknownKeys, ['agent.lgo_level', 'KATA_AGENT_SERVR_ADDR']);
    assert.deepEqual(ignoredKeys.map((k) => k.key), ['agent.debug_console', 'agent.hotplug_timeout']);
    assert.match(ignoredKeys[0]!.reason, /debug console/);
    assert.deepEqual(problems, []);
  });

  it('loads the image\'s boot modules by default; "none" loads none', () => {
    assert.deepEqual(loadConfig(['--cmdline-path', cmdline('')], {}).config.kernelModules, [...DEFAULT_KERNEL_MODULES]);
    assert.ok(DEFAULT_KERNEL_MODULES.includes('virtio_console') && DEFAULT_KERNEL_MODULES.includes('vmw_vsock_virtio_transport'));
    assert.deepEqual(loadConfig(['--cmdline-path', cmdline('agent.kernel_modules=none')], {}).config.kernelModules, []);
  });

  it('shows at most a short, printable excerpt of a refused value', () => {
    const long = 'x'.repeat(5000) + '\u0001';
    assert.throws(() => loadConfig(['--cmdline-path', cmdline(''), `--log-level=${long}`], {}), (err: Error) => err.message.length < 300 && !/\u0001/.test(err.message));
  });
});
