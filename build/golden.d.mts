// Types of build/golden.mjs, for the TypeScript tests that import it.
import type protobuf from 'protobufjs';

export interface GoldenEntry {
  type: string;
  variant: string;
  bin: string;
  json: string;
  bytes: number;
  bin_sha256: string;
  json_sha256: string;
}
export interface GoldenIndex {
  format: number;
  generator: string;
  root_package: string;
  proto_files: string[];
  json_options: Record<string, unknown>;
  messages: GoldenEntry[];
}

export const GOLDEN_FORMAT: number;
export const ROOT_PACKAGE: string;
export const JSON_OPTIONS: protobuf.IConversionOptions;
export function protoFiles(protoDir: string): string[];
export function loadProtos(protoDir?: string): protobuf.Root;
export function messageTypes(root: protobuf.Root): protobuf.Type[];
export function fullName(t: protobuf.ReflectionObject): string;
export function packageOf(t: protobuf.Type): string;
export function variantsOf(type: protobuf.Type): Array<{ variant: string; object: Record<string, unknown> }>;
export function encodeMessage(type: protobuf.Type, object: Record<string, unknown>): { bytes: Buffer; json: Record<string, unknown> };
export function writeGolden(outDir: string, protoDir?: string): GoldenIndex;
export function verifyGolden(goldenDir: string, root: protobuf.Root, filter?: (m: GoldenEntry) => boolean): string[];
export function jsonDifference(a: unknown, b: unknown, at: string): string | null;
