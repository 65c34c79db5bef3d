import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import { DiscoveryService } from '../../protocol';
import descriptor from '../../generated/protos.json';
import { checkWireFormat, MAX_DEPTH, WireFormatError } from './wire-check';

const protos = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
protos.resolveAll();
const type = (name: string) => protos.lookupType(name);

// Every kind of field the wire knows, for what our own protos do not use
// (fixed-width numbers, groups, packed and unpacked repeated scalars, recursion).
const TEST_SCHEMA = `
syntax = "proto2";
package t;
enum E { ZERO = 0; ONE = 1; }
message All {
  optional double d = 1;  optional float f = 2;
  optional int32 i32 = 3; optional int64 i64 = 4; optional uint32 u32 = 5; optional uint64 u64 = 6;
  optional sint32 s32 = 7; optional sint64 s64 = 8;
  optional fixed32 f32 = 9; optional fixed64 f64 = 10; optional sfixed32 sf32 = 11; optional sfixed64 sf64 = 12;
  optional bool b = 13; optional string s = 14; optional bytes by = 15; optional E e = 16;
  repeated uint32 packed_u32 = 17 [packed = true];
  repeated fixed32 packed_f32 = 18 [packed = true];
  repeated double packed_d = 19 [packed = true];
  repeated uint32 loose_u32 = 20;
  optional group G = 21 { optional int32 x = 1; }
  map<string, All> children = 22;
  optional All next = 23;
  repeated string names = 24;
  map<int32, string> labels = 25;
}`;
const testRoot = protobuf.parse(TEST_SCHEMA, { keepCase: true }).root;
testRoot.resolveAll();
const All = testRoot.lookupType('t.All');

// ---- hand-made wire bytes ----

function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const str = (field: number, text: string) => lenField(field, [...Buffer.from(text)]);
const lenField = (field: number, bytes: number[]) => [...tag(field, 2), ...varint(bytes.length), ...bytes];
const bytes = (...parts: Array<number | number[]>) => Buffer.from(parts.flat());

const ok = (t: protobuf.Type, b: Buffer | Uint8Array, why = '') =>
  assert.doesNotThrow(() => checkWireFormat(t, b), `${t.name} ${Buffer.from(b).toString('hex')} ${why}`);
const refused = (t: protobuf.Type, b: Buffer, pattern: RegExp) =>
  assert.throws(() => checkWireFormat(t, b), (err: unknown) => {
    assert.ok(err instanceof WireFormatError, String(err));
    assert.match(err.message, pattern);
    return true;
  });

/** A value for every field of a type, maps and repeated ones with two entries. */
function sample(t: protobuf.Type, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of t.fieldsArray) {
    field.resolve();
    const one = (): unknown => {
      const r = field.resolvedType;
      if (r instanceof protobuf.Type) return depth < 3 ? sample(r, depth + 1) : {};
      if (r instanceof protobuf.Enum) return Object.values(r.values).at(-1);
      return scalarSample(field.type);
    };
    if (field instanceof protobuf.MapField) {
      const keys = field.keyType === 'string' ? ['k1', 'ключ'] : field.keyType === 'bool' ? [true, false] : [7, 300];
      out[field.name] = Object.fromEntries(keys.map((k) => [String(k), one()]));
    } else if (field.repeated) {
      out[field.name] = [one(), one()];
    } else {
      out[field.name] = one();
    }
  }
  return out;
}

function scalarSample(scalar: string): unknown {
  switch (scalar) {
    case 'string': return 'héllo 日本 🙂';
    case 'bytes': return Buffer.from([0, 0xff, 0xc3, 0x28]); // not UTF-8, and need not be
    case 'bool': return true;
    case 'double': case 'float': return -1.5;
    case 'int32': case 'sint32': case 'sfixed32': return -7;
    case 'uint32': case 'fixed32': return 4_000_000_000;
    case 'int64': case 'sint64': case 'sfixed64': return -(2 ** 40);
    default: return 2 ** 50; // uint64, fixed64
  }
}

const encode = (t: protobuf.Type, value: Record<string, unknown>) => t.encode(t.fromObject(value)).finish();

describe('strict wire format check', () => {
  describe('accepts', () => {
    it('every message of our protocol with every field set (strings, bytes, enums, maps, repeated, nested) and empty', () => {
      const messages: protobuf.Type[] = [];
      const visit = (ns: protobuf.NamespaceBase) => {
        for (const child of ns.nestedArray) {
          if (child instanceof protobuf.Type) messages.push(child);
          if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) visit(child);
        }
      };
      visit(protos);
      assert.ok(messages.length > 60, `found ${messages.length} messages`);
      for (const t of messages) {
        ok(t, encode(t, sample(t)));
        ok(t, Buffer.alloc(0));
      }
      // The ones the agent serves, by name, so a rename cannot empty the list unnoticed.
      for (const name of ['agent.NegotiateRequest', 'agent.v1.CreateSandboxRequest', 'agent.v1.CreateContainerRequest',
        'agent.v1.UpdateInterfaceRequest', 'agent.v1.AddARPNeighborsRequest', 'agent.v1.CopyFileRequest', 'agent.NegotiateResponse']) {
        assert.ok(messages.includes(type(name)), name);
      }
    });

    it('every scalar type, packed and unpacked repeated scalars, a group, maps with message values, recursion', () => {
      const value = {
        ...sample(All, 2),
        packed_u32: [0, 1, 300, 4_000_000_000], packed_f32: [1, 2], packed_d: [0.5],
        loose_u32: [1, 2], g: { x: -1 }, next: { next: { s: 'deep', g: { x: 1 } } },
      };
      const encoded = encode(All, value);
      ok(All, encoded);
      // Packed as unpacked and unpacked as packed: parsers must take both.
      ok(All, bytes(tag(17, 0), 5, tag(17, 0), 6, lenField(20, [1, 2, 0x80, 0x01])));
      ok(All, bytes(lenField(17, []))); // an empty packed run
      // The decoded message is what protobufjs makes of it anyway; the check only let it through.
      assert.deepEqual(All.toObject(All.decode(encoded), { longs: Number }).packed_u32, [0, 1, 300, 4_000_000_000]);
    });

    it('unknown field numbers with any well-formed encoding (a newer client\'s fields)', () => {
      const create = type('agent.v1.CreateContainerRequest');
      const known = str(1, 'c1');
      ok(create, bytes(known, tag(99, 0), varint(2n ** 64n - 1n)));
      ok(create, bytes(known, tag(99, 1), [1, 2, 3, 4, 5, 6, 7, 8]));
      ok(create, bytes(known, lenField(99, [0xff, 0xfe, 0x06, 0x07])), 'an unknown field\'s bytes are not looked into');
      ok(create, bytes(known, tag(99, 5), [1, 2, 3, 4]));
      ok(create, bytes(known, tag(99, 3), tag(1, 0), 5, tag(2, 3), tag(2, 4), str(3, 'x'), tag(99, 4)), 'nested groups');
      ok(create, bytes(tag(536870911, 0), 1, known), 'the largest field number');
      // Unknown fields inside a nested message and inside a map entry.
      ok(create, bytes(lenField(4, [...str(1, '9p'), ...tag(50, 0), 1])));
      ok(type('agent.NegotiateResponse'), bytes(lenField(6, [...str(1, 'k'), ...tag(2, 0), 5, ...tag(3, 5), 1, 2, 3, 4])));
    });

    it('10-byte varints (negative int32, full uint64), unknown enum values, a bool of 2', () => {
      const wait = type('agent.v1.WaitProcessResponse');
      ok(wait, encode(wait, { status: -1 }));
      assert.equal(encode(wait, { status: -1 }).length, 11);
      ok(type('agent.v1.IPAddress'), bytes(tag(1, 0), 99));
      ok(type('agent.v1.Interface'), bytes(tag(7, 0), 2));
      ok(type('agent.NegotiateResponse'), bytes(lenField(6, [...str(1, 'k'), ...tag(2, 0), ...varint(2n ** 64n - 1n)])));
    });

    it('a map decoded from descriptors (entry messages) as well as from JSON (map fields)', () => {
      const files = (DiscoveryService.service.Negotiate as unknown as { requestType: { fileDescriptorProtos: Buffer[] } })
        .requestType.fileDescriptorProtos.map((b) => FileDescriptorProto.decode(b));
      const fromDescriptors = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor({ file: files });
      fromDescriptors.resolveAll();
      const response = type('agent.NegotiateResponse');
      const good = encode(response, { limits: { max_message_bytes: 4194304, b: 1 }, capabilities: ['feature:x'] });
      ok(fromDescriptors.lookupType('agent.NegotiateResponse'), good);
      ok(response, good);
      const badKey = bytes(lenField(6, [...lenField(1, [0xc3, 0x28]), ...tag(2, 0), 1]));
      refused(response, badKey, /field 1 \(key: string\) of agent\.NegotiateResponse\.limitsEntry \(in agent\.NegotiateResponse\.limits\) at offset 2: the string .* is not valid UTF-8/);
      refused(fromDescriptors.lookupType('agent.NegotiateResponse'), badKey, /not valid UTF-8/);
    });
  });

  describe('refuses', () => {
    const create = type('agent.v1.CreateContainerRequest');

    it('a string whose length runs past the end of the message (the truncated CreateContainer)', () => {
      refused(create, bytes(0x0a, 0x64, 0x41, 0x42),
        /^field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset 0: length 100 runs past the end of the enclosing message \(2 bytes left\)$/);
      refused(type('agent.v1.CopyFileRequest'), bytes(str(1, '/f'), tag(8, 2), varint(1000), [1, 2, 3]),
        /field 8 \(data: bytes\) of agent\.v1\.CopyFileRequest at offset 4: length 1000 runs past/);
      refused(create, bytes(tag(1, 2)), /field 1 \(container_id: string\).*the length is missing at the end/);
      refused(create, bytes(tag(1, 2), 0x80), /the length varint at offset 1 runs past the end/);
    });

    it('a length inside a nested message that runs past the nested message, even when the buffer goes on', () => {
      // storages[0] is 2 bytes long and says its source is 5 bytes; 5 more bytes follow in the outer message.
      const b = bytes(lenField(4, [0x1a, 0x05]), str(1, 'abc'));
      refused(create, b, /^field 3 \(source: string\) of agent\.v1\.Storage \(in agent\.v1\.CreateContainerRequest\.storages\) at offset 2: length 5 runs past the end of the enclosing message \(0 bytes left\)$/);
      // And the nested message's own length runs past its parent.
      refused(create, bytes(tag(4, 2), 10, 0x0a, 0x00), /field 4 \(storages: repeated agent\.v1\.Storage\) .*length 10 runs past/);
    });

    it('a wrong wire type for a known field', () => {
      refused(create, bytes(0x08, 0x05), /^field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset 0: wire type 0 \(varint\) where the schema says wire type 2 \(length-delimited\)$/);
      refused(create, bytes(tag(1, 5), 1, 2, 3, 4), /wire type 5 \(fixed32\) where the schema says wire type 2/);
      refused(type('agent.v1.RemoveContainerRequest'), bytes(lenField(2, [1])), /field 2 \(timeout: uint32\).*wire type 2 \(length-delimited\) where the schema says wire type 0/);
      refused(create, bytes(tag(4, 0), 1), /field 4 \(storages: repeated agent\.v1\.Storage\).*wire type 0/);
      refused(type('agent.v1.IPAddress'), bytes(lenField(1, [1])), /field 1 \(family: enum agent\.v1\.IPFamily\).*wire type 2/);
      refused(All, bytes(tag(9, 0), 1), /field 9 \(f32: fixed32\).*wire type 0 \(varint\) where the schema says wire type 5 \(fixed32\)/);
      refused(All, bytes(tag(1, 5), 1, 2, 3, 4), /field 1 \(d: double\).*wire type 5 \(fixed32\) where the schema says wire type 1 \(fixed64\)/);
      refused(All, bytes(lenField(21, [])), /field 21 \(g: group t\.All\.G\).*wire type 2 .* where the schema says wire type 3 \(start group\)/);
      refused(type('agent.NegotiateResponse'), bytes(tag(6, 0), 1), /field 6 \(limits: map<string, uint64>\).*wire type 0/);
    });

    it('wire types 6 and 7, for known and unknown fields', () => {
      refused(create, bytes(0x0e), /^field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset 0: invalid wire type 6$/);
      refused(create, bytes(str(1, 'c'), tag(99, 7)), /field 99 \(unknown\) of agent\.v1\.CreateContainerRequest at offset 3: invalid wire type 7/);
    });

    it('a group where none is expected, an end-group tag without a start, a group never closed', () => {
      refused(create, bytes(tag(1, 3), tag(1, 4)), /field 1 \(container_id: string\).*wire type 3 \(start group\) where the schema says wire type 2/);
      refused(create, bytes(tag(1, 4)), /field 1 .*end-group tag without a start-group tag/);
      refused(create, bytes(tag(99, 4)), /field 99 \(unknown\).*end-group tag without a start-group tag/);
      refused(create, bytes(tag(99, 3), tag(1, 0), 1), /field 99 \(group\).*the group has no end-group tag/);
      refused(create, bytes(tag(99, 3), tag(98, 4)), /field 98 \(unknown\).*end-group tag where the group of field 99 was open/);
      // A group may not run past the length-delimited message it is in.
      refused(create, bytes(lenField(4, [...tag(99, 3)]), tag(99, 4)), /the group has no end-group tag before the end of its enclosing message/);
      refused(All, bytes(tag(21, 3), tag(1, 0), 1), /group has no end-group tag/);
      ok(All, bytes(tag(21, 3), tag(1, 0), 1, tag(21, 4)));
    });

    it('a varint longer than 10 bytes or beyond 64 bits, in a value or a tag', () => {
      const remove = type('agent.v1.RemoveContainerRequest');
      ok(remove, bytes(tag(2, 0), Array(9).fill(0xff), 0x01));
      refused(remove, bytes(tag(2, 0), Array(10).fill(0xff), 0x01), /field 2 \(timeout: uint32\).*the value varint at offset 1 is longer than 10 bytes/);
      refused(remove, bytes(tag(2, 0), Array(9).fill(0xff), 0x02), /the value varint at offset 1 overflows 64 bits/);
      refused(remove, bytes(Array(10).fill(0x80), 0x01), /at offset 0: the tag varint at offset 0 is longer than 10 bytes/);
      refused(remove, bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x01), /the tag does not fit in 32 bits/);
      refused(remove, bytes(tag(99, 0), Array(10).fill(0xff), 0x01), /field 99 \(unknown\).*longer than 10 bytes/);
      refused(remove, bytes(tag(2, 0), 0xff), /the value varint at offset 1 runs past the end/);
      refused(remove, bytes(tag(2, 0)), /the value is missing at the end of the enclosing message/);
    });

    it('a string that is not valid UTF-8 (bad continuation, overlong, surrogate, truncated sequence), in any string field', () => {
      for (const bad of [[0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe6, 0x97], [0xff]]) {
        refused(create, bytes(lenField(1, bad)), /^field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset 0: the string \(\d bytes at offset 2\) is not valid UTF-8$/);
      }
      refused(type('agent.v1.CreateSandboxRequest'), bytes(str(2, 'ok'), lenField(2, [0xc3])), /field 2 \(dns: repeated string\).*at offset 4: the string .* is not valid UTF-8/);
      refused(create, bytes(lenField(4, lenField(5, [0xc3, 0x28]))), /field 5 \(options: repeated string\) of agent\.v1\.Storage \(in agent\.v1\.CreateContainerRequest\.storages\).*not valid UTF-8/);
      ok(type('agent.v1.WriteStdinRequest'), bytes(lenField(3, [0xc3, 0x28, 0xff])), 'bytes are not text');
    });

    it('a truncated fixed32 or fixed64, alone or packed, known or unknown', () => {
      refused(All, bytes(tag(9, 5), 1, 2, 3), /field 9 \(f32: fixed32\) of t\.All at offset 0: truncated fixed32: 4 bytes needed, 3 left/);
      refused(All, bytes(tag(10, 1), 1, 2, 3, 4, 5, 6, 7), /field 10 \(f64: fixed64\).*truncated fixed64: 8 bytes needed, 7 left/);
      refused(All, bytes(tag(1, 1), 0, 0, 0, 0), /field 1 \(d: double\).*truncated fixed64/);
      refused(All, bytes(lenField(18, [1, 2, 3, 4, 5, 6])), /field 18 \(packed_f32: repeated fixed32\).*truncated fixed32: 4 bytes needed, 2 left/);
      refused(All, bytes(lenField(17, [1, 0x80])), /field 17 \(packed_u32: repeated uint32\).*runs past the end/);
      refused(create, bytes(tag(99, 1), 1, 2, 3), /field 99 \(unknown\).*truncated fixed64/);
      refused(create, bytes(tag(99, 5), 1), /field 99 \(unknown\).*truncated fixed32/);
    });

    it('a nested message that is itself malformed, naming the nested type and the way to it', () => {
      const iface = [...tag(1, 0), 1]; // family as a varint is right for IPAddress, wrong for Interface.device
      refused(type('agent.v1.UpdateInterfaceRequest'), bytes(lenField(1, iface)),
        /^field 1 \(device: string\) of agent\.v1\.Interface \(in agent\.v1\.UpdateInterfaceRequest\.interface\) at offset 2: wire type 0/);
      const neighbour = lenField(1, lenField(1, [...str(2, '10.0.0.1'), ...lenField(3, [0xc3])]));
      refused(type('agent.v1.AddARPNeighborsRequest'), bytes(neighbour),
        /field 3 \(mask: string\) of agent\.v1\.IPAddress \(in agent\.v1\.AddARPNeighborsRequest\.neighbors > agent\.v1\.ARPNeighbor\.to_ip_address\) at offset 14: the string/);
      refused(All, bytes(lenField(22, [...str(1, 'k'), ...lenField(2, [0x0e])])), /of t\.All \(in t\.All\.children > t\.All\.childrenEntry\.value\).*invalid wire type 6/);
    });

    it('field number 0, and nesting deeper than the recursion limit', () => {
      refused(create, bytes(tag(0, 0), 1), /field 0 \(unknown\).*field number 0 is not allowed/);
      let deep = Buffer.alloc(0);
      for (let i = 0; i < MAX_DEPTH; i++) deep = bytes(lenField(23, [...deep]));
      ok(All, deep);
      refused(All, bytes(lenField(23, [...deep])), /nested deeper than 100 levels/);
      let groups: number[] = [];
      for (let i = 0; i <= MAX_DEPTH; i++) groups = [...tag(99, 3), ...groups, ...tag(99, 4)];
      refused(All, bytes(groups), /nested deeper than 100 levels/);
    });
  });
});
