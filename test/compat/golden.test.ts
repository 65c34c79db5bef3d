// Golden encodings (docs/compatibility.md, "Golden encodings"): every archived
// release that has golden files (test/fixtures/releases/<version>/golden/,
// written by build/archive-release.mjs with build/golden.mjs) is decoded with
// TODAY's protos, message by message; re-encoded it must give the archived
// bytes, and the decoded message must equal the archived JSON. Then the
// generator itself: every field of every type set, every RPC's request and
// response covered, deterministic; and the check is shown to fail on a
// scratch copy of the protos with a field renumbered, a type changed, an enum
// value renumbered, a field renamed or removed, and to pass an additive change.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { fullName, JSON_OPTIONS, loadProtos, messageTypes, verifyGolden, writeGolden, type GoldenIndex } from '../../build/golden.mjs';
import { REPO } from '../helpers/agent-process';
import { RELEASES } from '../helpers/releases';

const PROTO = path.join(REPO, 'proto');
const releases = fs.readdirSync(RELEASES).filter((v) => fs.existsSync(path.join(RELEASES, v, 'RELEASE.json'))).sort();
const withGolden = releases.filter((v) => fs.existsSync(path.join(RELEASES, v, 'golden', 'index.json')));
const today = loadProtos(PROTO);
const readIndex = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as GoldenIndex;

it('which archived releases have golden files', (t) => {
  const without = releases.filter((v) => !withGolden.includes(v));
  // Releases archived before golden files existed (0.1.0) keep their archive as it was.
  t.diagnostic(`with golden files: ${withGolden.join(', ') || 'none yet'}; without (archived before them): ${without.join(', ') || 'none'}`);
});

for (const version of withGolden) {
  describe(`release ${version}'s golden encodings, read with today's protos`, () => {
    const dir = path.join(RELEASES, version, 'golden');
    const index = readIndex(dir);
    const packages = [...new Set(index.messages.map((m) => m.type.replace(/\.[^.]+$/, '')))].sort();

    for (const pkg of packages) {
      it(`${pkg}: every message decodes, re-encodes byte-identically and equals its JSON`, () => {
        const problems = verifyGolden(dir, today, (m) => m.type.replace(/\.[^.]+$/, '') === pkg);
        assert.deepEqual(problems, [], `${problems.length} golden messages of ${version} no longer read the same:\n${problems.join('\n')}`);
      });
    }

    it("the runtime descriptor (src/generated/protos.json, what the agent and client load) reads them the same", () => {
      const file = path.join(REPO, 'src/generated/protos.json');
      assert.ok(fs.existsSync(file), `${file} is missing: run npm run build`);
      const root = protobuf.Root.fromJSON(JSON.parse(fs.readFileSync(file, 'utf8')));
      root.resolveAll();
      const problems = verifyGolden(dir, root);
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    it("covers every message type of the release's own protos", () => {
      const own = messageTypes(loadProtos(path.join(RELEASES, version, 'proto'))).map(fullName);
      const covered = new Set(index.messages.map((m) => m.type));
      assert.deepEqual(own.filter((t) => !covered.has(t)), []);
    });
  });
}

describe('the generator (build/golden.mjs) on today\'s protos', () => {
  let tmp = '';
  let golden = '';
  let index: GoldenIndex;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-'));
    golden = path.join(tmp, 'golden');
    index = writeGolden(golden, PROTO);
  });
  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  it('writes messages that today\'s protos read back unchanged', () => {
    assert.deepEqual(verifyGolden(golden, today), []);
  });

  it('covers the request and response of every RPC of agent.Discovery, agent.v1 and agent.v2', () => {
    const covered = new Set(index.messages.map((m) => m.type));
    const services: protobuf.Service[] = [];
    const walk = (ns: protobuf.NamespaceBase) => {
      for (const c of ns.nestedArray) {
        if (c instanceof protobuf.Service) services.push(c);
        if (c instanceof protobuf.Namespace) walk(c);
      }
    };
    walk(today.lookup('agent') as protobuf.Namespace);
    assert.deepEqual(services.map(fullName).sort(), ['agent.Discovery', 'agent.v1.AgentService', 'agent.v2.AgentService']);
    const missing: string[] = [];
    for (const s of services) {
      for (const m of s.methodsArray) {
        m.resolve();
        for (const t of [m.resolvedRequestType!, m.resolvedResponseType!]) if (!covered.has(fullName(t))) missing.push(`${fullName(s)}.${m.name}: ${fullName(t)}`);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('sets every field of every type in some variant: nested messages, repeated fields, maps, enums, bytes, 64-bit values', () => {
    const unset: string[] = [];
    const kinds = new Set<string>();
    // Marks which fields of each type some golden message sets, walking into nested messages.
    const seen = new Map<string, Set<string>>();
    const mark = (type: protobuf.Type, obj: Record<string, unknown>) => {
      const s = seen.get(fullName(type)) ?? new Set<string>();
      seen.set(fullName(type), s);
      for (const f of type.fieldsArray) {
        if (!(f.name in obj)) continue;
        s.add(f.name);
        f.resolve();
        kinds.add(f.map ? 'map' : f.repeated ? 'repeated' : f.resolvedType instanceof protobuf.Enum ? 'enum' : f.resolvedType ? 'message' : f.type);
        if (f.resolvedType instanceof protobuf.Type) {
          const v = obj[f.name];
          const items = f.map ? Object.values(v as object) : f.repeated ? (v as unknown[]) : [v];
          for (const item of items) mark(f.resolvedType, item as Record<string, unknown>);
        }
      }
    };
    for (const m of index.messages) {
      mark(today.lookupType(m.type), JSON.parse(fs.readFileSync(path.join(golden, m.json), 'utf8')));
    }
    for (const type of messageTypes(today)) {
      for (const f of type.fieldsArray) if (!seen.get(fullName(type))?.has(f.name)) unset.push(`${fullName(type)}.${f.name}`);
    }
    assert.deepEqual(unset, []);
    for (const k of ['message', 'repeated', 'map', 'enum', 'bytes', 'string', 'bool', 'int32', 'uint32', 'int64', 'uint64']) assert.ok(kinds.has(k), `no field of kind ${k}`);
  });

  it('values that tell types apart: 64-bit beyond 2^53, negative signed values, uint32 above 2^31', () => {
    const json = (base: string) => JSON.parse(fs.readFileSync(path.join(golden, `${base}.json`), 'utf8'));
    const exit = json('agent.v2/ExitStatus.extremes');
    assert.equal(exit.started_at_unix_ms, (-(2n ** 63n) + 5n).toString());
    assert.ok(exit.code < -(2 ** 30));
    assert.equal(json('agent/NegotiateResponse.extremes').limits['NegotiateResponse.limits-a'], (2n ** 64n - 1n - 6n).toString());
    assert.ok(json('agent.v1/CopyFileRequest.extremes').file_mode > 2 ** 31);
    // The JSON is the decoded message in JSON_OPTIONS form: enums by name, bytes as base64.
    assert.equal(JSON_OPTIONS.longs, String);
    assert.equal(json('agent.v2/ContainerStateChanged.extremes').state, 'CONTAINER_STATE_REMOVED');
    assert.equal(Buffer.from(json('agent.v2/ReadOutputResponse.extremes').data, 'base64')[2], 0xff);
  });

  it('is deterministic: a second run writes the same files', () => {
    const again = writeGolden(path.join(tmp, 'again'), PROTO);
    assert.deepEqual(again, index);
  });

  describe('the check fails on a scratch copy of the protos with a breaking change', () => {
    /** `also`: further edits (to any file) the change needs to leave valid protos. */
    type Mutation = { what: string; file: string; from: RegExp; to: string; breaks: string[]; also?: Array<[RegExp, string]> };
    const mutations: Mutation[] = [
      { what: 'a field renumbered', file: 'agent/v2/agent.proto', from: /^(message ReadOutputResponse \{[^}]*?bytes data = )2;/ms, to: '$17;', breaks: ['agent.v2.ReadOutputResponse'] },
      {
        what: 'a field moved to another number, a new field taking its old one', file: 'agent/v1/agent.proto',
        from: /(message StartContainerRequest \{\s*string container_id = )1;/s, to: '$12;\n  string spare = 1;', breaks: ['agent.v1.StartContainerRequest'],
      },
      { what: 'int32 to uint32', file: 'agent/v1/agent.proto', from: /^(\s*)int32 status = 1;/m, to: '$1uint32 status = 1;', breaks: ['agent.v1.WaitProcessResponse'] },
      { what: 'int64 to int32', file: 'agent/v2/agent.proto', from: /(message ExitStatus \{[^}]*?)int64 started_at_unix_ms = 5;/s, to: '$1int32 started_at_unix_ms = 5;', breaks: ['agent.v2.ExitStatus', 'agent.v2.WaitProcessResponse', 'agent.v2.ProcessExited'] },
      { what: 'a map value uint64 to uint32', file: 'agent/discovery.proto', from: /map<string, uint64> limits/, to: 'map<string, uint32> limits', breaks: ['agent.NegotiateResponse'] },
      { what: 'string to bytes', file: 'agent/v2/agent.proto', from: /(message CreateContainerRequest \{[^}]*?)string oci_spec_json = 3;/s, to: '$1bytes oci_spec_json = 3;', breaks: ['agent.v2.CreateContainerRequest'] },
      { what: 'an enum value renumbered', file: 'agent/v2/agent.proto', from: /CONTAINER_STATE_REMOVED = 5;/, to: 'CONTAINER_STATE_REMOVED = 6;', breaks: ['agent.v2.ContainerStateChanged'] },
      { what: 'a field renamed', file: 'agent/v1/agent.proto', from: /(message ReadStdoutRequest \{[^}]*?)uint32 len = 3;/s, to: '$1uint32 length = 3;', breaks: ['agent.v1.ReadStdoutRequest'] },
      { what: 'a field removed (its number reserved)', file: 'agent/discovery.proto', from: /string error = 4;/, to: 'reserved 4;', breaks: ['agent.PolicyInfo', 'agent.NegotiateResponse'] },
      { what: 'repeated to singular', file: 'agent/v1/agent.proto', from: /(message Storage \{[^}]*?)repeated string options = 5;/s, to: '$1string options = 5;', breaks: ['agent.v1.Storage', 'agent.v1.CreateSandboxRequest'] },
      {
        what: 'a message type renamed', file: 'agent/v2/agent.proto', from: /message OomKilled \{/, to: 'message OomKill {', breaks: ['agent.v2.OomKilled'],
        also: [[/OomKilled oom_killed/g, 'OomKill oom_killed']],
      },
    ];

    const scratch = (name: string, edit: (file: string, text: string) => string) => {
      const dir = path.join(tmp, 'scratch', name.replace(/\W+/g, '-'));
      fs.cpSync(PROTO, dir, { recursive: true });
      for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
        const full = path.join(dir, f);
        if (!f.endsWith('.proto')) continue;
        fs.writeFileSync(full, edit(f, fs.readFileSync(full, 'utf8')));
      }
      return loadProtos(dir);
    };

    for (const m of mutations) {
      it(`${m.what}: ${m.breaks[0]} fails`, () => {
        let applied = false;
        const root = scratch(m.what, (f, text) => {
          let out = text;
          if (f === m.file) {
            out = out.replace(m.from, (...args) => {
              applied = true;
              // $1-style groups, as String.prototype.replace would substitute them.
              return m.to.replace(/\$(\d)/g, (_s, n: string) => args[Number(n)] as string);
            });
          }
          for (const [from, to] of m.also ?? []) out = out.replace(from, to);
          return out;
        });
        assert.ok(applied, `the mutation "${m.what}" did not match ${m.file}: update the test to today's proto`);
        const problems = verifyGolden(golden, root);
        for (const type of m.breaks) {
          assert.ok(problems.some((p) => p.startsWith(`${type} (`)), `no problem reported for ${type} after ${m.what}; problems:\n${problems.join('\n')}`);
        }
      });
    }

    it('an additive change (a new field, a new message, a new RPC, a new enum value) passes', () => {
      const root = scratch('additive', (f, text) => {
        if (f !== 'agent/v2/agent.proto') return text;
        return text
          .replace(/(message ExitStatus \{)/, '$1\n  string note = 99;\n  repeated uint64 more = 100;')
          .replace(/(CONTAINER_STATE_REMOVED = 5;)/, '$1\n  CONTAINER_STATE_LATER = 6;')
          .replace(/(service AgentService \{)/, '$1\n  rpc Later(LaterRequest) returns (LaterResponse);')
          .concat('\nmessage LaterRequest { string x = 1; }\nmessage LaterResponse {}\n');
      });
      assert.ok(root.lookupType('agent.v2.LaterRequest'));
      assert.ok(root.lookupType('agent.v2.ExitStatus').fields.note);
      assert.deepEqual(verifyGolden(golden, root), []);
    });

    it('an archived file changed is reported (the sha256 in index.json)', () => {
      const copy = path.join(tmp, 'tampered');
      fs.cpSync(golden, copy, { recursive: true });
      const file = path.join(copy, 'agent.v1', 'WaitProcessResponse.typical.bin');
      fs.writeFileSync(file, Buffer.from([0x08, 0x05]));
      assert.match(verifyGolden(copy, today).join('\n'), /agent\.v1\.WaitProcessResponse \(typical\): .* differs from the sha256 in index\.json/);
    });
  });
});
