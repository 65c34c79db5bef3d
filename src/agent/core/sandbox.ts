// The sandbox: the guest-wide state and every container in it. This is the
// version-free core that all protocol versions' handlers drive.
import fs from 'node:fs/promises';
import path from 'node:path';
import { AgentError, alreadyExists, describe, excerpt, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { requireGuestInit, requireNamespace } from '../machine';
import { native } from '../../native/native';
import { prepareSpec } from '../oci/spec';
import { NO_POLICY, type Policy } from '../policy/policy';
import { checkStorage } from '../policy/rules';
import { StorageManager, type Mounter, type StorageSpec } from '../storage';
import type { SavedStorage } from '../storage/manager';
import type { ProcessIO } from '../process/process-io';
import type { BlockLookup } from '../storage/block';
import { validateId } from '../validate';
import { Container, type ContainerDeps, type RestoredContainer } from './container';
import { RESOLV_CONF_DESTINATION, resolvConfFromDns } from './dns';

export interface SandboxOptions {
  stateDir: string;
  sharedDir: string;
  /** For tests: mount(2) stand-in and virtio-blk lookup roots. */
  storage?: { mounter?: Mounter; blockLookup?: BlockLookup };
  /** Loads kernel modules by name (pid1/kernel-modules.ts). */
  kernelModules?: { load(modules: readonly KernelModuleRequest[]): void };
  /** The operator's policy: container features and storages it allows (none: the agent's own checks only). */
  policy?: Policy;
  /** The image's OCI hooks directory (agent.guest_hooks_dir), or null. */
  guestHooksDir?: string | null;
}

export interface KernelModuleRequest {
  name: string;
  parameters: string[];
}

export interface SandboxRequest {
  sandboxId: string;
  hostname: string;
  dns: string[];
  kernelModules: KernelModuleRequest[];
  /** Mounted in order before the sandbox counts as created; unmounted by destroy(). */
  storages: StorageSpec[];
}

/** The storage owner names: the sandbox's, and each container's. */
const SANDBOX_OWNER = 'sandbox';
/** How long DestroySandbox waits for each container's killed processes. */
const DESTROY_TIMEOUT_S = 10;
const containerOwner = (id: string) => `container:${id}`;

export class Sandbox {
  private readonly containers = new Map<string, Container>();
  /** Ids being created, so a concurrent duplicate create is refused. */
  private readonly creating = new Set<string>();
  /** A CreateSandbox is under way (it awaits mounts): a concurrent one is refused. */
  private sandboxCreating = false;
  id: string | null = null;
  /** CreateSandbox named DNS servers: containers get the sandbox resolv.conf. */
  private dnsGiven = false;

  /** CreateSandbox named DNS servers (what a takeover must know to treat new containers the same). */
  get dnsConfigured(): boolean {
    return this.dnsGiven;
  }
  /** Storages of the sandbox and its containers, reference-counted by mount point. */
  readonly storage: StorageManager;

  constructor(
    readonly options: SandboxOptions,
    private readonly deps: ContainerDeps,
    private readonly log: Logger,
  ) {
    this.storage = new StorageManager({
      sharedDir: options.sharedDir,
      stateDir: options.stateDir,
      log: log.child({ module: 'storage' }),
      ...options.storage,
    });
  }

  async create(req: SandboxRequest): Promise<void> {
    if (this.id !== null) throw alreadyExists(`sandbox ${this.id} already exists; destroy it first`);
    if (this.sandboxCreating) throw alreadyExists('a sandbox is being created');
    this.sandboxCreating = true;
    try {
      await this.createSandbox(req);
    } finally {
      this.sandboxCreating = false;
    }
  }

  private async createSandbox(req: SandboxRequest): Promise<void> {
    validateId('sandbox id', req.sandboxId);
    if (req.kernelModules.length > 0) requireGuestInit('loading kernel modules');
    if (req.hostname !== '') {
      // sethostname(2) takes at most 64 bytes; a resolver wants letters, digits, hyphens and dots.
      if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/.test(req.hostname)) {
        throw invalidArgument(`hostname ${excerpt(req.hostname)} is invalid: use 1-64 letters, digits, '-' and '.', starting and ending with a letter or digit`);
      }
      requireNamespace('uts', `setting the hostname to ${req.hostname}`);
    }
    for (const m of req.kernelModules) validateId('kernel module name', m.name);
    const resolvConf = resolvConfFromDns(req.dns);
    // Modules first: a storage may need one (9p, virtiofs). A loaded module stays loaded.
    if (req.kernelModules.length > 0) {
      if (!this.options.kernelModules) throw failedPrecondition('this agent cannot load kernel modules');
      this.options.kernelModules.load(req.kernelModules);
    }
    // All or nothing: storages first (acquire validates them all before mounting any), undone if a later step fails.
    this.checkStorages(req.storages);
    await this.storage.acquire(SANDBOX_OWNER, req.storages, 'storages');
    try {
      if (req.hostname !== '') native.sethostname(req.hostname);
      await fs.mkdir(path.dirname(this.resolvConfPath), { recursive: true });
      await fs.writeFile(this.resolvConfPath, resolvConf, { mode: 0o644 });
    } catch (err) {
      await this.storage.release(SANDBOX_OWNER).catch((e: unknown) => this.log.error({ err: e }, 'unmounting sandbox storages failed'));
      throw err;
    }
    this.id = req.sandboxId;
    this.dnsGiven = req.dns.length > 0;
    this.log.info({ sandbox: this.id, hostname: req.hostname, storages: req.storages.length }, 'sandbox created');
  }

  /**
   * The sandbox as an earlier agent image left it (a takeover across an exec
   * in place): its id, its storages (mounted already), and its containers,
   * each restored with the stdio `stdio` builds for its processes. A
   * container that cannot be restored (its bundle is gone) is logged and
   * left out; the others are kept. Returns the ids of those left out.
   */
  async restore(saved: { id: string | null; dnsGiven: boolean; storages: SavedStorage[]; containers: RestoredContainer[] }, stdio: (containerId: string, execId: string) => ProcessIO): Promise<string[]> {
    const failed: string[] = [];
    this.id = saved.id;
    this.dnsGiven = saved.dnsGiven;
    this.storage.adopt(saved.storages);
    for (const c of saved.containers) {
      try {
        this.containers.set(c.id, await Container.restore(c, (execId) => stdio(c.id, execId), this.deps));
      } catch (err) {
        failed.push(c.id);
        this.log.error({ err, container: c.id }, 'a container handed over could not be restored; its processes run on unmanaged');
      }
    }
    return failed;
  }

  /**
   * Removes every container, then unmounts every storage (newest first,
   * detaching busy ones); the guest's init then powers the machine off (see main).
   */
  async destroy(): Promise<void> {
    for (const id of [...this.containers.keys()]) await this.removeContainer(id, DESTROY_TIMEOUT_S);
    await this.storage.releaseAll();
    this.id = null;
    this.dnsGiven = false;
  }

  /**
   * Mounts the container's storages, then has the runtime create it. The
   * spec may use a storage's mount point (root.path, a bind-mount source).
   * If the create fails, the storages it mounted are unmounted again.
   */
  /** `spec` is the OCI runtime spec as the client sent it (parsed, not yet trusted: prepareSpec checks it). */
  async createContainer(id: string, initExecId: string, spec: unknown, storages: StorageSpec[] = []): Promise<Container> {
    validateId('container id', id);
    validateId('exec id', initExecId);
    if (this.containers.has(id) || this.creating.has(id)) throw alreadyExists(`container ${id} already exists`);
    const resolvConf = { source: this.resolvConfPath, destination: RESOLV_CONF_DESTINATION };
    const { spec: checked, terminal } = prepareSpec(spec, {
      containerId: id,
      sharedDir: this.options.sharedDir,
      agentBinds: [resolvConf],
      policy: this.policy,
      joinablePids: () => this.list().flatMap((c) => c.runningPids()),
      guestHooksDir: this.options.guestHooksDir ?? null,
    });
    this.checkStorages(storages);
    // DNS reaches containers as in Kata: the sandbox resolv.conf, bind-mounted
    // read-only at /etc/resolv.conf. A spec may name it itself (a bind of
    // exactly that source to /etc/resolv.conf passes the shared-dir check);
    // a spec that mounts nothing at /etc/resolv.conf gets it added when
    // CreateSandbox gave dns lines. A spec with its own /etc/resolv.conf
    // mount keeps it: the client chose.
    if (this.dnsGiven && !(checked.mounts ?? []).some((m) => path.posix.normalize(m.destination) === RESOLV_CONF_DESTINATION)) {
      checked.mounts = [...(checked.mounts ?? []), { ...resolvConf, type: 'bind', options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] }];
    }
    this.creating.add(id);
    try {
      await this.storage.acquire(containerOwner(id), storages, 'storages');
      try {
        const bundle = path.join(this.options.stateDir, 'containers', id);
        const container = await Container.create(id, initExecId, bundle, checked, terminal, this.deps);
        this.containers.set(id, container);
        this.log.info({ container: id, pid: container.init.pid, storages: storages.length }, 'container created');
        return container;
      } catch (err) {
        await this.storage.release(containerOwner(id)).catch((e: unknown) =>
          this.log.error({ err: e, container: id }, 'unmounting the storages of a failed container failed'),
        );
        throw err;
      }
    } finally {
      this.creating.delete(id);
    }
  }

  container(id: string): Container {
    const c = this.containers.get(validateId('container id', id));
    if (!c) throw notFound(`container ${id} not found`);
    return c;
  }

  list(): Container[] {
    return [...this.containers.values()];
  }

  async removeContainer(id: string, timeoutSeconds: number): Promise<void> {
    const c = this.container(id);
    try {
      await c.remove(timeoutSeconds);
    } catch (err) {
      throw withContext(err, `removing container ${id} failed`);
    }
    this.containers.delete(id);
    this.log.info({ container: id }, 'container removed');
    // Storages shared with another container stay mounted until their last user goes.
    try {
      await this.storage.release(containerOwner(id));
    } catch (err) {
      throw withContext(err, `container ${id} was removed but its storages were not all unmounted`);
    }
  }

  private get policy(): Policy {
    return this.options.policy ?? NO_POLICY;
  }

  /** The policy's storage rules, before anything is mounted. */
  private checkStorages(storages: readonly StorageSpec[]): void {
    for (const s of storages) checkStorage(this.policy, s.driver, path.resolve(this.options.sharedDir, s.mountPoint));
  }

  /** The sandbox resolv.conf (written by create()); containers bind-mount it. */
  get resolvConfPath(): string {
    return path.join(this.options.stateDir, 'sandbox', 'resolv.conf');
  }
}

/**
 * `what` prefixed to the error's message. A typed error keeps its kind (the
 * runtime's not-found, a timeout, ...); anything else is a failed precondition.
 */
function withContext(err: unknown, what: string): AgentError {
  const message = `${what}: ${describe(err)}`;
  if (err instanceof AgentError) return new AgentError(err.kind, message, { cause: err });
  return failedPrecondition(message, err);
}
