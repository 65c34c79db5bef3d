// Loading kernel modules by name, dependencies first, from modules.dep (made
// by depmod when the image is built). finit_module comes from our addon.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { excerpt, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { native } from '../../native/native';

export interface ModuleRequest {
  name: string;
  parameters: string[];
}

const normalize = (name: string) => name.replace(/-/g, '_');

/**
 * The running kernel's release, asked of the kernel now. Not os.release(): Node's
 * os module reads uname once, when it loads, and in the single executable that
 * was when its startup snapshot was built, on the build machine.
 */
export function kernelRelease(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/osrelease', 'latin1').trim();
  } catch {
    return os.release(); // no /proc: what Node read at load is all there is
  }
}

export class KernelModules {
  private deps: Map<string, { file: string; deps: string[] }> | null = null;

  constructor(
    private readonly log: Logger,
    private readonly root = path.join('/lib/modules', kernelRelease()),
  ) {}

  /** Loads each module (and what it depends on) unless already loaded. */
  load(modules: readonly ModuleRequest[]): void {
    for (const step of modules.flatMap((m) => this.steps(m))) {
      if (this.loaded(step.name)) continue;
      try {
        native.finitModule(step.file, step.params);
      } catch (err) {
        throw this.failed(step.name, err);
      }
      this.log.debug({ kmod: step.name }, 'kernel module loaded');
    }
  }

  /** As load, with each finit_module on a worker thread: the event loop goes on meanwhile. */
  async loadOffThread(modules: readonly ModuleRequest[]): Promise<void> {
    for (const step of modules.flatMap((m) => this.steps(m))) {
      if (this.loaded(step.name)) continue;
      try {
        await native.finitModuleAsync(step.file, step.params);
      } catch (err) {
        throw this.failed(step.name, err);
      }
      this.log.debug({ kmod: step.name }, 'kernel module loaded');
    }
  }

  /** What loading `m` takes, in order: its dependencies (modules.dep lists the last to load first), then itself. */
  private steps(m: ModuleRequest): Array<{ name: string; file: string; params: string }> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(m.name)) throw invalidArgument(`kernel module name ${excerpt(m.name)} is invalid`);
    const entry = this.table().get(normalize(m.name));
    if (!entry) throw notFound(`kernel module ${m.name} is not in ${this.root}/modules.dep`);
    const step = (file: string, params: string) => ({ name: normalize(path.basename(file).replace(/\.ko(\..*)?$/, '')), file: path.join(this.root, file), params });
    return [...[...entry.deps].reverse().map((dep) => step(dep, '')), step(entry.file, m.parameters.join(' '))];
  }

  private loaded(name: string): boolean {
    return fs.existsSync(`/sys/module/${name}`);
  }

  private failed(name: string, err: unknown) {
    return failedPrecondition(`loading kernel module ${name} failed: ${(err as Error).message}`, err);
  }

  private table() {
    if (this.deps) return this.deps;
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.root, 'modules.dep'), 'utf8');
    } catch (err) {
      throw failedPrecondition(`cannot read ${this.root}/modules.dep: ${(err as Error).message}`, err);
    }
    this.deps = new Map();
    for (const line of text.split('\n')) {
      const [file, rest] = line.split(':');
      if (!file || rest === undefined) continue;
      const name = normalize(path.basename(file).replace(/\.ko(\..*)?$/, ''));
      this.deps.set(name, { file, deps: rest.trim().split(/\s+/).filter(Boolean) });
    }
    return this.deps;
  }
}
