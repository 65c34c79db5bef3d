// Types of build/archive-release.mjs, for the TypeScript tests that import it.
export function sourceVersion(file?: string): { version: string; protocols: string[] };
export function bundleAnnounce(bundle: string, timeoutMs?: number): Promise<{ version: string; build: string; protocols: string[] } & Record<string, unknown>>;
export function filesUnder(dir: string): string[];
export function sha256File(file: string): string;
export function checksums(dir: string): string;
