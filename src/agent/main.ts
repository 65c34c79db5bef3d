// The agent's entry point: configuration, logging, the core, the server.
//
// As the guest's init this function must not fail: if PID 1 exits, the kernel
// panics and every workload dies. So each step that can fail for a reason
// outside the agent (a bad kernel command line, a module the image lacks, a
// listener the kernel cannot open yet) is logged and worked around, and the
// agent serves on whatever it could open.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, helpText, loadConfig, type ParsedArgs, type AgentConfig } from './config';
import type { AgentCore } from './core';
import { EventBus } from './core/events';
import { RequestLedger } from './core/requests';
import { Sandbox } from './core/sandbox';
import { StateKeeper } from './state/keeper';
import { takeOver } from './upgrade/takeover';
import { Upgrader } from './upgrade/upgrader';
import { commitOrRollBack } from './upgrade/commit';
import { Guest } from './guest';
import { createLogger, type Logger } from './log';
import { isGuestInit } from './machine';
import { constants, native } from '../native/native';
import { socketFromFd } from '../native/fd-socket';
import { Network } from './network';
import { choosePolicy } from './policy/policy';
import { OciRuntime } from './oci/runtime';
import { bootGuest, bringUpLoopback, finishBoot, handleInitSignals, KernelModules, powerOff, splitBootModules } from './pid1';
import { startMemoryTrim } from './memory-trim';
import { Reaper } from './process/reaper';
import { formatAddress, parseAddress } from './server/address';
import { RpcMetrics } from './server/rpc-metrics';
import { createServer } from './server/server';
import { AGENT_VERSION, PROTOCOL_VERSIONS, agentBuild } from './version';

/** How long a power-off waits for in-flight calls to finish, then for written answers to leave. */
const DRAIN_TIMEOUT_MS = 3000;
/** How long an image that took over has to be healthy before it commits (else it rolls back: upgrade/commit.ts). */
const COMMIT_DEADLINE_MS = 30_000;
/** The host's vsock address. */
const HOST_CID = 2;
const FLUSH_MS = 200;

export async function main(argv: readonly string[]): Promise<void> {
  // Node's own start (and, in the single executable, the snapshot's deserialization) ends here.
  const began = sinceStart();
  // As the guest's init nothing is mounted yet, and the configuration lives in /proc/cmdline.
  const procError = mountProcIfInit();
  const guestInit = isGuestInit();
  // PID 1 of any kind (the guest's init, or a pid namespace's) must not exit over its configuration.
  const mustNotExit = process.pid === 1;
  let parsed: ParsedArgs;
  try {
    parsed = loadConfig(argv, process.env, { lenient: mustNotExit });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`agent: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) {
    process.stdout.write(helpText());
    if (!mustNotExit) return;
  }
  const { config } = parsed;
  /** Milliseconds since the process started, at each step to the first listener: the announce line's start-up breakdown. */
  const startup: Record<string, number> = { main: began, config: sinceStart() };
  const policy = choosePolicy(config.policy, parsed.sources.policy !== undefined);
  if (policy.error && !mustNotExit) {
    process.stderr.write(`agent: ${policy.error}\n`);
    process.exitCode = 2;
    return;
  }
  const logging = createLogger(config.logLevel);
  const log = logging.log;
  guardProcess(log);
  if (procError) log.error({ err: procError }, 'cannot mount /proc: the kernel command line and process table are unreadable');
  reportConfig(parsed, log);
  if (policy.error) log.error({ policy: policy.source, error: policy.error }, 'the agent policy cannot be used: every call it governs is denied until it is fixed');

  // An exec in place by an earlier image of the agent: its state and descriptors, and no first-boot work.
  const takeover = takeOver(process.env, config.outputBufferBytes, log.child({ module: 'upgrade' }));
  const kernelModules = new KernelModules(log.child({ module: 'kmod' }));
  const bootModules = splitBootModules(config.kernelModules, {
    serial: config.channel !== 'none',
    vsock: config.serverAddr.some((a) => parseAddress(a).kind === 'vsock'),
  });
  const firstBoot = guestInit && !takeover;
  if (firstBoot) bootGuest(log, bootModules.now, kernelModules);
  /** Settles core.booted: once the first-boot work after the announce is done (at once without any). */
  let markBooted!: () => void;
  if (config.logVport > 0) {
    const host = connectHostLog(config.logVport);
    if (host.stream) logging.addDestination(host.stream);
    else log.warn({ err: host.error, port: config.logVport }, 'logs go to the console only: the host log port is unreachable');
  }

  for (const dir of [config.stateDir, config.sharedDir]) {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      // An ordinary process stops with the reason; the guest's init serves on, and the calls that need the dir fail with it.
      if (!mustNotExit) throw new Error(`cannot create ${dir}: ${(err as Error).message}`);
      log.error({ err, dir }, 'cannot create an agent directory; calls that need it will fail');
    }
  }

  const reaper = new Reaper(log);
  reaper.start();
  const fdLimit = raiseFdLimit(log);
  const runtime = new OciRuntime(
    { binary: config.ociRuntime, globalArgs: config.ociRuntimeArgs, root: path.join(config.stateDir, 'runtime') },
    reaper,
    log,
  );
  const events = new EventBus({ log: log.child({ module: 'events' }), ...(takeover ? { restored: { lastSeq: takeover.state.lastEventSeq, events: takeover.events } } : {}) });
  // Exit statuses are judged by the OOM watcher's counts (the guest module's, created below).
  const oomKills = { count: (id: string) => core.guest.oomWatcher.count(id) };
  const sandbox = new Sandbox(
    { stateDir: config.stateDir, sharedDir: config.sharedDir, kernelModules, policy, guestHooksDir: config.guestHooksDir },
    { runtime, reaper, log, outputBufferBytes: config.outputBufferBytes, policy, events, oomKills },
    log,
  );
  const network = new Network({}, reaper, log.child({ module: 'network' }));
  if (firstBoot) bringUpLoopback(log);
  const callMetrics = new RpcMetrics();
  const requests = new RequestLedger({ onSettled: () => keeper?.changed() });
  let upgrader!: Upgrader;
  startup.runtime = sinceStart();
  const core: AgentCore = {
    config,
    sandbox,
    events,
    requests,
    network,
    callMetrics,
    policy,
    guest: new Guest({ sharedDir: config.sharedDir, events, policy, containers: () => sandbox.list(), log: log.child({ module: 'guest' }) }),
    // The guest's life is the sandbox's: once it is destroyed, the VM powers off,
    // but only after the answer to DestroySandbox has left (see drainThenPowerOff).
    onSandboxDestroyed: () => (guestInit ? drainThenPowerOff('sandbox destroyed') : log.info('sandbox destroyed')),
    image: {
      startedAt: Date.now(),
      upgrades: takeover?.image.upgrades ?? 0,
      failedUpgrades: takeover?.image.failedUpgrades ?? 0,
      upgradeId: takeover?.image.upgradeId ?? '',
      previousVersion: takeover?.from ?? '',
    },
    booted: new Promise<void>((resolve) => (markBooted = resolve)),
    upgrade: (upgrader = new Upgrader({
      server: () => agentServer,
      spawner: reaper,
      image: () => core.image,
      sources: { sandbox, requests, events, agentVersion: AGENT_VERSION },
      stateDir: config.stateDir,
      sharedDir: config.sharedDir,
      args: argv,
      log: log.child({ module: 'upgrade' }),
      rollback: takeover?.previous,
    })),
  };
  let unrestored: string[] = [];
  if (takeover) {
    core.requests.restore(takeover.requests);
    unrestored = await sandbox.restore(takeover.sandbox, takeover.stdio);
    log.info({ from: takeover.from, containers: sandbox.list().length, lastEventSeq: events.lastSeq }, 'took over from the previous agent image');
  }
  core.guest.start();
  const keeper = openStateKeeper(config, core, log, !takeover);

  startup.core = sinceStart();
  const agentServer = createServer(core, callMetrics, log);
  // The configuration has validated every address.
  for (const addr of config.serverAddr) {
    const spec = parseAddress(addr);
    agentServer.listeners.add(spec, takeover?.listenerFd(formatAddress(spec)));
  }
  // A serial port handed over open is served at once: a host may be waiting on it, and the port exists.
  const servesSerial = config.channel !== 'none' && (guestInit || fs.existsSync('/sys/class/virtio-ports'));
  const inheritedPort = servesSerial ? takeover?.port(`serial:${config.channel}`) : undefined;
  if (inheritedPort) agentServer.listeners.add({ kind: 'serial', name: config.channel }, inheritedPort);
  const listeners = await agentServer.listeners.settled();
  if (takeover) {
    void commitOrRollBack({
      listeners: Promise.resolve(listeners),
      inherited: takeover.inherited,
      unrestored,
      deadlineMs: COMMIT_DEADLINE_MS,
      env: process.env,
      rollbackAllowed: takeover.rollbackAllowed,
      rollBack: (reason) => upgrader.rollBack(takeover.previous, reason),
      commit: takeover.commit,
      log: log.child({ module: 'upgrade' }),
    });
  }
  if (!mustNotExit && !listeners.some((l) => l.state === 'serving')) {
    agentServer.listeners.close();
    throw new Error(`no listener could be opened: ${listeners.map((l) => `${l.address}: ${l.lastError}`).join('; ')}`);
  }
  function drainThenPowerOff(reason: string): void {
    let done = false;
    const off = () => {
      if (done) return;
      done = true;
      // A moment for the transports' own write queues (the serial port's) to empty.
      setTimeout(() => powerOff(log, reason), FLUSH_MS);
    };
    agentServer.shutdown(off);
    // A client holding a stream open must not keep the VM up.
    setTimeout(off, DRAIN_TIMEOUT_MS);
  }
  log.info(
    {
      version: AGENT_VERSION, build: agentBuild(), protocols: PROTOCOL_VERSIONS, listeners, config, sources: parsed.sources, guestInit,
      ...(takeover ? { tookOverFrom: takeover.from } : {}),
      startupMs: { ...startup, listening: sinceStart() },
      // The machine's uptime now: with startupMs, where the agent's start falls in a boot (bench/guest.ts).
      uptimeMs: uptimeMs(),
      fdLimit,
      policy: { source: policy.source, loaded: policy.loaded, digest: policy.digest },
      ...(parsed.problems.length ? { configProblems: parsed.problems.length } : {}),
      ...(parsed.unknownKeys.length ? { unknownKeys: parsed.unknownKeys } : {}),
    },
    'announce',
  );

  // At boot the port appears shortly after virtio_console loads: it is looked for without holding up the announce.
  if (servesSerial && !inheritedPort) agentServer.listeners.add({ kind: 'serial', name: config.channel });
  if (firstBoot) void finishBoot(log, bootModules.later, kernelModules).finally(markBooted);
  else markBooted();
  startMemoryTrim(log);
  if (guestInit) {
    handleInitSignals(log, () => sandbox.destroy().catch((err: unknown) => log.error({ err }, 'cleanup before power-off failed')));
    return;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    agentServer.shutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * Each process the agent tracks holds up to three descriptors (its stdio), and
 * the kernel gives init 1024 (soft) and 4096 (hard): without this, PID 1 could
 * not track more than about 1,300 processes. Raised to FD_LIMIT where the
 * agent may (root, up to fs.nr_open). Children inherit it where their OCI spec
 * sets no rlimits of its own.
 */
const FD_LIMIT = 1 << 17;
function raiseFdLimit(log: Logger): [number, number] | undefined {
  try {
    return native.raiseFdLimit(FD_LIMIT);
  } catch (err) {
    log.warn({ err, wanted: FD_LIMIT }, 'cannot raise the open-file limit: fewer processes can be tracked');
    return undefined;
  }
}

function uptimeMs(): number | undefined {
  try {
    return Math.round(Number(fs.readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 1000);
  } catch {
    return undefined;
  }
}

/** Milliseconds since this process (image) started, to 0.1 ms. */
function sinceStart(): number {
  return Math.round(performance.now() * 10) / 10;
}

/** The state keeper (state/keeper.ts), unless --save-state false; as PID 1 a state dir it cannot use costs the saves, not the agent. */
function openStateKeeper(config: AgentConfig, core: AgentCore, log: Logger, freshStart: boolean): StateKeeper | null {
  const dir = config.stateDir;
  try {
    // After a takeover the state there is the previous image's: ours from now on.
    if (freshStart) StateKeeper.setAsideStale(dir, log.child({ module: 'state' }));
    if (!config.saveState) return null;
    return StateKeeper.open(dir, { sandbox: core.sandbox, requests: core.requests, events: core.events, agentVersion: AGENT_VERSION }, log.child({ module: 'state' }));
  } catch (err) {
    log.error({ err, dir }, 'cannot keep the agent state: it is not saved, and an in-place upgrade could not take over');
    return null;
  }
}

/** Says what of the configuration was refused, unknown or ignored: a typo must be visible. */
function reportConfig(parsed: ParsedArgs, log: Logger): void {
  for (const p of parsed.problems) {
    log.warn({ source: p.source, value: p.value, used: p.used, problem: p.problem }, 'configuration value refused; the option keeps the value shown as used');
  }
  if (parsed.unknownKeys.length > 0) {
    log.warn({ keys: parsed.unknownKeys }, 'unknown agent options ignored (a typo?); agent --help lists them all');
  }
  for (const k of parsed.ignoredKeys) log.info({ key: k.key, reason: k.reason }, 'Kata agent option not supported here; ignored');
}

/** The host's log port (vsock CID 2): the stream, or why there is none. */
function connectHostLog(port: number): { stream?: NodeJS.WritableStream; error?: unknown } {
  try {
    const socket = socketFromFd(native.vsockConnect(HOST_CID, port));
    // A host that goes away must not take the agent with it: drop the logs it misses.
    socket.on('error', () => socket.destroy());
    return { stream: socket };
  } catch (error) {
    return { error };
  }
}

/** PID 1 with no /proc yet: mount it, so the agent can tell where it runs and read its command line. */
function mountProcIfInit(): unknown {
  if (process.pid !== 1 || fs.existsSync('/proc/self')) return null;
  try {
    fs.mkdirSync('/proc', { recursive: true });
    native.mount('proc', '/proc', 'proc', constants.MS_NOSUID | constants.MS_NODEV | constants.MS_NOEXEC, '');
    return null;
  } catch (err) {
    return err;
  }
}

/** An agent must keep serving: log anything that escapes and carry on. */
function guardProcess(log: Logger): void {
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (agent keeps running)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (agent keeps running)'));
}
