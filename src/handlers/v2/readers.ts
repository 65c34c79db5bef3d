// The readers v2 reads a process's output through, per output stream: the
// client's (named in ReadOutput, "v2" by default) and the stream's own
// (STREAM_READER). A ReadOutput stream keeps the client's reader a little
// behind what it sent, even at the end (the client acknowledges by the
// offset it asks for next, so bytes it lost on the way are still held);
// ReleaseProcess is the client saying it has the output it wanted, so every
// v2 reader of the process then counts as having reached the end, and an
// exec nobody else (v1) is still reading is forgotten.
import type { Container } from '../../agent/core/container';
import type { Logger } from '../../agent/log';
import type { ContainerProcess } from '../../agent/process/container-process';
import type { OutputStream } from '../../agent/stdio/output-stream';
import { DEFAULT_READER, STREAM_READER } from './conversions';

export class V2Readers {
  private readonly used = new WeakMap<OutputStream, Set<string>>();

  /** `name` reads `stream` through v2. */
  note(stream: OutputStream, name: string): void {
    let names = this.used.get(stream);
    if (!names) this.used.set(stream, (names = new Set()));
    names.add(name);
  }

  /**
   * Every v2 reader of the process's streams, the default one too, at the
   * end of each stream that has ended (one that has not, held open by a
   * process the exec left behind, stays as it is). After acknowledge().
   */
  async finish(container: Container, proc: ContainerProcess, signal: AbortSignal, log: Logger): Promise<void> {
    for (const stream of ['stdout', 'stderr'] as const) {
      const out = proc.io[stream];
      if (!out?.ended) continue;
      for (const name of new Set([DEFAULT_READER, STREAM_READER, ...(this.used.get(out) ?? [])])) {
        // At the final offset of an ended stream: answered at once, end of stream, no bytes.
        await container.readOutput(proc.execId, stream, name, out.end, 1, signal).catch((err: unknown) => {
          // Forgotten already: the readers before this one were the last it waited for.
          log.debug({ err, reader: name, stream }, 'a v2 reader could not be moved to the end');
        });
      }
    }
  }
}
