// Binaries uploaded for an in-place upgrade (UploadAgentBinary), for a guest
// that shares no directory with its host. Each is written as it arrives to
// STATE_DIR/upgrade/uploads/<sha256>.part, checked at the end (size, then
// sha256) and renamed to <sha256>, executable. A cut upload is kept: a new
// one for the same binary resumes at the bytes held, or starts over at 0.
// Uploads a rollback or the running image do not need are removed when the
// next one completes (prune).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { UploadChunk, UploadedBinary } from '../core';
import { failedPrecondition, invalidArgument, resourceExhausted } from '../errors';
import type { Logger } from '../log';

/** The largest binary taken (today's single executable is ~104 MiB). */
export const MAX_UPLOAD_BYTES = 512 * 1024 * 1024;
/** Free space left over after an upload, for the state and the handover. */
const SPARE_BYTES = 64 * 1024 * 1024;
const SHA256 = /^[0-9a-f]{64}$/;

export class BinaryUploads {
  private underWay: string | null = null;

  constructor(
    private readonly stateDir: string,
    private readonly log: Logger,
  ) {}

  get dir(): string {
    return path.join(this.stateDir, 'upgrade', 'uploads');
  }

  /** The completed upload with this sha256, or null. */
  pathOf(sha256: string): string | null {
    if (!SHA256.test(sha256)) return null;
    const file = path.join(this.dir, sha256);
    return fs.existsSync(file) ? file : null;
  }

  async receive(chunks: AsyncIterable<UploadChunk>): Promise<UploadedBinary> {
    const iterator = chunks[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) throw invalidArgument('the upload sent no message: the first names the binary (size, sha256)');
    const { size, sha256 } = first.value;
    if (!SHA256.test(sha256)) throw invalidArgument(`sha256 ${JSON.stringify(sha256.slice(0, 80))} is not 64 lowercase hex digits`);
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_UPLOAD_BYTES) {
      throw invalidArgument(`size ${size} is out of range: a binary of 1 byte to ${MAX_UPLOAD_BYTES} bytes`);
    }
    if (this.underWay) throw failedPrecondition(`an upload of ${this.underWay} is under way: one at a time`);
    this.underWay = sha256;
    try {
      return await this.write(first.value, iterator, size, sha256);
    } finally {
      this.underWay = null;
    }
  }

  private async write(first: UploadChunk, rest: AsyncIterator<UploadChunk>, size: number, sha256: string): Promise<UploadedBinary> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const part = path.join(this.dir, `${sha256}.part`);
    const held = fs.existsSync(part) ? fs.statSync(part).size : 0;
    const start = first.offset;
    if (start !== 0 && start !== held) {
      throw failedPrecondition(`the agent holds ${held} bytes of binary ${sha256}: resume at offset ${held}, or start over at offset 0`);
    }
    const free = fs.statfsSync(this.dir);
    const needed = size - start + SPARE_BYTES;
    if (free.bavail * free.bsize < needed) {
      throw resourceExhausted(`not enough space in ${this.dir} for binary ${sha256}: ${free.bavail * free.bsize} bytes free, ${needed} needed`);
    }
    const file = await fs.promises.open(part, start === 0 ? 'w' : 'r+', 0o600);
    // Hashed as it arrives when it starts at 0; a resumed one is hashed from the file at the end.
    const hash = start === 0 ? crypto.createHash('sha256') : null;
    let written = start;
    try {
      await file.truncate(start);
      for (let chunk: UploadChunk | null = first; chunk; ) {
        if (chunk.sha256 !== '' && chunk.sha256 !== sha256) throw invalidArgument(`a message names binary ${chunk.sha256}, the upload is of ${sha256}`);
        if (chunk.size !== 0 && chunk.size !== size) throw invalidArgument(`a message gives size ${chunk.size}, the upload announced ${size}`);
        if (chunk.offset !== written) throw invalidArgument(`a message starts at offset ${chunk.offset}, the bytes so far end at ${written}: send them in order`);
        if (written + chunk.data.length > size) throw invalidArgument(`more than the ${size} bytes announced (${written + chunk.data.length} by offset ${chunk.offset})`);
        await file.write(chunk.data, 0, chunk.data.length, written);
        hash?.update(chunk.data);
        written += chunk.data.length;
        const next = await rest.next();
        chunk = next.done ? null : next.value;
      }
      if (written !== size) throw failedPrecondition(`the upload of ${sha256} ended at ${written} of ${size} bytes: resume at offset ${written}`);
      await file.sync();
    } finally {
      await file.close();
    }
    const digest = hash ? hash.digest('hex') : await hashFile(part);
    if (digest !== sha256) {
      fs.rmSync(part, { force: true });
      throw failedPrecondition(`the ${size} bytes uploaded have sha256 ${digest}, not ${sha256}: discarded, upload again`);
    }
    fs.chmodSync(part, 0o755);
    fs.renameSync(part, path.join(this.dir, sha256));
    this.log.info({ sha256, size, resumedAt: start || undefined }, 'agent binary uploaded');
    return { size, sha256 };
  }

  /** Removes every upload (and cut upload) but the files in `keep`. */
  prune(keep: readonly string[]): void {
    let entries: string[];
    try {
      entries = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    const kept = new Set(keep.map((f) => path.resolve(f)));
    for (const name of entries) {
      const file = path.join(this.dir, name);
      if (kept.has(file) || name === this.underWay || name === `${this.underWay}.part`) continue;
      try {
        fs.rmSync(file, { force: true });
        this.log.info({ file }, 'removed an uploaded agent binary no longer needed');
      } catch (err) {
        this.log.warn({ err, file }, 'cannot remove an uploaded agent binary');
      }
    }
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

