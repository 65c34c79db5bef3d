// A strict check of protobuf wire format, run on request bytes before
// protobufjs decodes them. protobufjs is lenient exactly where a server must
// not be (node_modules/protobufjs/src/reader_buffer.js, decoder.js):
// - BufferReader.string clamps a length that runs past the end of the buffer,
//   so a string cut short decodes to whatever bytes are there;
// - strings are decoded lossily: invalid UTF-8 becomes U+FFFD;
// - the generated decoders switch on the field number only and read what the
//   schema says whatever the wire type (a varint where a string is expected is
//   read as a length; only packed repeated scalars look at the wire type).
// So this walker follows the message's protobufjs Type and refuses, with the
// message type, field number and offset: a length past the end of its
// enclosing message, a wrong wire type for a known field, wire types 6 and 7,
// a group where none is expected or a group never closed, a varint longer than
// 10 bytes, a truncated fixed32/fixed64, a string that is not valid UTF-8, a
// nested message that is itself malformed. Unknown field numbers are accepted
// when their encoding is well-formed (a newer client's extra field), groups
// among them too. It never builds the message; protobufjs still does that, so
// a valid request decodes exactly as it would without this check.
import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';

/** Bytes that are not a well-formed encoding of the message type. */
export class WireFormatError extends Error {
  override name = 'WireFormatError';
}

/** protoc's default recursion limit (CodedInputStream), which protobufjs uses too. */
export const MAX_DEPTH = 100;

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const I32 = 5;
const WIRE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start group', 'end group', 'fixed32'];

/** The wire type of each scalar type (enums are varints). */
const SCALAR_WIRE: Readonly<Record<string, number>> = {
  double: I64, float: I32,
  int32: VARINT, uint32: VARINT, sint32: VARINT, int64: VARINT, uint64: VARINT, sint64: VARINT, bool: VARINT,
  fixed32: I32, sfixed32: I32, fixed64: I64, sfixed64: I64,
  string: LEN, bytes: LEN,
};

/** What a field holds, as far as the wire is concerned. */
type Shape =
  | { kind: 'scalar'; scalar: string; wire: number }
  | { kind: 'message'; typeName: string; fields: () => FieldTable; group: boolean };

interface FieldInfo {
  name: string;
  /** For messages: "container_id: string", "storages: repeated agent.v1.Storage". */
  label: string;
  repeated: boolean;
  shape: Shape;
}

type FieldTable = ReadonlyMap<number, FieldInfo>;

const tables = new WeakMap<protobuf.Type, FieldTable>();

const nameOf = (t: protobuf.ReflectionObject) => t.fullName.replace(/^\./, '');

/** The fields of a type by number; built on first use, so recursive types are fine. */
function fieldsOf(type: protobuf.Type): FieldTable {
  let table = tables.get(type);
  if (!table) {
    const built = new Map<number, FieldInfo>();
    for (const field of type.fieldsArray) {
      field.resolve();
      built.set(field.id, fieldInfo(field, nameOf(type)));
    }
    table = built;
    tables.set(type, table);
  }
  return table;
}

function shapeOf(typeName: string, resolved: protobuf.ReflectionObject | null, group: boolean, where: string): Shape {
  if (resolved instanceof protobuf.Type) {
    const type = resolved;
    return { kind: 'message', typeName: nameOf(type), fields: () => fieldsOf(type), group };
  }
  if (resolved instanceof protobuf.Enum) return { kind: 'scalar', scalar: `enum ${nameOf(resolved)}`, wire: VARINT };
  const wire = SCALAR_WIRE[typeName];
  if (wire === undefined) throw new Error(`${where}: type ${typeName} is not resolved (was resolveAll() called on its root?)`);
  return { kind: 'scalar', scalar: typeName, wire };
}

function fieldInfo(field: protobuf.Field, owner: string): FieldInfo {
  const where = `${owner}.${field.name}`;
  if (field instanceof protobuf.MapField) {
    // On the wire a map is a repeated entry message: key = 1, value = 2.
    const key = shapeOf(field.keyType, null, false, where);
    const value = shapeOf(field.type, field.resolvedType, false, where);
    const describe = (s: Shape) => (s.kind === 'scalar' ? s.scalar : s.typeName);
    const entry: FieldTable = new Map<number, FieldInfo>([
      [1, { name: 'key', label: `key: ${describe(key)}`, repeated: false, shape: key }],
      [2, { name: 'value', label: `value: ${describe(value)}`, repeated: false, shape: value }],
    ]);
    const entryName = `${where}Entry`;
    return {
      name: field.name,
      label: `${field.name}: map<${describe(key)}, ${describe(value)}>`,
      repeated: true,
      shape: { kind: 'message', typeName: entryName, fields: () => entry, group: false },
    };
  }
  const shape = shapeOf(field.type, field.resolvedType, field.delimited, where);
  const typeText = shape.kind === 'scalar' ? shape.scalar : `${shape.group ? 'group ' : ''}${shape.typeName}`;
  return { name: field.name, label: `${field.name}: ${field.repeated ? 'repeated ' : ''}${typeText}`, repeated: field.repeated, shape };
}

/**
 * Throws a WireFormatError unless `bytes` is a well-formed encoding of `type`
 * (whose root must be resolved). Does not build the message.
 */
export function checkWireFormat(type: protobuf.Type, bytes: Uint8Array, maxDepth = MAX_DEPTH): void {
  const walker = new Walker(bytes, maxDepth);
  walker.message(fieldsOf(type), nameOf(type), '', bytes.length, 0, 0);
}

/** Where the walk is, for the error: the message type, the field, the offset of its tag. */
interface Place {
  type: string;
  /** The chain of fields leading to this message, e.g. "agent.v1.CreateContainerRequest.storages". */
  inside: string;
  field: string;
  at: number;
}

class Walker {
  private pos = 0;
  private place: Place = { type: '', inside: '', field: '', at: 0 };

  constructor(
    private readonly buf: Uint8Array,
    private readonly maxDepth: number,
  ) {}

  /**
   * Walks fields from `this.pos` to `end`. With `group` (a field number) the
   * message is a group and ends at its end-group tag, which it consumes.
   * `fields` is undefined inside an unknown group: every field is unknown.
   */
  message(fields: FieldTable | undefined, type: string, inside: string, end: number, depth: number, group: number): void {
    this.place = { type, inside, field: '', at: this.pos };
    if (depth > this.maxDepth) this.fail(`messages nested deeper than ${this.maxDepth} levels`);
    while (this.pos < end) {
      this.place = { type, inside, field: '', at: this.pos };
      const tag = this.varint(end, 'tag');
      if (tag > 0xffffffff) this.fail('the tag does not fit in 32 bits');
      const number = Math.floor(tag / 8);
      const wire = tag % 8;
      const info = fields?.get(number);
      this.place.field = info ? `field ${number} (${info.label})` : `field ${number} (unknown)`;
      if (number === 0) this.fail('field number 0 is not allowed');
      if (wire === END_GROUP) {
        if (number === group) return;
        this.fail(group ? `end-group tag where the group of field ${group} was open` : 'end-group tag without a start-group tag');
      }
      if (wire > I32) this.fail(`invalid wire type ${wire}`);
      if (info) this.known(number, info, wire, end, depth);
      else this.unknown(number, wire, end, depth);
    }
    if (group) {
      this.place = { type, inside, field: `field ${group} (group)`, at: this.pos };
      this.fail('the group has no end-group tag before the end of its enclosing message');
    }
  }

  private known(number: number, info: FieldInfo, wire: number, end: number, depth: number): void {
    const shape = info.shape;
    const place = this.place;
    if (shape.kind === 'message') {
      const inside = `${place.inside ? `${place.inside} > ` : ''}${place.type}.${info.name}`;
      if (shape.group) {
        if (wire !== START_GROUP) this.wrongWire(wire, START_GROUP);
        this.message(shape.fields(), shape.typeName, inside, end, depth + 1, number);
      } else {
        if (wire !== LEN) this.wrongWire(wire, LEN);
        const length = this.length(end);
        const stop = this.pos + length;
        this.message(shape.fields(), shape.typeName, inside, stop, depth + 1, 0);
        this.pos = stop;
      }
      this.place = place;
      return;
    }
    if (wire === shape.wire) {
      this.value(shape, end);
    } else if (info.repeated && wire === LEN && shape.wire !== LEN) {
      // A packed repeated scalar: one length, then values of the scalar's wire type.
      const length = this.length(end);
      const stop = this.pos + length;
      while (this.pos < stop) this.value(shape, stop);
    } else {
      this.wrongWire(wire, shape.wire);
    }
  }

  private value(shape: { scalar: string; wire: number }, end: number): void {
    switch (shape.wire) {
      case VARINT:
        this.varint(end, 'value');
        return;
      case I64:
        this.fixed(8, end);
        return;
      case I32:
        this.fixed(4, end);
        return;
      default: {
        const length = this.length(end);
        if (shape.scalar === 'string' && !isUtf8(this.buf.subarray(this.pos, this.pos + length))) {
          this.fail(`the string (${length} bytes at offset ${this.pos}) is not valid UTF-8`);
        }
        this.pos += length;
      }
    }
  }

  /** Skips a well-formed unknown field: its encoding is checked, its content is not. */
  private unknown(number: number, wire: number, end: number, depth: number): void {
    switch (wire) {
      case VARINT:
        this.varint(end, 'value');
        return;
      case I64:
        this.fixed(8, end);
        return;
      case I32:
        this.fixed(4, end);
        return;
      case LEN: {
        const length = this.length(end);
        this.pos += length;
        return;
      }
      default: {
        const place = this.place;
        this.message(undefined, `${place.type} group ${number}`, place.inside, end, depth + 1, number);
        this.place = place;
      }
    }
  }

  private wrongWire(wire: number, expected: number): never {
    return this.fail(`wire type ${wire} (${WIRE_NAMES[wire]}) where the schema says wire type ${expected} (${WIRE_NAMES[expected]})`);
  }

  private fixed(size: 4 | 8, end: number): void {
    const left = end - this.pos;
    if (left < size) this.fail(`truncated fixed${size * 8}: ${size} bytes needed, ${left} left in the enclosing message`);
    this.pos += size;
  }

  /** A length prefix, checked against what is left of the enclosing message. */
  private length(end: number): number {
    const length = this.varint(end, 'length');
    const left = end - this.pos;
    if (length > left) this.fail(`length ${length} runs past the end of the enclosing message (${left} byte${left === 1 ? '' : 's'} left)`);
    return length;
  }

  /** A varint of at most 10 bytes (64 bits), inside the enclosing message; exact up to 2^53. */
  private varint(end: number, what: string): number {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) {
        this.fail(i === 0 ? `the ${what} is missing at the end of the enclosing message` : `the ${what} varint at offset ${start} runs past the end of the enclosing message`);
      }
      const b = this.buf[this.pos++]!;
      if (i === 9 && b > 1) {
        this.fail(b & 0x80 ? `the ${what} varint at offset ${start} is longer than 10 bytes` : `the ${what} varint at offset ${start} overflows 64 bits`);
      }
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return value;
    }
    /* c8 ignore next */
    throw new Error('unreachable');
  }

  private fail(what: string): never {
    const { type, inside, field, at } = this.place;
    const subject = field ? `${field} of ${type}` : type;
    throw new WireFormatError(`${subject}${inside ? ` (in ${inside})` : ''} at offset ${at}: ${what}`);
  }
}
