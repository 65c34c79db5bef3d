// The agent's entry point: configuration, logging, the core, the server.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, helpText, loadConfig } from './config';
import type { AgentCore } from './core';
import { Sandbox } from './core/sandbox';
import { Guest } from './guest';
import { createLogger, type Logger } from './log';
import { isGuestInit } from './machine';
import { constants, native } from '../native/native';
import { Network } from './network';
import { OciRuntime } from './oci/runtime';
import { bootGuest, bringUpLoopback, handleInitSignals, KernelModules, powerOff } from './pid1';
import { Reaper } from './process/reaper';
import { RpcMetrics } from './server/rpc-metrics';
import { socketFromFd } from '../native/fd-socket';
import { findSerialPort, serveSerialPort } from './server/serial-port';
import { startServer } from './server/server';
import { parseAddress } from './server/transport';
import { AGENT_VERSION, PROTOCOL_VERSIONS, agentBuild } from './version';

/** How long a power-off waits for in-flight calls to finish, then for written answers to leave. */
const DRAIN_TIMEOUT_MS = 3000;
/** The host's vsock address. */
const HOST_CID = 2;
const FLUSH_MS = 200;

export async function main(argv: readonly string[]): Promise<void> {
  // As the guest's init nothing is mounted yet, and the configuration lives in /proc/cmdline.
  mountProcIfInit();
  let parsed;
  try {
    parsed = loadConfig(argv, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`agent: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) {
    process.stdout.write(helpText());
    return;
  }
  const { config } = parsed;
  const logging = createLogger(config.logLevel);
  const log = logging.log;
  guardProcess(log);
  const guestInit = isGuestInit();
  const kernelModules = new KernelModules(log.child({ module: 'kmod' }));
  if (guestInit) bootGuest(log, config.kernelModules, kernelModules);
  if (config.logVport > 0) {
    const host = connectHostLog(config.logVport);
    if (host.stream) logging.addDestination(host.stream);
    else log.warn({ err: host.error, port: config.logVport }, 'logs go to the console only: the host log port is unreachable');
  }

  const endpoints = config.serverAddr.map(parseAddress);
  for (const dir of [config.stateDir, config.sharedDir]) fs.mkdirSync(dir, { recursive: true });

  const reaper = new Reaper(log);
  reaper.start();
  const runtime = new OciRuntime(
    { binary: config.ociRuntime, globalArgs: config.ociRuntimeArgs, root: path.join(config.stateDir, 'runtime') },
    reaper,
    log,
  );
  const sandbox = new Sandbox(
    { stateDir: config.stateDir, sharedDir: config.sharedDir, kernelModules },
    { runtime, reaper, log, outputBufferBytes: config.outputBufferBytes },
    log,
  );
  const network = new Network({}, reaper, log.child({ module: 'network' }));
  if (guestInit) await bringUpLoopback(network, log);
  const core: AgentCore = {
    config,
    sandbox,
    network,
    rpcMetrics: new RpcMetrics(),
    guest: new Guest({ sharedDir: config.sharedDir, containers: () => sandbox.list(), log: log.child({ module: 'guest' }) }),
    // The guest's life is the sandbox's: once it is destroyed, the VM powers off,
    // but only after the answer to DestroySandbox has left (see drainThenPowerOff).
    onSandboxDestroyed: () => (guestInit ? drainThenPowerOff('sandbox destroyed') : log.info('sandbox destroyed')),
  };
  core.guest.start();

  const { server, addresses } = await startServer(core, endpoints, log);
  function drainThenPowerOff(reason: string): void {
    let done = false;
    const off = () => {
      if (done) return;
      done = true;
      // A moment for the transports' own write queues (the serial port's) to empty.
      setTimeout(() => powerOff(log, reason), FLUSH_MS);
    };
    server.tryShutdown(off);
    // A client holding a stream open must not keep the VM up.
    setTimeout(off, DRAIN_TIMEOUT_MS);
  }
  log.info(
    { version: AGENT_VERSION, build: agentBuild(), protocols: PROTOCOL_VERSIONS, addresses, config, sources: parsed.sources, guestInit },
    'announce',
  );

  if (config.channel !== 'none' && (guestInit || fs.existsSync('/sys/class/virtio-ports'))) {
    // The port appears shortly after virtio_console loads: look for it without holding up the rest.
    findSerialPort(config.channel).then(
      (device) => {
        serveSerialPort(device, server, log.child({ channel: config.channel }));
        log.info({ channel: config.channel, device }, 'serving on virtio-serial port');
      },
      (err: unknown) => log.warn({ err, channel: config.channel }, 'no virtio-serial agent channel'),
    );
  }
  if (guestInit) {
    handleInitSignals(log, () => sandbox.destroy().catch((err: unknown) => log.error({ err }, 'cleanup before power-off failed')));
    return;
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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
function mountProcIfInit(): void {
  if (process.pid !== 1 || fs.existsSync('/proc/self')) return;
  native.mount('proc', '/proc', 'proc', constants.MS_NOSUID | constants.MS_NODEV | constants.MS_NOEXEC, '');
}

/** An agent must keep serving: log anything that escapes and carry on. */
function guardProcess(log: Logger): void {
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (agent keeps running)'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (agent keeps running)'));
}
