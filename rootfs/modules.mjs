// Kernel modules by name, with everything they depend on, from the kernel
// package's modules.dep (we run depmod on the package tree first).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const normalize = (n) => n.replace(/-/g, '_');
const nameOf = (file) => normalize(path.basename(file).replace(/\.ko(\..*)?$/, ''));

export function moduleTable(kernel) {
  const dep = path.join(kernel.modules, 'modules.dep');
  if (!existsSync(dep)) execFileSync('depmod', ['-b', path.resolve(kernel.modules, '../../..'), kernel.version]);
  const table = new Map();
  for (const line of readFileSync(dep, 'utf8').split('\n')) {
    const [file, rest] = line.split(':');
    if (file && rest !== undefined) table.set(nameOf(file), { file, deps: rest.trim().split(/\s+/).filter(Boolean) });
  }
  return table;
}

/** Module files (relative to the modules dir) in load order: dependencies first, each once. */
export function resolveModules(table, names) {
  const order = [];
  const add = (file) => { if (!order.includes(file)) order.push(file); };
  for (const name of names) {
    const entry = table.get(normalize(name));
    if (!entry) throw new Error(`kernel module ${name} is not in this kernel`);
    for (const d of [...entry.deps].reverse()) add(d);
    add(entry.file);
  }
  return order;
}

export { nameOf as moduleName };
