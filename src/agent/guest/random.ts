// ReseedRandomDev: the host hands the guest entropy. Writing to /dev/random
// mixes the bytes into the pool without crediting any entropy (that would need
// the RNDADDENTROPY ioctl), so it can only help, and is allowed anywhere.
import fs from 'node:fs/promises';
import { invalidArgument } from '../errors';

/** Plenty: the kernel's pool is 256 bits; more only costs time. Also bounds what one call makes us write. */
export const MAX_RESEED_BYTES = 4096;

export async function reseedRandom(data: Uint8Array, device = '/dev/random'): Promise<void> {
  if (data.length === 0) throw invalidArgument('ReseedRandomDev needs data: got 0 bytes');
  if (data.length > MAX_RESEED_BYTES) {
    throw invalidArgument(`ReseedRandomDev accepts at most ${MAX_RESEED_BYTES} bytes per call: got ${data.length}`);
  }
  // 'r+': write to an existing device, never create a regular file in its place.
  const fh = await fs.open(device, 'r+');
  try {
    await fh.write(data);
  } finally {
    await fh.close();
  }
}
