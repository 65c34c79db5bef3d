// The policy's decisions, one function per kind of rule. Each throws the
// PERMISSION_DENIED error naming the rule that denied, or returns.
import { excerpt } from '../errors';
import { isWithin } from '../validate';
import { denied, type Policy, type ShareableNamespace } from './policy';

/**
 * Per protocol version and method: the first rule naming both decides,
 * otherwise the default. agent.Discovery and health are never denied: a
 * client must always be able to learn what it may do.
 */
export function checkRpc(policy: Policy, version: string, method: string): void {
  if (version === 'stable' || version === 'unknown') return;
  const index = policy.rpcs.rules.findIndex((r) =>
    (r.protocols.includes('*') || r.protocols.includes(version)) && (r.methods.includes('*') || r.methods.includes(method)));
  const rule = index >= 0 ? policy.rpcs.rules[index]! : undefined;
  const action = rule?.action ?? policy.rpcs.default;
  if (action === 'allow') return;
  const name = rule ? `rpcs.rules[${index}]${rule.why ? `: ${rule.why}` : ''}` : 'rpcs.default';
  throw denied(policy, name, `${version} ${method}`);
}

const under = (prefixes: readonly string[], p: string) => prefixes.some((prefix) => isWithin(prefix, p));

/** CopyFile's destination (already resolved inside the shared dir). */
export function checkCopyFile(policy: Policy, resolvedPath: string): void {
  if (policy.copyFilePaths && !under(policy.copyFilePaths, resolvedPath)) {
    throw denied(policy, 'copy_file.paths', `CopyFile to ${excerpt(resolvedPath, 200)}`);
  }
}

/** A storage, by driver and mount point. */
export function checkStorage(policy: Policy, driver: string, mountPoint: string): void {
  if (policy.storageDrivers && !policy.storageDrivers.includes(driver)) {
    throw denied(policy, 'storages.drivers', `the ${excerpt(driver, 40)} storage driver`);
  }
  if (policy.storageMountPoints && !under(policy.storageMountPoints, mountPoint)) {
    throw denied(policy, 'storages.mount_points', `a storage mounted at ${excerpt(mountPoint, 200)}`);
  }
}

/** ExecProcess of `program` (the process's args[0]). */
export function checkExec(policy: Policy, program: string, containerId: string): void {
  if (!policy.exec.allowed) throw denied(policy, 'exec.allowed', `exec in container ${containerId}`);
  if (policy.exec.commands && !policy.exec.commands.includes(program)) {
    throw denied(policy, 'exec.commands', `exec of ${excerpt(program, 200)} in container ${containerId}`);
  }
}

/** A container spec that leaves out namespace `ns`, sharing the guest's. */
export function checkHostNamespace(policy: Policy, ns: ShareableNamespace, containerId: string): void {
  if (!policy.containers.hostNamespaces.includes(ns)) {
    throw denied(policy, 'containers.host_namespaces', `container ${containerId} sharing the guest's ${ns} namespace (its spec has no ${ns} namespace)`);
  }
}

/** A privileged spec feature, described by `what`. */
export function checkPrivileged(policy: Policy, what: string, containerId: string): void {
  if (!policy.containers.privileged) throw denied(policy, 'containers.privileged', `${what} in container ${containerId}`);
}
