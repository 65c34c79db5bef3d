// Fuzzing the agent's whole gRPC surface: every method of every service it
// serves (agent.Discovery, agent.v1.AgentService, grpc.health.v1.Health, both
// reflection services), enumerated from the same package definition the
// agent serves (src/protocol.ts's descriptor, merged with health and
// reflection by server/reflection.ts), called with raw bytes through grpc-js
// clients whose serializers are the identity, so anything can go out.
//
// The inputs come from a table of generators (GENERATORS) driven by one
// deterministic PRNG: the same seed gives the same inputs in the same order,
// whatever the answers and their timing. Shared by bench/fuzz.ts (a million
// inputs, a table) and test/integration/fuzz.test.ts (a short run that
// fails on any INTERNAL or UNKNOWN, an agent exit, a leaked fd or a file
// created outside the agent's roots).
//
// Valid mutating calls are kept harmless: the agent runs in namespaces of its
// own (mount, UTS, network) with its shared and state dirs in a temp dir;
// ids in valid messages are unique; no generator builds a real OCI spec, so
// no container is ever started; strings that look like paths carry a marker
// (fuzzmark-<seed>-<n>) so a file made from one anywhere else is found.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import { withServedServices } from '../../src/agent/server/reflection';
import { packageDefinition } from '../../src/protocol';
import { REPO, startAgent, type TestAgent } from './agent-process';
import { agentNodePid, sampleAgent, settledSample, type AgentSample } from './soak';

// ---------------------------------------------------------------- PRNG

/** xoshiro128** seeded through splitmix32: fast, 32-bit, deterministic. */
export class Rng {
  private readonly s = new Uint32Array(4);
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  u32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      b[i] = v & 0xff;
      if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) b[i + 3] = v >>> 24;
    }
    return b;
  }
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

// ---------------------------------------------------------------- what is served

export interface FuzzMethod {
  service: string;
  name: string;
  /** "/package.Service/Method" */
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  type: protobuf.Type;
}

interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestType?: { fileDescriptorProtos?: Buffer[] };
}

/** Every method of every service the agent serves, with its request type, from the served package definition. */
export function servedMethods(): FuzzMethod[] {
  const roots = new Map<Buffer[], protobuf.Root>();
  const rootOf = (files: Buffer[]) => {
    let root = roots.get(files);
    if (!root) {
      const set = { file: files.map((b) => FileDescriptorProto.decode(b)) };
      root = (protobuf.Root as unknown as { fromDescriptor(set: unknown): protobuf.Root }).fromDescriptor(set);
      root.resolveAll();
      roots.set(files, root);
    }
    return root;
  };
  const out: FuzzMethod[] = [];
  for (const [service, def] of Object.entries(withServedServices(packageDefinition()))) {
    const methods = Object.entries(def as Record<string, unknown>).filter(
      (e): e is [string, MethodDef] => typeof (e[1] as MethodDef | null)?.path === 'string',
    );
    for (const [key, m] of methods) {
      const files = m.requestType?.fileDescriptorProtos;
      const name = m.path.slice(m.path.lastIndexOf('/') + 1);
      if (!files) throw new Error(`${m.path} (${key}) carries no file descriptors`);
      const type = rootOf(files).lookupService(service).methods[name]?.resolvedRequestType;
      if (!type) throw new Error(`${m.path}: no request type in its descriptors`);
      out.push({ service, name, path: m.path, requestStream: m.requestStream, responseStream: m.responseStream, type });
    }
  }
  return out;
}

// ---------------------------------------------------------------- wire encoding

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const SGROUP = 3;
const EGROUP = 4;
const I32 = 5;
const MASK64 = (1n << 64n) - 1n;

/** Bytes being built, remembering where each tag and each length prefix is (for the mutating generators). */
class Wire {
  buf = Buffer.allocUnsafe(64);
  length = 0;
  /** Offsets of tags. */
  tags: number[] = [];
  /** Offsets and sizes of length prefixes. */
  lens: Array<{ at: number; size: number }> = [];

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }
  varint(v: bigint | number): this {
    if (typeof v === 'number' && v >= 0 && v <= 0x7fffffff) {
      this.ensure(5);
      let x = v;
      while (x >= 0x80) {
        this.buf[this.length++] = (x & 0x7f) | 0x80;
        x >>>= 7;
      }
      this.buf[this.length++] = x;
      return this;
    }
    if (typeof v === 'bigint' && v >= 0n && v <= 0x7fffffffn) return this.varint(Number(v));
    return this.raw(varintBytes(v));
  }
  tag(field: number, wire: number): this {
    this.tags.push(this.length);
    return field < 1 << 28 ? this.varint(field * 8 + wire) : this.varint((BigInt(field) << 3n) | BigInt(wire));
  }
  /** A length prefix and `inner` after it (its records shifted). */
  lenPrefixed(inner: Wire | Uint8Array): this {
    const at = this.length;
    this.varint(inner.length);
    this.lens.push({ at, size: this.length - at });
    if (inner instanceof Wire) {
      const base = this.length;
      for (const t of inner.tags) this.tags.push(base + t);
      for (const l of inner.lens) this.lens.push({ at: base + l.at, size: l.size });
      this.raw(inner.buf.subarray(0, inner.length));
    } else {
      this.raw(inner);
    }
    return this;
  }
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/** An unsigned varint of the low 64 bits of `v` (negative numbers as two's complement, ten bytes). */
export function varintBytes(v: bigint | number): Uint8Array {
  if (typeof v === 'number' && v >= 0 && v <= 0x7fffffff) {
    const out: number[] = [];
    let x = v;
    while (x >= 0x80) {
      out.push((x & 0x7f) | 0x80);
      x >>>= 7;
    }
    out.push(x);
    return Uint8Array.from(out);
  }
  let x = BigInt(v) & MASK64;
  const out: number[] = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Uint8Array.from(out);
}

const fixed32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const fixed64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v & MASK64);
  return b;
};

// ---------------------------------------------------------------- values

const INT_BOUNDARIES = [
  0n, 1n, -1n, 2n, 127n, 128n, 255n, 256n, 16383n, 16384n, 65535n, 65536n,
  2147483647n, -2147483648n, 2147483648n, 4294967295n, 4294967296n,
  9007199254740991n, 9007199254740992n, 9007199254740993n, -9007199254740993n,
  9223372036854775807n, -9223372036854775808n, 18446744073709551615n,
];
const U32_BOUNDARIES = [0, 1, 0x7f, 0x80, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
/** float bit patterns: NaN, signalling NaN, negative NaN, ±Infinity, -0, the largest, the smallest denormal, 1. */
const FLOAT_BITS = [0x7fc00000, 0x7f800001, 0xffc00000, 0x7f800000, 0xff800000, 0x80000000, 0x7f7fffff, 0x00000001, 0x3f800000];
/** double bit patterns: NaN with payloads, ±Infinity, -0, the largest, the smallest denormal, 2^53, 1. */
const DOUBLE_BITS = [
  0x7ff8000000000000n, 0x7ff0000000000001n, 0xfff8000000000001n, 0x7ff0000000000000n, 0xfff0000000000000n,
  0x8000000000000000n, 0x7fefffffffffffffn, 0x0000000000000001n, 0x4340000000000000n, 0x3ff0000000000000n,
];
/** Bytes that are no UTF-8: a stray continuation byte, 0xff, an overlong "/", a surrogate, past U+10FFFF, a cut sequence. */
const INVALID_UTF8 = [[0x80], [0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x61, 0xc3]].map((b) => Buffer.from(b));
const BIG = 64 * 1024;

export interface GenContext {
  rng: Rng;
  /** A new marker, "fuzzmark-<seed>-<n>": put into path-like strings. */
  marker(): string;
  /** A new valid, unique id ("fuzz-<seed>-<n>"). */
  uniqueId(): string;
  maxMessageBytes: number;
}

type Mode = 'boundary' | 'plain' | 'small';

/** A string field's bytes: boundary values, paths with markers, names the agent knows, invalid UTF-8. */
function stringValue(g: GenContext, mode: Mode, field: protobuf.Field): Buffer {
  const { rng } = g;
  if (mode === 'plain') return Buffer.from(plainString(g, field.name));
  const r = rng.int(100);
  if (r < 8) return Buffer.alloc(0);
  if (r < 11 && mode === 'boundary') return Buffer.alloc(BIG, 'x');
  if (r < 12 && mode === 'boundary') return Buffer.alloc(BIG - 1 + rng.int(3), rng.pick(['a', '/', '\u00e9', '\0']));
  if (r < 22) return Buffer.concat([Buffer.from(rng.pick(['', 'a', 'id-', '/tmp/'])), rng.pick(INVALID_UTF8), Buffer.from(rng.pick(['', 'z']))]);
  if (r < 40) return Buffer.from(pathLike(g));
  if (r < 55) return Buffer.from(plainString(g, field.name));
  if (r < 75) {
    return Buffer.from(rng.pick([
      'a', ' ', '\0', 'x\0y', '.', '..', '/', '-', '--help', '-rf', '%s%n%x', '${HOME}', '$(id)', '`id`', '\n', '\r\n', '\u2028',
      '\u00e9', '\u{1f600}', '\ufeff', '\ud7ff', 'null', 'true', '{}', '[]', '{"ociVersion":"1.0.2"}', '{"args":[]}', '{"process":null}',
      'tmpfs', 'bind', 'local', 'overlay', '9p', 'virtio-blk', 'virtio-fs', 'nfs', 'ext4', 'kataShared',
      '/dev/vda', '/dev/vdb', '/dev/null', '0000:00:02.0', '0000:00:1f.7', 'size=1m', 'ro', 'rbind', 'remount', 'mode=0777',
      'lowerdir=/', 'nosuid', 'IP_FAMILY_V4', 'IP_FAMILY_V6', '127.0.0.1', '::1', '255.255.255.255', '0.0.0.0/0', 'default',
      'lo', 'eth0', 'nameserver 1.1.1.1', 'v1', 'v2', 'v0', '*', 'agent.v1.AgentService', 'grpc.health.v1.Health',
      'agent.v1.CreateContainerRequest', 'agent/v1/agent.proto', 'grpc.reflection.v1.ServerReflection', 'sandbox', 'c'.repeat(257),
    ]));
  }
  if (r < 90) return Buffer.from(asciiRandom(rng, rng.int(80)));
  return rng.bytes(rng.int(64));
}

/** Values a well-behaved client would send, by field name: unique ids, paths inside the shared dir, small numbers. */
function plainString(g: GenContext, name: string): string {
  const { rng } = g;
  if (/_id$|^id$/.test(name)) return g.uniqueId();
  if (/mount_point|^path$|destination/.test(name)) return `${g.marker()}/${rng.pick(['a', 'b/c', 'd.txt'])}`;
  if (name === 'driver') return rng.pick(['tmpfs', 'local', 'bind', 'overlay', '9p', 'virtio-fs', 'virtio-blk']);
  if (name === 'hostname') return `fuzz${rng.int(1000)}`;
  if (name === 'service') return rng.pick(['', 'agent.v1.AgentService', 'agent.Discovery', 'nope']);
  if (/symbol|containing_type/.test(name)) return rng.pick(['agent.v1.AgentService', 'agent.v1.Storage', 'grpc.health.v1.Health', 'nope.Nope']);
  if (name === 'filename' || name === 'file_by_filename') return rng.pick(['agent/v1/agent.proto', 'grpc/health/v1/health.proto', 'nope.proto']);
  return asciiRandom(rng, 1 + rng.int(12));
}

/** Path-like strings, each with a new marker, some trying to leave the roots. */
function pathLike(g: GenContext): string {
  const m = g.marker();
  return g.rng.pick([
    m, `${m}/x`, `./${m}`, `../${m}`, `../../${m}`, `../../../../../../tmp/${m}`, `/tmp/${m}`, `/${m}`, `/var/tmp/${m}`,
    `busybox/${m}`, `busybox/../../${m}`, `${m}/../../../${m}`, `/proc/self/cwd/${m}`, `//tmp//${m}`, `${m}\0/etc`,
    `/run/kata-containers/shared/containers/${m}`, `${m}/${'d/'.repeat(200)}f`,
  ]);
}

function asciiRandom(rng: Rng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + rng.int(95));
  return s;
}

/** A varint-encoded scalar's value. */
function varintValue(g: GenContext, mode: Mode, field: protobuf.Field): bigint {
  const { rng } = g;
  if (field.resolvedType instanceof protobuf.Enum) {
    const values = Object.values(field.resolvedType.values).map(BigInt);
    if (mode === 'plain' || rng.chance(0.6)) return rng.pick(values);
    return rng.pick([...INT_BOUNDARIES, BigInt(values.length), 999999n]);
  }
  if (field.type === 'bool') return mode === 'plain' ? BigInt(rng.int(2)) : rng.pick([0n, 1n, 1n, 2n, 255n, MASK64]);
  if (mode === 'plain') return BigInt(rng.int(field.name === 'signal' ? 65 : 100));
  const r = rng.int(10);
  if (r < 6) return rng.pick(INT_BOUNDARIES);
  if (r < 8) return BigInt(rng.u32());
  return rng.u64();
}

/** Encodes one value of `field` (not repeated) with its tag. */
function encodeField(w: Wire, g: GenContext, mode: Mode, field: protobuf.Field, depth: number, budget: Budget): void {
  const id = field.id;
  if (field instanceof protobuf.MapField) {
    const entry = new Wire();
    entry.tag(1, mapKeyWire(field.keyType));
    // The key: a scalar of keyType (encodeScalar reads only type, name and resolvedType).
    encodeScalar(entry, g, mode, { type: field.keyType, name: `${field.name}_key`, resolvedType: null } as unknown as protobuf.Field);
    // The value: a MapField's type and resolvedType are the value's.
    encodeValueWithTag(entry, g, mode, field, 2, depth, budget);
    w.tag(id, LEN).lenPrefixed(entry);
    return;
  }
  encodeValueWithTag(w, g, mode, field, id, depth, budget);
}

function encodeValueWithTag(w: Wire, g: GenContext, mode: Mode, field: protobuf.Field, id: number, depth: number, budget: Budget): void {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) {
    const inner = depth > 12 ? new Wire() : encodeMessage(g, t, mode, depth + 1, budget);
    w.tag(id, LEN).lenPrefixed(inner);
    return;
  }
  w.tag(id, scalarWire(field.type, t));
  encodeScalar(w, g, mode, field);
}

function encodeScalar(w: Wire, g: GenContext, mode: Mode, field: protobuf.Field): void {
  const { rng } = g;
  switch (field.type) {
    case 'string':
    case 'bytes': {
      const v = field.type === 'bytes' && mode !== 'plain' && rng.chance(0.5)
        ? rng.bytes(mode === 'boundary' && rng.chance(0.05) ? BIG : rng.int(64))
        : stringValue(g, mode, field);
      w.lenPrefixed(v);
      return;
    }
    case 'double':
      w.raw(fixed64(mode === 'plain' ? 0x3ff0000000000000n : rng.pick(DOUBLE_BITS)));
      return;
    case 'fixed64':
    case 'sfixed64':
      w.raw(fixed64(mode === 'plain' ? BigInt(rng.int(100)) : rng.chance(0.5) ? rng.pick(INT_BOUNDARIES) : rng.pick(DOUBLE_BITS)));
      return;
    case 'float':
      w.raw(fixed32(mode === 'plain' ? 0x3f800000 : rng.pick(FLOAT_BITS)));
      return;
    case 'fixed32':
    case 'sfixed32':
      w.raw(fixed32(mode === 'plain' ? rng.int(100) : rng.pick(U32_BOUNDARIES)));
      return;
    case 'sint32':
    case 'sint64': {
      const v = varintValue(g, mode, field);
      w.varint(((v << 1n) ^ (v >> 63n)) & MASK64);
      return;
    }
    default:
      w.varint(varintValue(g, mode, field));
  }
}

function scalarWire(type: string, resolved: protobuf.ReflectionObject | null): number {
  if (resolved instanceof protobuf.Enum) return VARINT;
  switch (type) {
    case 'string':
    case 'bytes':
      return LEN;
    case 'double':
    case 'fixed64':
    case 'sfixed64':
      return I64;
    case 'float':
    case 'fixed32':
    case 'sfixed32':
      return I32;
    default:
      return VARINT;
  }
}
const mapKeyWire = (keyType: string) => scalarWire(keyType, null);

interface Budget {
  left: number;
}

/** A message of `type`: a random subset of its fields, repeated ones a few times (sometimes many), in field order or shuffled. */
function encodeMessage(g: GenContext, type: protobuf.Type, mode: Mode, depth = 0, budget: Budget = { left: mode === 'small' ? 512 : 256 * 1024 }): Wire {
  const { rng } = g;
  const w = new Wire();
  const fields = [...type.fieldsArray];
  if (mode !== 'plain' && rng.chance(0.2)) shuffle(rng, fields);
  for (const field of fields) {
    if (budget.left <= 0) break;
    if (!rng.chance(mode === 'plain' ? 0.8 : 0.6)) continue;
    const repeated = field.repeated || field instanceof protobuf.MapField;
    let count = 1;
    if (repeated) count = mode === 'plain' ? rng.int(3) : rng.pick([0, 1, 1, 2, 3, 5, 16, rng.chance(0.1) ? 1000 : 4]);
    else if (mode !== 'plain' && rng.chance(0.05)) count = 2; // a singular field twice: the last one wins
    const scalarPacked = repeated && !(field instanceof protobuf.MapField) && !(field.resolvedType instanceof protobuf.Type) && scalarWire(field.type, field.resolvedType) !== LEN;
    if (scalarPacked && count > 0 && rng.chance(0.5)) {
      const packed = new Wire();
      for (let i = 0; i < count && budget.left > 0; i++) {
        const before = packed.length;
        encodeScalar(packed, g, mode, field);
        budget.left -= packed.length - before;
      }
      w.tag(field.id, LEN).lenPrefixed(packed);
      continue;
    }
    for (let i = 0; i < count && budget.left > 0; i++) {
      const before = w.length;
      encodeField(w, g, mode, field, depth, budget);
      budget.left -= w.length - before;
    }
  }
  if (mode === 'boundary' && rng.chance(0.1)) {
    // An unknown field of any wire type.
    const id = 1000 + rng.int(100000);
    const wire = rng.pick([VARINT, I64, LEN, I32]);
    w.tag(id, wire);
    if (wire === VARINT) w.varint(rng.u64());
    else if (wire === I64) w.raw(rng.bytes(8));
    else if (wire === I32) w.raw(rng.bytes(4));
    else w.lenPrefixed(rng.bytes(rng.int(32)));
  }
  return w;
}

function shuffle<T>(rng: Rng, a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

// ---------------------------------------------------------------- generators

export interface Generator {
  name: string;
  /** Relative frequency. */
  weight: number;
  what: string;
  make(g: GenContext, m: FuzzMethod, state: GeneratorState): Buffer;
}

/** Per-run state of the generators that walk a base message (truncation at every position). */
export interface GeneratorState {
  truncation: Map<string, { base: Buffer; next: number }>;
}

/** A small valid encoding of a method's request: the base the mutating generators change. */
const baseMessage = (g: GenContext, m: FuzzMethod) => encodeMessage(g, m.type, g.rng.chance(0.5) ? 'small' : 'plain', 0, { left: 400 });

/** A field to put an oversized or truncated length-delimited value in: a string/bytes field of the type, else an unknown one. */
function lenFieldId(rng: Rng, type: protobuf.Type): number {
  const lens = type.fieldsArray.filter((f) => (f.type === 'string' || f.type === 'bytes') && !f.repeated);
  return lens.length > 0 ? rng.pick(lens).id : 15;
}

export const GENERATORS: readonly Generator[] = [
  {
    name: 'random-bytes',
    weight: 14,
    what: 'random bytes, 0 to 4096 of them',
    make: ({ rng }) => rng.bytes(rng.pick([0, 1, 2, 3, 5, 8, 16, 32, 64, 100, 256, 1000, 4096].map((n) => (n > 8 ? rng.int(n) + 1 : n)))),
  },
  {
    name: 'boundary-values',
    weight: 22,
    what: 'valid messages from the schema: empty and 64 KiB strings, invalid UTF-8, paths out of the roots, huge and negative ints, NaN-ish doubles, unknown enum values, repeated and duplicated fields, unknown fields',
    make: (g, m) => encodeMessage(g, m.type, 'boundary').bytes(),
  },
  {
    name: 'plain-valid',
    weight: 4,
    what: 'valid messages with ordinary values: unique ids, marked paths inside the shared dir, small numbers (no real OCI spec: no container starts)',
    make: (g, m) => encodeMessage(g, m.type, 'plain').bytes(),
  },
  {
    name: 'truncated',
    weight: 14,
    what: 'a small valid encoding cut at every position in turn (per method)',
    make: (g, m, state) => {
      let s = state.truncation.get(m.path);
      if (!s || s.next >= s.base.length) {
        let base = baseMessage(g, m).bytes();
        for (let tries = 0; base.length < 2 && tries < 5; tries++) base = baseMessage(g, m).bytes();
        s = { base, next: 0 };
        state.truncation.set(m.path, s);
      }
      return s.base.subarray(0, s.next++);
    },
  },
  {
    name: 'wire-type-flip',
    weight: 10,
    what: "a valid encoding with one tag's wire type changed (to any of 0-7)",
    make: (g, m) => {
      const w = baseMessage(g, m);
      const bytes = w.bytes();
      if (w.tags.length === 0) return Buffer.from([(1 << 3) | g.rng.int(8), ...g.rng.bytes(g.rng.int(8))]);
      const at = g.rng.pick(w.tags);
      const old = bytes[at]! & 7;
      bytes[at] = (bytes[at]! & ~7) | ((old + 1 + g.rng.int(7)) % 8);
      return bytes;
    },
  },
  {
    name: 'length-past-end',
    weight: 9,
    what: 'a length prefix pointing past the end: by a byte, by some, 2^31, 2^32+, 2^63, 2^64-1',
    make: (g, m) => {
      const { rng } = g;
      let w = baseMessage(g, m);
      if (w.lens.length === 0) w = new Wire().tag(lenFieldId(rng, m.type), LEN).lenPrefixed(Buffer.from('abc'));
      const bytes = w.bytes();
      const { at, size } = rng.pick(w.lens);
      const rest = bytes.length - (at + size);
      const claimed = rng.pick([BigInt(rest + 1), BigInt(rest + 1 + rng.int(1000)), 2147483647n, 2147483648n, 4294967301n, 1n << 35n, 1n << 63n, MASK64]);
      return Buffer.concat([bytes.subarray(0, at), varintBytes(claimed), bytes.subarray(at + size)]);
    },
  },
  {
    name: 'mutated',
    weight: 10,
    what: 'a valid encoding with 1-8 byte flips, insertions, deletions or duplications',
    make: (g, m) => {
      const { rng } = g;
      let b = baseMessage(g, m).bytes();
      for (let k = 1 + rng.int(8); k > 0; k--) {
        const at = rng.int(b.length + 1);
        switch (rng.int(5)) {
          case 0:
            if (at < b.length) b[at] = b[at]! ^ (1 << rng.int(8));
            break;
          case 1:
            if (at < b.length) b[at] = rng.pick([0x00, 0xff, 0x80, 0x7f, 0x0a, 0x12]);
            break;
          case 2:
            b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(4)), b.subarray(at)]);
            break;
          case 3:
            b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(4)))]);
            break;
          default:
            b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + rng.int(16)), b.subarray(at)]);
        }
      }
      return b;
    },
  },
  {
    name: 'bad-tags',
    weight: 4,
    what: 'field number 0, the largest and past-the-largest field numbers, an 11-byte varint, an end-group with no start',
    make: ({ rng }) => {
      const pick = rng.int(6);
      if (pick === 0) return Buffer.from([0x00, 0x01]);
      if (pick === 1) return Buffer.concat([varintBytes((((1n << 29n) - 1n) << 3n) | 0n), Buffer.from([0x01])]);
      if (pick === 2) return Buffer.concat([varintBytes((1n << 32n) | 2n), Buffer.from([0x00])]);
      if (pick === 3) return Buffer.concat([Buffer.from([0x08]), Buffer.alloc(10, 0xff), Buffer.from([0x01])]);
      if (pick === 4) return Buffer.from([0x0c]);
      return Buffer.concat([Buffer.from([0x08]), Buffer.alloc(1 + rng.int(20), 0x80)]);
    },
  },
  {
    name: 'deep-nesting',
    weight: 1.5,
    what: 'groups or length-delimited messages nested 10 to 100,000 deep, in an unknown or a known field',
    make: ({ rng, maxMessageBytes }) => {
      const depth = rng.pick([10, 100, 1000, 10_000, 100_000]);
      const id = rng.chance(0.5) ? 1 : 15;
      if (rng.chance(0.5)) {
        // Start-group / end-group pairs, properly matched (or, one time in four, one end short).
        // Field 1 or 15: one-byte tags.
        const ends = rng.chance(0.25) ? depth - 1 : depth;
        return Buffer.concat([Buffer.alloc(depth, (id << 3) | SGROUP), Buffer.alloc(ends, (id << 3) | EGROUP)]);
      }
      // LEN fields inside LEN fields, within half the size limit: the sizes from the inside out, then the prefixes from the outside in.
      const payload = Buffer.from([0x08, 0x01]);
      const tag = varintBytes((id << 3) | LEN);
      const sizes = [payload.length];
      while (sizes.length < depth) {
        const inner = sizes[sizes.length - 1]!;
        const next = tag.length + (inner < 0x80 ? 1 : inner < 0x4000 ? 2 : inner < 0x200000 ? 3 : 4) + inner;
        if (next > maxMessageBytes / 2) break;
        sizes.push(next);
      }
      const out = Buffer.alloc(sizes[sizes.length - 1]!);
      let pos = 0;
      for (let i = sizes.length - 1; i >= 1; i--) {
        out.set(tag, pos);
        pos += tag.length;
        for (let n = sizes[i - 1]!; ; n >>>= 7) {
          if (n < 0x80) {
            out[pos++] = n;
            break;
          }
          out[pos++] = (n & 0x7f) | 0x80;
        }
      }
      out.set(payload, pos);
      return out;
    },
  },
  {
    name: 'many-repeated',
    weight: 1.5,
    what: 'one repeated field with 1,000 to 100,000 elements (packed or not), or as many unknown fields',
    make: (g, m) => {
      const { rng } = g;
      const count = rng.pick([1000, 1000, 10_000, 100_000]);
      const repeated = m.type.fieldsArray.filter((f) => f.repeated || f instanceof protobuf.MapField);
      const w = new Wire();
      if (repeated.length === 0) {
        for (let i = 0; i < count; i++) w.tag(1 + (i % 20), VARINT).varint(i);
        return w.bytes();
      }
      const field = rng.pick(repeated);
      const budget = { left: Math.floor(g.maxMessageBytes * 0.9) };
      for (let i = 0; i < count && budget.left > 0; i++) {
        const before = w.length;
        encodeField(w, g, 'small', field, 0, budget);
        budget.left -= w.length - before;
      }
      return w.bytes();
    },
  },
  {
    name: 'oversized',
    weight: 0.15,
    what: 'one string field (or an unknown field) making the message max_message_bytes -64, -1, 0, +1 or +4096 bytes long',
    make: ({ rng, maxMessageBytes }, m) => {
      const target = maxMessageBytes + rng.pick([-64, -1, 0, 1, 4096]);
      const tag = varintBytes((lenFieldId(rng, m.type) << 3) | LEN);
      // tag + length prefix + value = target
      let n = target - tag.length - 5;
      while (tag.length + varintBytes(n).length + n < target) n++;
      while (tag.length + varintBytes(n).length + n > target) n--;
      return Buffer.concat([tag, varintBytes(n), Buffer.alloc(n, rng.pick(['x', '/', '\0']))]);
    },
  },
];

// ---------------------------------------------------------------- the run

/** Unary methods that wait for an event (answered when one happens): called with a short deadline. */
const LONG_POLLS = new Set(['/agent.v1.AgentService/GetOOMEvent']);
const LONG_POLL_MS = 50;
/** Server streams that stay open (health Watch): cancelled this long after the call (or at its first message). */
const STREAM_OPEN_MS = 50;

export interface FuzzOptions {
  /** grpc-js target, e.g. unix:/tmp/x/agent.sock */
  target: string;
  inputs: number;
  seed: number;
  channels?: number;
  /** Calls in flight per channel. */
  concurrency?: number;
  maxMessageBytes: number;
  /** Deadline of an ordinary call. */
  deadlineMs?: number;
  /** Stops the run early when it returns false (the agent died). */
  alive?: () => boolean;
  /** How many INTERNAL/UNKNOWN examples to keep. */
  keepFailures?: number;
  /** Called every progressEvery inputs; fuzzSession adds a sample of the agent. */
  onProgress?: (done: number, elapsedMs: number, codes: Record<string, number>, agent?: AgentSample) => void;
  progressEvery?: number;
}

export interface FuzzFailure {
  index: number;
  path: string;
  generator: string;
  code: string;
  details: string;
  input: Buffer;
}

export interface FuzzResult {
  seed: number;
  inputs: number;
  durationMs: number;
  /** service -> code -> count (and "inputs"). */
  byService: Map<string, Map<string, number>>;
  byGenerator: Map<string, Map<string, number>>;
  /** Inputs sent to each method path (every served method is listed). */
  byMethod: Map<string, number>;
  codes: Record<string, number>;
  failures: FuzzFailure[];
  /** INTERNAL or UNKNOWN answers in all. */
  internal: number;
  unknown: number;
  /** Calls that hit their deadline although the method answers at once. */
  slow: Array<{ path: string; generator: string; index: number }>;
  /** The first few answers of each status code: method, generator, message, the input's start. */
  examples: Map<string, Array<{ index: number; path: string; generator: string; details: string; input: string }>>;
  /** The longest status message seen, and where. */
  longestDetails: { length: number; path: string; generator: string };
  stoppedEarly: string | null;
  /** The services fuzzed (described, listed by the agent's reflection, answered); those described but not listed; those listed but answered UNIMPLEMENTED. */
  services: string[];
  notListed: string[];
  unanswered: string[];
}

const codeName = (code: number) => grpc.status[code] ?? `CODE_${code}`;
const identity = (b: Buffer) => b;

/** The LEN fields numbered `field` at the top level of a message. */
function lenFields(bytes: Uint8Array, field: number): Uint8Array[] {
  const r = protobuf.Reader.create(bytes);
  const out: Uint8Array[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === field && (tag & 7) === LEN) out.push(r.bytes());
    else r.skipType(tag & 7);
  }
  return out;
}

/** The services the agent at `client` lists through reflection (v1 ListServices), or null when it does not answer. */
function listServices(client: grpc.Client): Promise<string[] | null> {
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', identity, identity, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    let names: string[] | null = null;
    call.on('data', (res: Buffer) => {
      try {
        // ServerReflectionResponse.list_services_response (6) . service (1) . name (1)
        names = lenFields(res, 6).flatMap((list) => lenFields(list, 1)).flatMap((svc) => lenFields(svc, 1)).map((b) => Buffer.from(b).toString());
      } catch {
        names = null;
      }
    });
    call.on('error', () => {});
    call.on('status', () => resolve(names));
    call.write(Buffer.from([0x3a, 0x01, 0x2a])); // list_services (7): "*"
    call.end();
  });
}

export interface FuzzInput {
  index: number;
  method: FuzzMethod;
  generator: Generator;
  input: Buffer;
}

/**
 * The inputs of a run, in order: for each, a method and a generator drawn
 * from the seed's PRNG, then the generator's bytes. The same seed and
 * methods give the same inputs, so any one can be made again (inputAt).
 */
export function* fuzzInputs(seed: number, methods: readonly FuzzMethod[], maxMessageBytes: number): IterableIterator<FuzzInput> {
  const rng = new Rng(seed);
  const seedTag = (seed >>> 0).toString(16);
  let markers = 0;
  let ids = 0;
  const g: GenContext = {
    rng,
    marker: () => `fuzzmark-${seedTag}-${markers++}`,
    uniqueId: () => `fuzz-${seedTag}-${ids++}`,
    maxMessageBytes,
  };
  const state: GeneratorState = { truncation: new Map() };
  const totalWeight = GENERATORS.reduce((s, x) => s + x.weight, 0);
  const pickGenerator = () => {
    let r = (rng.u32() / 0x1_0000_0000) * totalWeight;
    for (const gen of GENERATORS) if ((r -= gen.weight) < 0) return gen;
    return GENERATORS[0]!;
  };
  for (let index = 0; ; index++) {
    const method = methods[rng.int(methods.length)]!;
    const generator = pickGenerator();
    yield { index, method, generator, input: generator.make(g, method, state) };
  }
}

/** Input number `index` of the run with this seed and these methods. */
export function inputAt(seed: number, methods: readonly FuzzMethod[], maxMessageBytes: number, index: number): FuzzInput {
  for (const x of fuzzInputs(seed, methods, maxMessageBytes)) if (x.index === index) return x;
  throw new Error('unreachable');
}

/**
 * The methods a run fuzzes: the described ones whose service the agent at
 * `target` lists through reflection and answers. A listed service is probed
 * with one empty request to a unary reading method (Get*, List*, Check,
 * Negotiate); UNIMPLEMENTED there means listed but not served (`unanswered`).
 */
export async function fuzzedMethods(target: string): Promise<{ methods: FuzzMethod[]; listed: string[] | null; unanswered: string[] }> {
  const described = servedMethods();
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
    const listed = await listServices(client);
    const unanswered: string[] = [];
    for (const service of listed ?? []) {
      const probe = described.find((m) => m.service === service && !m.requestStream && !m.responseStream && /^(Get|List|Check$|Negotiate$)/.test(m.name));
      if (!probe) continue;
      const code = await new Promise<number>((resolve) =>
        client.makeUnaryRequest(probe.path, identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) =>
          resolve(err ? err.code : grpc.status.OK)));
      if (code === grpc.status.UNIMPLEMENTED) unanswered.push(service);
    }
    const methods = listed ? described.filter((m) => listed.includes(m.service) && !unanswered.includes(m.service)) : described;
    if (methods.length === 0) throw new Error(`the agent serves none of the described services (it lists ${listed?.join(', ')})`);
    return { methods, listed, unanswered };
  } finally {
    client.close();
  }
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzResult> {
  const described = servedMethods();
  const channels = Array.from({ length: o.channels ?? 4 }, () =>
    new grpc.Client(o.target, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    }));
  await Promise.all(channels.map((c) => new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())))));
  // The descriptor may describe services this agent does not serve (a protocol version not yet wired): the agent says which it serves.
  const { methods, listed, unanswered } = await fuzzedMethods(o.target);
  const inputs = fuzzInputs(o.seed, methods, o.maxMessageBytes);

  const result: FuzzResult = {
    seed: o.seed, inputs: 0, durationMs: 0, byService: new Map(), byGenerator: new Map(),
    byMethod: new Map(methods.map((m) => [m.path, 0])), codes: {}, failures: [], examples: new Map(),
    internal: 0, unknown: 0, slow: [], longestDetails: { length: 0, path: '', generator: '' }, stoppedEarly: null,
    services: [...new Set(methods.map((m) => m.service))],
    notListed: [...new Set(described.map((m) => m.service))].filter((svc) => listed !== null && !listed.includes(svc)),
    unanswered,
  };
  const bump = (map: Map<string, Map<string, number>>, key: string, code: string) => {
    let m = map.get(key);
    if (!m) map.set(key, (m = new Map()));
    m.set('inputs', (m.get('inputs') ?? 0) + 1);
    m.set(code, (m.get(code) ?? 0) + 1);
  };
  const keep = o.keepFailures ?? 20;
  const record = (index: number, m: FuzzMethod, gen: Generator, input: Buffer, code: number, details: string, deadlineHit: boolean) => {
    const name = codeName(code);
    result.codes[name] = (result.codes[name] ?? 0) + 1;
    bump(result.byService, m.service, name);
    bump(result.byGenerator, gen.name, name);
    result.byMethod.set(m.path, (result.byMethod.get(m.path) ?? 0) + 1);
    let examples = result.examples.get(name);
    if (!examples) result.examples.set(name, (examples = []));
    if (examples.length < 3) examples.push({ index, path: m.path, generator: gen.name, details: details.slice(0, 200), input: hex(input, 24) });
    if (details.length > result.longestDetails.length) result.longestDetails = { length: details.length, path: m.path, generator: gen.name };
    if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN) {
      if (code === grpc.status.INTERNAL) result.internal++;
      else result.unknown++;
      if (result.failures.length < keep) result.failures.push({ index, path: m.path, generator: gen.name, code: name, details: details.slice(0, 300), input: Buffer.from(input) });
    }
    if (deadlineHit && result.slow.length < keep) result.slow.push({ path: m.path, generator: gen.name, index });
  };

  const call = (client: grpc.Client, m: FuzzMethod, input: Buffer): Promise<{ code: number; details: string; deadlineHit: boolean }> => {
    const longPoll = LONG_POLLS.has(m.path);
    const deadlineMs = longPoll ? LONG_POLL_MS : (o.deadlineMs ?? 20_000);
    const deadline = Date.now() + deadlineMs;
    return new Promise((resolve) => {
      const done = (code: number, details: string) =>
        resolve({ code, details, deadlineHit: code === grpc.status.DEADLINE_EXCEEDED && !longPoll });
      if (!m.requestStream && !m.responseStream) {
        client.makeUnaryRequest(m.path, identity, identity, input, new grpc.Metadata(), { deadline }, (err) =>
          done(err ? err.code : grpc.status.OK, err?.details ?? ''));
        return;
      }
      if (!m.requestStream) {
        const stream = client.makeServerStreamRequest(m.path, identity, identity, input, new grpc.Metadata(), { deadline });
        let cancelled = false;
        let answered = false;
        const cancel = () => {
          if (!cancelled) {
            cancelled = true;
            stream.cancel();
          }
        };
        const timer = setTimeout(cancel, STREAM_OPEN_MS);
        stream.on('data', () => {
          answered = true;
          cancel();
        });
        stream.on('error', () => {});
        stream.on('status', (s: grpc.StatusObject) => {
          clearTimeout(timer);
          // Cancelled by us after its first message: the stream worked (open and silent stays CANCELLED).
          done(cancelled && answered && s.code === grpc.status.CANCELLED ? grpc.status.OK : s.code, s.details);
        });
        return;
      }
      const stream = m.responseStream
        ? client.makeBidiStreamRequest(m.path, identity, identity, new grpc.Metadata(), { deadline })
        : client.makeClientStreamRequest(m.path, identity, identity, new grpc.Metadata(), { deadline }, () => {});
      stream.on('data', () => {});
      stream.on('error', () => {});
      stream.on('status', (s: grpc.StatusObject) => done(s.code, s.details));
      stream.write(input);
      stream.end();
    });
  };

  const perChannel = o.concurrency ?? 16;
  const limit = perChannel * channels.length;
  const t0 = performance.now();
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const progressEvery = o.progressEvery ?? 50_000;
  // grpc-js builds an Error with a stack for every failed call; most calls fail, and stacks through source maps are dear.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let index = 0; index < o.inputs; index++) {
      if (o.alive && !o.alive()) {
        result.stoppedEarly = `the agent exited after ${index} inputs`;
        break;
      }
      while (inFlight >= limit) await new Promise<void>((r) => (wake = r));
      const { method: m, generator: gen, input } = inputs.next().value;
      inFlight++;
      result.inputs++;
      void call(channels[index % channels.length]!, m, input).then(({ code, details, deadlineHit }) => {
        record(index, m, gen, input, code, details, deadlineHit);
        inFlight--;
        const w = wake;
        wake = null;
        w?.();
      });
      if (o.onProgress && (index + 1) % progressEvery === 0) o.onProgress(index + 1, performance.now() - t0, result.codes);
    }
    while (inFlight > 0) await new Promise<void>((r) => (wake = r));
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  result.durationMs = performance.now() - t0;
  for (const c of channels) c.close();
  return result;
}

// ---------------------------------------------------------------- an agent to fuzz, and what it did

/** The agent's max_message_bytes during a fuzz run: small enough that oversized inputs are cheap. */
export const FUZZ_MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * Starts the bundled agent for fuzzing: its own mount, UTS and network
 * namespaces, at its default log level (info: one line per failed call), of
 * which only warnings and errors are kept here.
 */
export function startFuzzAgent(bundle?: string): Promise<TestAgent> {
  return startAgent({
    ...(bundle ? { bundle } : {}),
    unshare: ['--net'],
    args: ['--log-level', 'info', '--max-message-bytes', String(FUZZ_MAX_MESSAGE_BYTES)],
    keepLine: (l) => /"level":[4-6]0[,}]/.test(l),
  });
}

/** Every path under the agent's temp dir outside its shared and state dirs (the socket, and whatever else appears). */
export function outsideRoots(agent: TestAgent): string[] {
  const skip = new Set([agent.sharedDir, agent.stateDir]);
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (skip.has(p)) continue;
      out.push(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(agent.dir);
  return out.sort();
}

/**
 * Entries named after this run's markers (fuzzmark-<seed>-) where a path
 * escaping the roots would land: the temp dir (a few levels), /, /var/tmp,
 * /run, the repository (the agent's working directory) — anywhere but the
 * agent's shared and state dirs.
 */
export function markerHits(seed: number, agent: TestAgent): string[] {
  const prefix = `fuzzmark-${(seed >>> 0).toString(16)}-`;
  const skip = new Set([agent.sharedDir, agent.stateDir, path.join(REPO, 'node_modules'), path.join(REPO, '.git'), '/proc', '/sys', '/dev']);
  const hits: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (skip.has(p)) continue;
      if (e.name.includes(prefix)) hits.push(p);
      if (depth > 1 && e.isDirectory()) walk(p, depth - 1);
    }
  };
  walk(os.tmpdir(), 4);
  for (const d of ['/', '/var/tmp', '/run', '/root', REPO]) walk(d, 1);
  return [...new Set(hits)].sort();
}

export interface FuzzSession {
  result: FuzzResult;
  before: AgentSample;
  after: AgentSample;
  /** The agent's exit, if it exited: code or signal. */
  exited: string | null;
  /** Paths created outside the agent's roots, and marker-named entries found anywhere else. */
  outside: string[];
  markers: string[];
  /** The agent's error lines (INTERNAL errors log their cause). */
  errorLogs: Array<Record<string, unknown>>;
}

/**
 * Starts an agent (today's bundle, or `bundle`), fuzzes it, settles, samples
 * and looks for files outside its roots; always stops the agent.
 */
export async function fuzzSession(o: Omit<FuzzOptions, 'target' | 'maxMessageBytes' | 'alive'> & { bundle?: string }): Promise<FuzzSession> {
  const agent = await startFuzzAgent(o.bundle);
  let exited: string | null = null;
  agent.child.once('exit', (code, signal) => (exited = signal ?? String(code)));
  try {
    const pid = agentNodePid(agent.child.pid!, o.bundle);
    const outsideBefore = new Set(outsideRoots(agent));
    const markersBefore = new Set(markerHits(o.seed, agent));
    const target = `unix:${agent.addr.slice('unix://'.length)}`;
    // Warm-up on the same kind of connections, so the sample before counts them as after.
    await runFuzz({ ...o, target, inputs: 200, seed: o.seed ^ 0x5a5a5a5a, maxMessageBytes: FUZZ_MAX_MESSAGE_BYTES, onProgress: undefined });
    const before = await settledSample(pid);
    const onProgress = o.onProgress && ((done: number, ms: number, codes: Record<string, number>) => {
      let sample: AgentSample | undefined;
      try {
        sample = sampleAgent(pid);
      } catch {
        // Gone: the run stops at the next input.
      }
      o.onProgress!(done, ms, codes, sample);
    });
    const result = await runFuzz({ ...o, target, maxMessageBytes: FUZZ_MAX_MESSAGE_BYTES, alive: () => exited === null, onProgress });
    const after = exited === null ? await settledSample(pid) : before;
    return {
      result, before, after, exited,
      outside: outsideRoots(agent).filter((p) => !outsideBefore.has(p)),
      markers: markerHits(o.seed, agent).filter((p) => !markersBefore.has(p)),
      errorLogs: agent.logs().filter((l) => Number(l['level']) >= 50),
    };
  } finally {
    await agent.stop();
  }
}

// ---------------------------------------------------------------- the report

function hex(b: Buffer, n = 48): string {
  return `${b.subarray(0, n).toString('hex')}${b.length > n ? '…' : ''} (${b.length} bytes)`;
}

/** The fuzz table: inputs and statuses per service and per generator, the agent before and after, the first failures. */
export function formatFuzzReport(s: FuzzSession, extra: { channels: number; concurrency: number }): string {
  const r = s.result;
  const codes = Object.entries(r.codes).sort((a, b) => b[1] - a[1]).map(([c]) => c);
  const table = (title: string, rows: Map<string, Map<string, number>>) => {
    const head = [title, 'inputs', ...codes];
    const body = [...rows.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([k, m]) => [k, String(m.get('inputs') ?? 0), ...codes.map((c) => String(m.get(c) ?? 0))]);
    const total = ['total', String(r.inputs), ...codes.map((c) => String(r.codes[c] ?? 0))];
    const all = [head, ...body, total];
    const width = head.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
    const fmt = (row: string[]) => row.map((v, i) => (i === 0 ? v.padEnd(width[i]!) : v.padStart(width[i]!))).join('  ');
    return [fmt(head), width.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt), fmt(total)].join('\n');
  };
  const mib = (k: number) => (k / 1024).toFixed(1);
  const lines = [
    `fuzz: ${r.inputs} inputs, seed ${r.seed} (0x${(r.seed >>> 0).toString(16)}), ${extra.channels} channels x ${extra.concurrency} in flight, ` +
      `max_message_bytes ${FUZZ_MAX_MESSAGE_BYTES}, ${(r.durationMs / 1000).toFixed(1)} s (${Math.round(r.inputs / (r.durationMs / 1000))} inputs/s)` +
      (r.stoppedEarly ? `; STOPPED EARLY: ${r.stoppedEarly}` : ''),
    `services: ${r.services.join(', ')} (${r.byMethod.size} methods, ${Math.min(...r.byMethod.values())} to ${Math.max(...r.byMethod.values())} inputs each)` +
      (r.notListed.length ? `; described but not listed by reflection, so not fuzzed: ${r.notListed.join(', ')}` : '') +
      (r.unanswered.length ? `; LISTED BY REFLECTION BUT ANSWERED UNIMPLEMENTED, so not fuzzed: ${r.unanswered.join(', ')}` : ''),
    '',
    table('service', r.byService),
    '',
    table('generator', r.byGenerator),
    '',
    `INTERNAL: ${r.internal}   UNKNOWN: ${r.unknown}   agent exits/restarts: ${s.exited === null ? 0 : `1 (${s.exited})`}   ` +
      `deadline hit by a method that answers at once: ${r.slow.length}${r.slow.length ? ` (${r.slow.slice(0, 3).map((x) => `#${x.index} ${x.path} ${x.generator}`).join('; ')})` : ''}`,
    `agent before -> after (settled): fds ${s.before.fds} -> ${s.after.fds}, VmRSS ${mib(s.before.vmRssKiB)} -> ${mib(s.after.vmRssKiB)} MiB, ` +
      `RssAnon ${mib(s.before.rssAnonKiB)} -> ${mib(s.after.rssAnonKiB)} MiB, children ${s.before.children} -> ${s.after.children}`,
    `files created outside the shared and state dirs: ${s.outside.length ? s.outside.join(', ') : 'none'}; marker-named entries elsewhere: ${s.markers.length ? s.markers.join(', ') : 'none'}`,
    `longest status message: ${r.longestDetails.length} characters (${r.longestDetails.path}, ${r.longestDetails.generator})`,
  ];
  lines.push('', 'an example of each status:');
  for (const [code, list] of [...r.examples.entries()].sort()) {
    const e = list[0]!;
    lines.push(`  ${code.padEnd(20)} #${e.index} ${e.path} [${e.generator}] ${JSON.stringify(e.details.slice(0, 120))}`);
  }
  if (r.failures.length) {
    lines.push('', `first ${r.failures.length} INTERNAL/UNKNOWN answers:`);
    for (const f of r.failures) lines.push(`  #${f.index} ${f.path} [${f.generator}] ${f.code}: ${JSON.stringify(f.details)}\n      input ${hex(f.input)}`);
  }
  if (s.errorLogs.length) {
    lines.push('', `agent error log lines: ${s.errorLogs.length}; the first:`);
    for (const l of s.errorLogs.slice(0, 5)) lines.push(`  ${JSON.stringify(l).slice(0, 400)}`);
  }
  return lines.join('\n');
}
