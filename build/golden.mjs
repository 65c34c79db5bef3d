// Golden encodings of the protocol (docs/compatibility.md, "Golden encodings"):
// for every message type of agent.Discovery, agent.v1, agent.v2 (every type
// under the `agent` package tree, so a later version is covered without a
// change here), representative messages with every field set, written as
// their encoded bytes (NAME.bin) and the JSON of the decoded message
// (NAME.json), with an index (index.json) naming each file and its sha256.
//
// build/archive-release.mjs writes them into every release archive
// (test/fixtures/releases/<version>/golden/); test/compat/golden.test.ts
// decodes each archived file with today's protos, re-encodes it and requires
// the same bytes and the same JSON. A changed field number, type, enum value
// or name shows up there; an added field does not (it stays unset).
//
// Variants of each type:
// - "typical": small values (one-byte varints), short strings, one element
//   more than none in repeated fields and maps, the first member of each oneof;
// - "extremes": boundary values that tell types apart on the wire and in JSON
//   (int32 near -2^31, uint32 above 2^31, int64 near -2^63, uint64 near 2^64,
//   non-ASCII strings, bytes with 0x00/0x80/0xff, the highest enum value,
//   three elements, two map entries);
// - "typical.MEMBER": the typical message with another member of a oneof set.
// Values depend on the type, field name and number, so two fields swapping
// numbers or names decode to different JSON.
//
// JSON: protobufjs's toObject with field names as in the .proto files,
// 64-bit integers as decimal strings, enums by name, bytes as base64, unset
// fields left out (JSON_OPTIONS). The generator is deterministic.
//   node build/golden.mjs OUT_DIR [PROTO_DIR]    (default PROTO_DIR: proto/)
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const GOLDEN_FORMAT = 1;
/** The root package: every message type below it gets golden encodings. */
export const ROOT_PACKAGE = 'agent';
export const JSON_OPTIONS = { longs: String, enums: String, bytes: String, defaults: false, arrays: false, objects: false, oneofs: false, json: true };
const MAX_DEPTH = 6;

/** Every .proto file under `protoDir`, relative to it. */
export function protoFiles(protoDir) {
  const walk = (dir) =>
    readdirSync(dir).flatMap((name) => {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) return walk(full);
      return name.endsWith('.proto') ? [path.relative(protoDir, full)] : [];
    });
  return walk(protoDir).sort();
}

/** The protos of `protoDir` as a resolved protobufjs Root (field names as written). */
export function loadProtos(protoDir = path.join(repo, 'proto')) {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => path.join(protoDir, target);
  root.loadSync(protoFiles(protoDir), { keepCase: true });
  root.resolveAll();
  return root;
}

/** Every message type under ROOT_PACKAGE (nested ones too), by full name without the leading dot, sorted. */
export function messageTypes(root) {
  const out = [];
  const walk = (ns) => {
    for (const child of ns.nestedArray) {
      if (child instanceof protobuf.Type) out.push(child);
      if (child instanceof protobuf.Namespace) walk(child);
    }
  };
  const top = root.lookup(ROOT_PACKAGE);
  if (!top) throw new Error(`no package ${ROOT_PACKAGE} in the protos`);
  walk(top);
  return out.sort((a, b) => fullName(a).localeCompare(fullName(b)));
}

export const fullName = (t) => t.fullName.replace(/^\./, '');
/** The package a type is declared in: its full name up to the first enclosing type. */
export function packageOf(t) {
  let ns = t.parent;
  while (ns && ns instanceof protobuf.Type) ns = ns.parent;
  return ns.fullName.replace(/^\./, '');
}
/** The file name stem of a type in its package's directory: nested types keep their parents' names. */
const stemOf = (t) => fullName(t).slice(packageOf(t).length + 1);

/** Real oneofs (proto3 `optional` makes a synthetic one with a single member: that field is always set). */
const realOneofs = (t) => t.oneofsArray.filter((o) => o.fieldsArray.length > 1);

function scalar(type, mode, seed, label) {
  const big = (n) => n.toString();
  switch (type) {
    case 'double':
      return mode === 'extremes' ? -(2 ** 60) - seed - 0.5 : seed + 0.25;
    case 'float':
      return mode === 'extremes' ? -(2 ** 20) - seed - 0.5 : seed + 0.5;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return mode === 'extremes' ? -(2 ** 31) + seed : seed;
    case 'uint32':
    case 'fixed32':
      return mode === 'extremes' ? 2 ** 32 - 1 - seed : seed;
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return mode === 'extremes' ? big(-(2n ** 63n) + BigInt(seed)) : big(BigInt(seed));
    case 'uint64':
    case 'fixed64':
      return mode === 'extremes' ? big(2n ** 64n - 1n - BigInt(seed)) : big(BigInt(seed));
    case 'bool':
      return true;
    case 'string':
      return mode === 'extremes' ? `${label} \u00e9\u00fc \u2713 \u{1F680} \u0000end` : label;
    case 'bytes': {
      const name = Buffer.from(label);
      const b = mode === 'extremes' ? Buffer.concat([Buffer.from([0x00, 0x80, 0xff, seed & 0xff]), name, Buffer.from([0xfe, 0x00])]) : Buffer.concat([Buffer.from([seed & 0xff]), name]);
      return b.toString('base64');
    }
    default:
      throw new Error(`unknown scalar type ${type}`);
  }
}

function enumValue(e, mode, seed) {
  const values = Object.entries(e.values).filter(([, n]) => n !== 0).sort((a, b) => a[1] - b[1]);
  if (values.length === 0) throw new Error(`enum ${e.fullName} has no non-zero value: a golden message cannot set a field of it`);
  return (mode === 'extremes' ? values[values.length - 1] : values[(seed - 1) % values.length])[0];
}

function mapKey(keyType, mode, seed, label, i) {
  if (keyType === 'string') return `${label}-${String.fromCharCode(97 + i)}`;
  if (keyType === 'bool') return String(i === 1);
  // Numeric keys: distinct, in increasing order.
  return String(mode === 'extremes' ? seed * 1000 + i : seed + i);
}

/** A plain object for `type`, every field set; `choices` picks a member per oneof (default: the first). */
function build(type, mode, depth, choices = {}) {
  if (depth > MAX_DEPTH) throw new Error(`${type.fullName}: nested more than ${MAX_DEPTH} deep (a recursive type?)`);
  const obj = {};
  const skip = new Set();
  for (const o of realOneofs(type)) {
    const pick = choices[o.name] ?? o.fieldsArray[0].name;
    for (const f of o.fieldsArray) if (f.name !== pick) skip.add(f.name);
  }
  for (const f of type.fieldsArray) {
    if (skip.has(f.name)) continue;
    f.resolve();
    const label = `${type.name}.${f.name}`;
    const value = (i) => {
      const seed = f.id + i;
      if (f.resolvedType instanceof protobuf.Type) return build(f.resolvedType, mode, depth + 1);
      if (f.resolvedType instanceof protobuf.Enum) return enumValue(f.resolvedType, mode, seed);
      return scalar(f.type, mode, seed, i ? `${label}[${i}]` : label);
    };
    const count = mode === 'extremes' ? 3 : 1;
    if (f.map) {
      const entries = {};
      for (let i = 0; i < (mode === 'extremes' ? 2 : 1); i++) entries[mapKey(f.keyType, mode, f.id, label, i)] = value(i);
      obj[f.name] = entries;
    } else if (f.repeated) {
      obj[f.name] = Array.from({ length: count }, (_, i) => value(i));
    } else {
      obj[f.name] = value(0);
    }
  }
  return obj;
}

/** The golden messages of one type: [{ variant, object }] (plain objects in JSON_OPTIONS form). */
export function variantsOf(type) {
  const out = [
    { variant: 'typical', object: build(type, 'typical', 0) },
    { variant: 'extremes', object: build(type, 'extremes', 0) },
  ];
  for (const o of realOneofs(type)) {
    for (const f of o.fieldsArray.slice(1)) out.push({ variant: `typical.${f.name}`, object: build(type, 'typical', 0, { [o.name]: f.name }) });
  }
  return out;
}

/** Encodes a plain object; the JSON is the decoded message's (what a reader sees), not the input. */
export function encodeMessage(type, object) {
  const problem = type.verify(type.fromObject(object));
  if (problem) throw new Error(`${type.fullName}: ${problem}`);
  const bytes = Buffer.from(type.encode(type.fromObject(object)).finish());
  const json = type.toObject(type.decode(bytes), JSON_OPTIONS);
  return { bytes, json };
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

/**
 * Writes the golden files of the protos in `protoDir` into `outDir` (which
 * must not hold golden files yet): PACKAGE/STEM.VARIANT.{bin,json} and index.json.
 */
export function writeGolden(outDir, protoDir = path.join(repo, 'proto')) {
  const root = loadProtos(protoDir);
  const messages = [];
  for (const type of messageTypes(root)) {
    const pkg = packageOf(type);
    mkdirSync(path.join(outDir, pkg), { recursive: true });
    for (const { variant, object } of variantsOf(type)) {
      const { bytes, json } = encodeMessage(type, object);
      const base = `${pkg}/${stemOf(type)}.${variant}`;
      const text = JSON.stringify(json, null, 2) + '\n';
      writeFileSync(path.join(outDir, `${base}.bin`), bytes);
      writeFileSync(path.join(outDir, `${base}.json`), text);
      messages.push({ type: fullName(type), variant, bin: `${base}.bin`, json: `${base}.json`, bytes: bytes.length, bin_sha256: sha256(bytes), json_sha256: sha256(Buffer.from(text)) });
    }
  }
  const index = {
    format: GOLDEN_FORMAT,
    generator: 'build/golden.mjs',
    root_package: ROOT_PACKAGE,
    proto_files: protoFiles(protoDir),
    json_options: { longs: 'String', enums: 'String', bytes: 'String (base64)', defaults: false, field_names: 'as in the .proto files' },
    messages,
  };
  writeFileSync(path.join(outDir, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  return index;
}

/**
 * Checks the golden files in `goldenDir` against the protos of `root`
 * (today's, in the test): each file is the one the index names (sha256), its
 * type still exists, decoding and re-encoding gives the same bytes, and the
 * decoded message's JSON equals the archived JSON. Returns the problems, one
 * line each (empty: all is well).
 */
export function verifyGolden(goldenDir, root, filter = () => true) {
  const index = JSON.parse(readFileSync(path.join(goldenDir, 'index.json'), 'utf8'));
  if (index.format !== GOLDEN_FORMAT) return [`index.json: format ${index.format}, this reader knows ${GOLDEN_FORMAT}`];
  const problems = [];
  for (const m of index.messages.filter(filter)) {
    const where = `${m.type} (${m.variant})`;
    const bytes = readFileSync(path.join(goldenDir, m.bin));
    const jsonText = readFileSync(path.join(goldenDir, m.json));
    if (sha256(bytes) !== m.bin_sha256 || sha256(jsonText) !== m.json_sha256) {
      problems.push(`${where}: ${m.bin} or ${m.json} differs from the sha256 in index.json (an archived file changed)`);
      continue;
    }
    let type;
    try {
      type = root.lookupType(m.type);
    } catch {
      problems.push(`${where}: no message type ${m.type} in today's protos`);
      continue;
    }
    let decoded;
    try {
      decoded = type.decode(bytes);
    } catch (err) {
      problems.push(`${where}: today's protos cannot decode ${m.bin}: ${err.message}`);
      continue;
    }
    const again = Buffer.from(type.encode(decoded).finish());
    if (!again.equals(bytes)) {
      problems.push(`${where}: re-encoded with today's protos, ${m.bin} is not byte-identical (${bytes.length} bytes archived, ${again.length} now; first difference at byte ${firstDifference(bytes, again)})`);
    }
    const now = type.toObject(decoded, JSON_OPTIONS);
    const then = JSON.parse(jsonText.toString('utf8'));
    const diff = jsonDifference(then, now, '');
    if (diff) problems.push(`${where}: decoded with today's protos, the message differs from ${m.json}: ${diff}`);
  }
  return problems;
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** The first difference between two JSON values, as "path: archived X, today Y"; null when equal. */
export function jsonDifference(a, b, at) {
  const show = (v) => (v === undefined ? '(absent)' : JSON.stringify(v));
  if (a === b) return null;
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = jsonDifference(a[k], b[k], Array.isArray(a) ? `${at}[${k}]` : `${at}.${k}`);
      if (d) return d;
    }
    return null;
  }
  return `${at || '(message)'}: archived ${show(a)}, today ${show(b)}`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [out, protoDir] = process.argv.slice(2);
  if (!out) throw new Error('usage: node build/golden.mjs OUT_DIR [PROTO_DIR]');
  if (readdirSafe(out).length) throw new Error(`${out} is not empty`);
  const index = writeGolden(path.resolve(out), protoDir ? path.resolve(protoDir) : undefined);
  console.log(`wrote ${index.messages.length} golden messages to ${out}`);
}

function readdirSafe(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
