// Agent configuration, the Kata way: every option can come from a flag
// (--server-addr), a kernel command-line key (agent.server_addr) or an
// environment variable (KATA_AGENT_SERVER_ADDR). Later sources win:
// defaults < kernel command line < environment < flags.
//
// Two modes. As an ordinary process a bad value is a usage error (exit 2).
// As the guest's init the agent must never exit — the kernel would panic and
// take every workload with it — so a bad value is reported as a problem and
// the option keeps its default (or its earlier source's value).
import fs from 'node:fs';
import { excerpt } from './errors';
import { parseAddress } from './server/address';

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
  policy: string;
  guestHooksDir: string;
  saveState: boolean;
}

type Kind = 'string' | 'path' | 'int' | 'bool' | 'list' | 'addresses' | 'modules' | 'level';

interface OptionSpec {
  key: keyof AgentConfig;
  /** snake_case name: flag --a-b, kernel key agent.a_b, env KATA_AGENT_A_B. */
  name: string;
  kind: Kind;
  default: AgentConfig[keyof AgentConfig];
  help: string;
  /** For int options: the accepted range. */
  min?: number;
  max?: number;
  /** Other kernel keys for the same option: the Kata agent's spellings. */
  kernelAliases?: string[];
}

const LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
/** Log level names the Kata agent accepts that are spelled differently here. */
const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = { warning: 'warn', critical: 'fatal' };

/**
 * The boot modules the guest image needs whatever launcher starts it: the
 * virtio bus and console (the agent channel), vsock and its transports, 9p for
 * the shared directory, overlay, the network device and the entropy source.
 * A module missing from the image is logged and skipped, never fatal.
 */
export const DEFAULT_KERNEL_MODULES: readonly string[] = [
  'virtio_pci', 'virtio_console', 'vsock', 'vmw_vsock_virtio_transport', 'vsock_loopback', '9pnet_virtio', '9p',
  'overlay', 'virtio_net', 'virtio_rng',
];

/** Where the guest image keeps its policy (rootfs/policy/default.json). */
export const DEFAULT_POLICY_FILE = '/etc/agent/policy.json';

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'serverAddr', name: 'server_addr', kind: 'addresses', default: ['vsock://-1:1024'],
    help: 'where to serve gRPC: unix://PATH, tcp://HOST:PORT or vsock://CID:PORT (repeatable; comma-separated on the kernel command line)' },
  { key: 'channel', name: 'channel', kind: 'string', default: 'agent.channel.0',
    help: 'name of a virtio-serial port to serve gRPC on too, when the guest has one ("none" to disable)' },
  { key: 'logLevel', name: 'log_level', kind: 'level', default: 'info', kernelAliases: ['agent.log'],
    help: `one of ${LEVELS.join(', ')} (also Kata's warning and critical)` },
  { key: 'stateDir', name: 'state_dir', kind: 'path', default: '/run/agent',
    help: 'directory for container bundles and agent state (absolute path)' },
  { key: 'sharedDir', name: 'shared_dir', kind: 'path', default: '/run/kata-containers/shared/containers',
    help: 'root that container root file systems, storages and CopyFile paths must stay inside (absolute path)' },
  { key: 'ociRuntime', name: 'oci_runtime', kind: 'string', default: 'crun', help: 'OCI runtime binary' },
  { key: 'ociRuntimeArgs', name: 'oci_runtime_arg', kind: 'list', default: [],
    help: 'extra global argument for the OCI runtime (repeatable; comma-separated on the kernel command line)' },
  { key: 'maxMessageBytes', name: 'max_message_bytes', kind: 'int', default: 4 * 1024 * 1024, min: 64 * 1024, max: 1024 * 1024 * 1024,
    help: 'largest gRPC message accepted or sent, 64 KiB to 1 GiB' },
  { key: 'outputBufferBytes', name: 'output_buffer_bytes', kind: 'int', default: 1024 * 1024, min: 4096, max: 1024 * 1024 * 1024,
    help: 'bytes of unread output kept per process stream before the process is back-pressured, 4 KiB to 1 GiB' },
  { key: 'kernelModules', name: 'kernel_modules', kind: 'modules', default: [...DEFAULT_KERNEL_MODULES],
    help: 'kernel modules to load at boot, dependencies first (only as the guest\'s init; comma-separated; "none" for no module)' },
  { key: 'logVport', name: 'log_vport', kind: 'int', default: 0, min: 0, max: 0xfffffffe,
    help: 'also send the logs to the host over vsock, to this port of CID 2 (0: console only)' },
  { key: 'policy', name: 'policy', kind: 'path', default: DEFAULT_POLICY_FILE,
    help: 'the agent policy file (JSON: which RPCs and container features are allowed); the default is used only where it exists' },
  { key: 'guestHooksDir', name: 'guest_hooks_dir', kind: 'path', default: '/etc/agent/hooks',
    help: 'the image\'s OCI hooks: executables in DIR/<stage>/ (prestart, createRuntime, poststart, ...) run for every container; spec hooks are refused' },
  { key: 'saveState', name: 'save_state', kind: 'bool', default: true,
    help: 'keep the agent\'s state in STATE_DIR/state.json, replaced after every change (what an in-place upgrade takes over; false only to measure what saving costs)' },
  { key: 'cmdlinePath', name: 'cmdline_path', kind: 'path', default: '/proc/cmdline',
    help: 'kernel command line to read agent.* options from' },
];

/**
 * Kernel keys of the Kata agent that this agent knows but does not act on,
 * with the reason: a runtime configured for Kata may pass them, and they must
 * not read as typos — nor be silently taken for working.
 */
export const KATA_KEYS_IGNORED: Readonly<Record<string, string>> = {
  'agent.debug_console': 'no debug console: a shell on the guest would bypass the agent\'s checks',
  'agent.debug_console_vport': 'no debug console',
  'agent.devmode': 'no developer mode; use agent.log=debug for more logs',
  'agent.trace': 'no tracing',
  'agent.hotplug_timeout': 'device hot-plug waits are fixed',
  'agent.unified_cgroup_hierarchy': 'the guest always uses cgroup v2',
  'agent.container_pipe_size': 'stdio pipes use the kernel default; see --output-buffer-bytes',
  'agent.passfd_listener_port': 'no passfd listener',
  'agent.cdh_api_timeout': 'no confidential data hub',
  'agent.guest_components_rest_api': 'no confidential guest components',
  'agent.guest_components_procs': 'no confidential guest components',
  'agent.image_registry_auth': 'no image pulling in the guest',
  'agent.enable_signature_verification': 'no image pulling in the guest',
  'agent.secure_image_storage_integrity': 'no image pulling in the guest',
  'agent.image_policy_file': 'no image pulling in the guest',
  'agent.aa_kbc_params': 'no attestation agent',
  'agent.https_proxy': 'no image pulling in the guest',
  'agent.no_proxy': 'no image pulling in the guest',
};

/** Kernel keys read by the image's own initramfs (rootfs/build-image.mjs), not by the agent. */
const INITRAMFS_KEYS = new Set(['agent.root']);

export class ConfigError extends Error {}

/** One value that was refused, and what the agent used instead (lenient mode). */
export interface ConfigProblem {
  /** Where the value came from: "kernel command line agent.log_vport", "environment ...", "--flag". */
  source: string;
  value: string;
  problem: string;
  /** The value kept for the option instead. */
  used: unknown;
}

export interface ParsedArgs {
  config: AgentConfig;
  help: boolean;
  /** Where each non-default value came from, for the announce line. */
  sources: Partial<Record<keyof AgentConfig, string>>;
  /** Values refused in lenient mode (in strict mode they throw instead). */
  problems: ConfigProblem[];
  /** agent.* kernel keys and KATA_AGENT_* variables no option has: probably typos. */
  unknownKeys: string[];
  /** Kata agent keys that were given but are not acted on, with the reason. */
  ignoredKeys: Array<{ key: string; reason: string }>;
}

export interface LoadOptions {
  /** Refused values become `problems` instead of ConfigErrors: the mode of the guest's init. */
  lenient?: boolean;
}

export const flagName = (spec: OptionSpec) => `--${spec.name.replace(/_/g, '-')}`;
const envName = (spec: OptionSpec) => `KATA_AGENT_${spec.name.toUpperCase()}`;
const kernelKey = (spec: OptionSpec) => `agent.${spec.name}`;

/** What an error message may show of a refused value: short and printable (errors.ts excerpt). */
const shown = (raw: string) => excerpt(raw, 80);

function parseValue(spec: OptionSpec, raw: string, source: string): AgentConfig[keyof AgentConfig] {
  const bad = (why: string) => new ConfigError(`${source}: ${spec.name}=${shown(raw)} ${why}`);
  switch (spec.kind) {
    case 'string':
      if (raw === '') throw new ConfigError(`${source}: ${spec.name} needs a value`);
      return raw;
    case 'path':
      if (!raw.startsWith('/') || raw.includes('\0')) throw bad('is not an absolute path');
      return raw;
    case 'int': {
      const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
      const min = spec.min ?? 1;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      if (!Number.isSafeInteger(n) || n < min || n > max) throw bad(`is not a whole number from ${min} to ${max}`);
      return n;
    }
    case 'bool': {
      const v = raw.toLowerCase();
      if (['true', '1', 'on', 'yes'].includes(v)) return true;
      if (['false', '0', 'off', 'no'].includes(v)) return false;
      throw bad('is not true or false');
    }
    case 'level': {
      const level = LEVEL_ALIASES[raw.toLowerCase()] ?? raw.toLowerCase();
      if (!LEVELS.includes(level as LogLevel)) throw bad(`is not one of ${LEVELS.join(', ')}`);
      return level as LogLevel;
    }
    case 'list':
      return splitList(raw);
    case 'addresses': {
      const list = splitList(raw);
      if (list.length === 0) throw bad('names no address');
      for (const a of list) {
        try {
          parseAddress(a);
        } catch (err) {
          throw bad(`is refused: ${(err as Error).message}`);
        }
      }
      return list;
    }
    case 'modules': {
      if (raw === 'none') return [];
      const list = splitList(raw);
      const wrong = list.find((m) => !/^[A-Za-z0-9_-]{1,64}$/.test(m));
      if (wrong !== undefined) throw bad(`has an invalid module name ${shown(wrong)}`);
      return list;
    }
  }
}

const splitList = (raw: string) => raw.split(',').filter((s) => s !== '');

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

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv, options: LoadOptions = {}): ParsedArgs {
  const config = Object.fromEntries(
    OPTIONS.map((o) => [o.key, Array.isArray(o.default) ? [...o.default] : o.default]),
  ) as unknown as AgentConfig;
  const parsed: ParsedArgs = { config, help: false, sources: {}, problems: [], unknownKeys: [], ignoredKeys: [] };
  /** Strict: throw. Lenient: record the problem and keep the value the option has. */
  const refuse = (err: ConfigError, source: string, value: string, key?: keyof AgentConfig) => {
    if (!options.lenient) throw err;
    parsed.problems.push({ source, value: shown(value), problem: err.message, used: key ? config[key] : undefined });
  };
  const apply = (spec: OptionSpec, compute: () => AgentConfig[keyof AgentConfig], source: string, sourceKind: string, raw: string) => {
    try {
      (config as unknown as Record<string, unknown>)[spec.key] = compute();
      parsed.sources[spec.key] = sourceKind;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      refuse(err, source, raw, spec.key);
    }
  };

  const flags = parseFlags(argv, options.lenient ?? false);
  parsed.help = flags.help;
  for (const p of flags.problems) refuse(new ConfigError(p), 'command line', p);

  const explicitCmdline = flags.values.get('cmdline_path')?.at(-1) ?? env.KATA_AGENT_CMDLINE_PATH;
  const cmdlinePath = explicitCmdline ?? config.cmdlinePath;
  let cmdline = new Map<string, string>();
  try {
    cmdline = parseKernelCmdline(fs.readFileSync(cmdlinePath, 'utf8'));
  } catch (err) {
    // The default /proc/cmdline may be absent (e.g. in a sandbox); a path someone chose must exist.
    if (explicitCmdline !== undefined) {
      refuse(new ConfigError(`cannot read kernel command line ${cmdlinePath}: ${(err as Error).message}`), 'cmdline_path', cmdlinePath);
    }
  }

  const known = new Set<string>();
  for (const spec of OPTIONS) {
    // Kata's spelling first, so that our own name wins when both are given.
    for (const key of [...(spec.kernelAliases ?? []), kernelKey(spec)]) {
      known.add(key);
      const fromKernel = cmdline.get(key);
      if (fromKernel !== undefined) {
        apply(spec, () => parseValue(spec, fromKernel, `kernel command line ${key}`), `kernel command line ${key}`, 'kernel', fromKernel);
      }
    }
    const fromEnv = env[envName(spec)];
    if (fromEnv !== undefined) {
      apply(spec, () => parseValue(spec, fromEnv, `environment ${envName(spec)}`), `environment ${envName(spec)}`, 'env', fromEnv);
    }
    const fromFlags = flags.values.get(spec.name);
    if (fromFlags !== undefined) {
      // Flags replace a list from another source rather than adding to it.
      const compute = () => (Array.isArray(spec.default)
        ? fromFlags.flatMap((v) => parseValue(spec, v, flagName(spec)) as string[])
        : parseValue(spec, fromFlags.at(-1)!, flagName(spec)));
      apply(spec, compute, flagName(spec), 'flag', fromFlags.join(','));
    }
  }

  for (const key of cmdline.keys()) {
    if (!key.startsWith('agent.') || known.has(key) || INITRAMFS_KEYS.has(key)) continue;
    const reason = KATA_KEYS_IGNORED[key];
    if (reason) parsed.ignoredKeys.push({ key, reason });
    else parsed.unknownKeys.push(excerpt(key, 80, { quote: false }));
  }
  const envKeys = new Set(OPTIONS.map(envName));
  for (const key of Object.keys(env)) {
    if (key.startsWith('KATA_AGENT_') && !envKeys.has(key)) parsed.unknownKeys.push(key);
  }
  return parsed;
}

function parseFlags(argv: readonly string[], lenient: boolean): { values: Map<string, string[]>; help: boolean; problems: string[] } {
  const values = new Map<string, string[]>();
  const problems: string[] = [];
  const refuse = (message: string) => {
    if (!lenient) throw new ConfigError(message);
    problems.push(message);
  };
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    const spec = m && OPTIONS.find((o) => o.name === m[1]!.replace(/-/g, '_'));
    if (!m || !spec) {
      refuse(`unknown argument ${shown(arg)}; see --help`);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) {
      refuse(`${arg} needs a value`);
      continue;
    }
    values.set(spec.name, [...(values.get(spec.name) ?? []), value]);
  }
  return { values, help, problems };
}

export function helpText(): string {
  const lines = OPTIONS.map((o) => {
    const def = Array.isArray(o.default) ? (o.default.length ? ` (default ${o.default.join(',')})` : '') : ` (default ${String(o.default)})`;
    const aliases = o.kernelAliases?.length ? `, ${o.kernelAliases.map((a) => `${a}=…`).join(', ')}` : '';
    return `  ${flagName(o).padEnd(24)} ${o.help}${def}\n  ${''.padEnd(24)} kernel: ${kernelKey(o)}=…${aliases}  env: ${envName(o)}`;
  });
  return `usage: agent [options]\n\nA guest agent serving the container runtime over gRPC.\n` +
    `Precedence: defaults < kernel command line < environment < flags.\n` +
    `As the guest's init (PID 1) a refused value is logged and the option keeps its default.\n\n${lines.join('\n')}\n`;
}
