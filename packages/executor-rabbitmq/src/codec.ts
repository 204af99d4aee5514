/**
 * The wire format of units, results and shared values: JSON with typed-array leaves, in one buffer.
 *
 *   "TCU1" | u32 JSON length | JSON (UTF-8) | padding to 8 | each array's bytes, 8-aligned
 *
 * Typed arrays become `{"$ta": "f32", "o": offset, "n": length}` in the JSON; numbers JSON cannot
 * hold exactly (NaN, ±Infinity, −0) become `{"$num": "NaN"}`, so a value decodes to exactly what was
 * encoded (finite doubles round-trip through JSON's shortest representation). Byte order: little-endian
 * (every platform tile-compile builds its native kernels for).
 */
import type { TaskArray } from "@tile-compile/core";

const MAGIC = "TCU1";
const TYPES = {
  f32: Float32Array,
  f64: Float64Array,
  u16: Uint16Array,
  u32: Uint32Array,
  i32: Int32Array,
  u8: Uint8Array,
} as const;
type TypeName = keyof typeof TYPES;

function typeName(a: ArrayBufferView): TypeName {
  for (const [k, C] of Object.entries(TYPES)) if (a instanceof C && a.constructor === C) return k as TypeName;
  if (a instanceof Uint8Array) return "u8"; // Buffer
  throw new TypeError(`cannot encode a ${a.constructor.name}`);
}

const align8 = (n: number) => (n + 7) & ~7;

/** Encode a value (JSON with typed-array leaves) into one buffer. */
export function encode(value: unknown): Buffer {
  const arrays: ArrayBufferView[] = [];
  let offset = 0;
  const json =
    JSON.stringify(value, function (this: Record<string, unknown>, k, value0: unknown) {
      // The holder's own value: a Buffer has reached the replacer as its toJSON() form already.
      const v = k === "" ? value0 : ArrayBuffer.isView(this[k]) ? this[k] : value0;
      if (typeof v === "number") {
        if (Number.isNaN(v)) return { $num: "NaN" };
        if (v === Infinity) return { $num: "Infinity" };
        if (v === -Infinity) return { $num: "-Infinity" };
        if (Object.is(v, -0)) return { $num: "-0" };
        return v;
      }
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        const t = typeName(v);
        const d = { $ta: t, o: offset, n: (v as TaskArray).length };
        arrays.push(v);
        offset += align8(v.byteLength);
        return d;
      }
      return v;
    }) ?? "null";
  const j = Buffer.from(json, "utf8");
  const head = align8(8 + j.length);
  const out = Buffer.alloc(head + offset);
  out.write(MAGIC, 0, "latin1");
  out.writeUInt32LE(j.length, 4);
  j.copy(out, 8);
  let o = head;
  for (const a of arrays) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(out, o);
    o += align8(a.byteLength);
  }
  return out;
}

/** Decode a buffer made by {@link encode}; typed arrays are fresh copies (aligned, independent of `buf`). */
export function decode<T = unknown>(buf: Uint8Array): T {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8 || b.toString("latin1", 0, 4) !== MAGIC) throw new Error("not a tile-compile unit buffer (bad magic)");
  const len = b.readUInt32LE(4);
  if (8 + len > b.length) throw new Error("truncated unit buffer");
  const head = align8(8 + len);
  return JSON.parse(b.toString("utf8", 8, 8 + len), (_k, v: unknown) => {
    if (v && typeof v === "object") {
      const o = v as { $ta?: TypeName; o?: number; n?: number; $num?: string };
      if (o.$num !== undefined && Object.keys(o).length === 1) return o.$num === "-0" ? -0 : Number(o.$num);
      if (o.$ta !== undefined && typeof o.o === "number" && typeof o.n === "number") {
        const C = TYPES[o.$ta];
        if (!C) throw new Error(`unknown array type ${o.$ta}`);
        const bytes = o.n * C.BYTES_PER_ELEMENT,
          start = head + o.o;
        if (start + bytes > b.length) throw new Error("truncated unit buffer (array past the end)");
        const copy = new Uint8Array(bytes);
        copy.set(b.subarray(start, start + bytes));
        return new C(copy.buffer, 0, o.n);
      }
    }
    return v;
  }) as T;
}
