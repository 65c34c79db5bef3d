// Agent configuration, the Kata way: every option can come from a flag
// (--server-addr), a kernel command-line key (agent.server_addr) or an
// environment variable (KATA_AGENT_SERVER_ADDR). Later sources win:
// defaults < kernel command line < environment < flags.
import fs from 'node:fs';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface AgentConfig {
  serverAddr: string[];
  channel: string;
  logLevel: LogLevel;
  stateDir: string;
  sharedDir: string;
  ociRuntime: string;
  ociRuntimeArgs: string[];
  maxMessageBytes: number;
  outputBufferBytes: number;
  cmdlinePath: string;
  kernelModules: string[];
  logVport: number;
}

type Kind = 'string' | 'int' | 'list' | 'level';

interface OptionSpec {
  key: keyof AgentConfig;
  /** snake_case name: flag --a-b, kernel key agent.a_b, env KATA_AGENT_A_B. */
  name: string;
  kind: Kind;
  default: AgentConfig[keyof AgentConfig];
  help: string;
}

const LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'serverAddr', name: 'server_addr', kind: 'list', default: ['vsock://-1:1024'],
    help: 'where to serve gRPC: unix://PATH, tcp://HOST:PORT or vsock://CID:PORT (repeatable; comma-separated on the kernel command line)' },
  { key: 'channel', name: 'channel', kind: 'string', default: 'agent.channel.0',
    help: 'name of a virtio-serial port to serve gRPC on too, when the guest has one ("none" to disable)' },
  { key: 'logLevel', name: 'log_level', kind: 'level', default: 'info', help: `one of ${LEVELS.join(', ')}` },
  { key: 'stateDir', name: 'state_dir', kind: 'string', default: '/run/agent',
    help: 'directory for container bundles and agent state' },
  { key: 'sharedDir', name: 'shared_dir', kind: 'string', default: '/run/kata-containers/shared/containers',
    help: 'root that container root file systems, storages and CopyFile paths must stay inside' },
  { key: 'ociRuntime', name: 'oci_runtime', kind: 'string', default: 'crun', help: 'OCI runtime binary' },
  { key: 'ociRuntimeArgs', name: 'oci_runtime_arg', kind: 'list', default: [],
    help: 'extra global argument for the OCI runtime (repeatable; comma-separated on the kernel command line)' },
  { key: 'maxMessageBytes', name: 'max_message_bytes', kind: 'int', default: 4 * 1024 * 1024,
    help: 'largest gRPC message accepted or sent' },
  { key: 'outputBufferBytes', name: 'output_buffer_bytes', kind: 'int', default: 1024 * 1024,
    help: 'bytes of unread output kept per process stream before the process is back-pressured' },
  { key: 'kernelModules', name: 'kernel_modules', kind: 'list', default: [],
    help: 'kernel modules to load at boot, dependencies first (only as the guest\'s init; comma-separated)' },
  { key: 'logVport', name: 'log_vport', kind: 'int', default: 0,
    help: 'also send the logs to the host over vsock, to this port of CID 2 (0: console only)' },
  { key: 'cmdlinePath', name: 'cmdline_path', kind: 'string', default: '/proc/cmdline',
    help: 'kernel command line to read agent.* options from' },
];

export class ConfigError extends Error {}

export const flagName = (spec: OptionSpec) => `--${spec.name.replace(/_/g, '-')}`;
const envName = (spec: OptionSpec) => `KATA_AGENT_${spec.name.toUpperCase()}`;
const kernelKey = (spec: OptionSpec) => `agent.${spec.name}`;

function parseValue(spec: OptionSpec, raw: string, source: string): AgentConfig[keyof AgentConfig] {
  switch (spec.kind) {
    case 'string':
      if (raw === '') throw new ConfigError(`${source}: ${spec.name} needs a value`);
      return raw;
    case 'int': {
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n <= 0) {
        throw new ConfigError(`${source}: ${spec.name}=${raw} is not a positive integer`);
      }
      return n;
    }
    case 'level':
      if (!LEVELS.includes(raw as LogLevel)) {
        throw new ConfigError(`${source}: log level ${raw} is not one of ${LEVELS.join(', ')}`);
      }
      return raw as LogLevel;
    case 'list':
      return raw.split(',').filter((s) => s !== '');
  }
}

/** Splits a kernel command line into key=value pairs, honouring double quotes. */
export function parseKernelCmdline(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/(?:[^\s"]+|"[^"]*")+/g)) {
    const item = m[0].replace(/"/g, '');
    const eq = item.indexOf('=');
    out.set(eq < 0 ? item : item.slice(0, eq), eq < 0 ? '' : item.slice(eq + 1));
  }
  return out;
}

export interface ParsedArgs {
  config: AgentConfig;
  help: boolean;
  /** Where each non-default value came from, for the announce line. */
  sources: Partial<Record<keyof AgentConfig, string>>;
}

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedArgs {
  const config = Object.fromEntries(
    OPTIONS.map((o) => [o.key, Array.isArray(o.default) ? [...o.default] : o.default]),
  ) as unknown as AgentConfig;
  const sources: ParsedArgs['sources'] = {};
  const set = (spec: OptionSpec, value: AgentConfig[keyof AgentConfig], source: string) => {
    (config as unknown as Record<string, unknown>)[spec.key] = value;
    sources[spec.key] = source;
  };

  const flags = parseFlags(argv);
  const explicitCmdline = flags.values.get('cmdline_path')?.at(-1) ?? env.KATA_AGENT_CMDLINE_PATH;
  const cmdlinePath = explicitCmdline ?? config.cmdlinePath;
  let cmdline = new Map<string, string>();
  try {
    cmdline = parseKernelCmdline(fs.readFileSync(cmdlinePath, 'utf8'));
  } catch (err) {
    // The default /proc/cmdline may be absent (e.g. in a sandbox); a path someone chose must exist.
    if (explicitCmdline !== undefined) {
      throw new ConfigError(`cannot read kernel command line ${cmdlinePath}: ${(err as Error).message}`);
    }
  }

  for (const spec of OPTIONS) {
    const fromKernel = cmdline.get(kernelKey(spec));
    if (fromKernel !== undefined) set(spec, parseValue(spec, fromKernel, `kernel command line ${kernelKey(spec)}`), 'kernel');
    const fromEnv = env[envName(spec)];
    if (fromEnv !== undefined) set(spec, parseValue(spec, fromEnv, `environment ${envName(spec)}`), 'env');
    const fromFlags = flags.values.get(spec.name);
    if (fromFlags !== undefined) {
      // Flags replace a list from another source rather than adding to it.
      const value = spec.kind === 'list'
        ? fromFlags.flatMap((v) => parseValue(spec, v, flagName(spec)) as string[])
        : parseValue(spec, fromFlags.at(-1)!, flagName(spec));
      set(spec, value, 'flag');
    }
  }
  return { config, help: flags.help, sources };
}

function parseFlags(argv: readonly string[]): { values: Map<string, string[]>; help: boolean } {
  const values = new Map<string, string[]>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    const spec = m && OPTIONS.find((o) => o.name === m[1]!.replace(/-/g, '_'));
    if (!m || !spec) throw new ConfigError(`unknown argument ${arg}; see --help`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new ConfigError(`${arg} needs a value`);
    values.set(spec.name, [...(values.get(spec.name) ?? []), value]);
  }
  return { values, help };
}

export function helpText(): string {
  const lines = OPTIONS.map((o) => {
    const def = Array.isArray(o.default) ? '' : ` (default ${String(o.default)})`;
    return `  ${flagName(o).padEnd(24)} ${o.help}${def}\n  ${''.padEnd(24)} kernel: ${kernelKey(o)}=…  env: ${envName(o)}`;
  });
  return `usage: agent [options]\n\nA guest agent serving the container runtime over gRPC.\n` +
    `Precedence: defaults < kernel command line < environment < flags.\n\n${lines.join('\n')}\n`;
}
