// The sandbox: the guest-wide state and every container in it. This is the
// version-free core that all protocol versions' handlers drive.
import fs from 'node:fs/promises';
import path from 'node:path';
import { alreadyExists, failedPrecondition, notFound } from '../errors';
import type { Logger } from '../log';
import { requireGuestInit, requireNamespace } from '../machine';
import { native } from '../native';
import { prepareSpec } from '../oci/spec';
import { validateId } from '../validate';
import { Container, type ContainerDeps } from './container';

export interface SandboxOptions {
  stateDir: string;
  sharedDir: string;
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
}

export class Sandbox {
  private readonly containers = new Map<string, Container>();
  /** Ids being created, so a concurrent duplicate create is refused. */
  private readonly creating = new Set<string>();
  id: string | null = null;

  constructor(
    readonly options: SandboxOptions,
    private readonly deps: ContainerDeps,
    private readonly log: Logger,
  ) {}

  async create(req: SandboxRequest): Promise<void> {
    if (this.id !== null) throw alreadyExists(`sandbox ${this.id} already exists; destroy it first`);
    if (req.sandboxId !== '') validateId('sandbox id', req.sandboxId);
    if (req.kernelModules.length > 0) requireGuestInit('loading kernel modules');
    if (req.hostname !== '') requireNamespace('uts', `setting the hostname to ${req.hostname}`);
    for (const m of req.kernelModules) validateId('kernel module name', m.name);
    if (req.hostname !== '') native.sethostname(req.hostname);
    const dir = path.join(this.options.stateDir, 'sandbox');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'resolv.conf'), req.dns.map((l) => `${l}\n`).join(''));
    this.id = req.sandboxId || 'sandbox';
    this.log.info({ sandbox: this.id, hostname: req.hostname }, 'sandbox created');
  }

  /** Removes every container; the guest's init then powers the machine off (see main). */
  async destroy(): Promise<void> {
    for (const id of [...this.containers.keys()]) await this.removeContainer(id, 0);
    this.id = null;
  }

  async createContainer(id: string, initExecId: string, specJson: string): Promise<Container> {
    validateId('container id', id);
    if (initExecId !== '') validateId('exec id', initExecId);
    if (this.containers.has(id) || this.creating.has(id)) throw alreadyExists(`container ${id} already exists`);
    const { spec, terminal } = prepareSpec(specJson, this.options.sharedDir);
    this.creating.add(id);
    try {
      const bundle = path.join(this.options.stateDir, 'containers', id);
      const container = await Container.create(id, initExecId || id, bundle, spec, terminal, this.deps);
      this.containers.set(id, container);
      this.log.info({ container: id, pid: container.init.pid }, 'container created');
      return container;
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
      throw failedPrecondition(`removing container ${id} failed: ${(err as Error).message}`, err);
    }
    this.containers.delete(id);
    this.log.info({ container: id }, 'container removed');
  }
}
