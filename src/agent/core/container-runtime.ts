// What the core needs from an OCI runtime. The core owns this interface:
// oci/runtime.ts (crun) implements it, and the core's unit tests put a fake
// behind it.
import type { ProcessIO } from '../process/process-io';

export interface ContainerRuntime {
  /**
   * Creates the container from `bundle`/config.json: its init process, with
   * `io` as stdio, waits for start(). Resolves with the init's pid, which the
   * agent then waits for (process/reaper.ts).
   */
  create(id: string, bundle: string, io: ProcessIO): Promise<number>;
  /** Starts one more process (the OCI process in `processFile`) in a running container. Resolves with its pid. */
  exec(id: string, bundle: string, execId: string, processFile: string, io: ProcessIO): Promise<number>;
  start(id: string): Promise<unknown>;
  pause(id: string): Promise<unknown>;
  resume(id: string): Promise<unknown>;
  /** Applies the OCI LinuxResources in `resourcesFile`. */
  update(id: string, resourcesFile: string): Promise<unknown>;
  /** Deletes the container, killing what still runs in it. */
  delete(id: string): Promise<unknown>;
}
