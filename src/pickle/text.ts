// Python's text codecs as pickles need them (UTF-8 with 'surrogatepass', raw-unicode-escape, escape_decode) and
// Python's int() of text, on byte ranges, shared by the reader and the reference scanner.

// CPython refuses to convert decimal strings longer than this to int (sys.int_info.default_max_str_digits).
export const MAX_STR_DIGITS = 4300;

// V8's BigInt holds at most 2^30 bits.
export const MAX_BIGINT_BYTES = 2 ** 27 - 8;

/** The bytes from start to end as Latin-1 text. */
export function latin1(src: Uint8Array, start: number, end: number): string {
  return Buffer.from(src.buffer, src.byteOffset, src.byteLength).toString('latin1', start, end);
}

const WS = /^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g;
const INT_DEC0 = /^[+-]?(?:[1-9](?:_?[0-9])*|0(?:_?0)*)$/; // int(s, 0): no leading zeros
const INT_DEC10 = /^[+-]?[0-9](?:_?[0-9])*$/; // int(s)
const INT_HEX = /^([+-]?)0[xX]((?:_?[0-9a-fA-F])+)$/;
const INT_OCT = /^([+-]?)0[oO]((?:_?[0-7])+)$/;
const INT_BIN = /^([+-]?)0[bB]((?:_?[01])+)$/;

/**
 * Python's int(text, 0) (base0) or int(text) on the text of INT, LONG, GET or PUT: the value, null when the text
 * is not an int, or a message when it is one Python refuses (too many digits).
 */
export function parseIntText(text: string, base0: boolean): number | bigint | null | string {
  let s = text;
  if (s.length === 0) return null;
  const c0 = s.charCodeAt(0);
  const cl = s.charCodeAt(s.length - 1);
  if (c0 <= 0x20 || cl <= 0x20) s = s.replace(WS, '');
  if ((base0 ? INT_DEC0 : INT_DEC10).test(s)) {
    if (s.includes('_')) s = s.replace(/_/g, '');
    if (s.length <= 16) {
      const n = Number(s);
      if (Number.isSafeInteger(n)) return Object.is(n, -0) ? 0 : n;
    }
    const digits = s.length - (s[0] === '+' || s[0] === '-' ? 1 : 0);
    if (digits > MAX_STR_DIGITS) {
      return `integer text of ${digits} digits exceeds the limit of ${MAX_STR_DIGITS} (as Python's int)`;
    }
    const v = BigInt(s);
    return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
  }
  if (!base0) return null;
  let m: RegExpExecArray | null;
  let prefix: string;
  if ((m = INT_HEX.exec(s))) prefix = '0x';
  else if ((m = INT_OCT.exec(s))) prefix = '0o';
  else if ((m = INT_BIN.exec(s))) prefix = '0b';
  else return null;
  const digits = m[2].replace(/_/g, '');
  const bits = digits.length * (prefix === '0x' ? 4 : prefix === '0o' ? 3 : 1);
  if (bits > MAX_BIGINT_BYTES * 8) return `an int of ${bits} bits is too large for a JavaScript BigInt`;
  let v = BigInt(prefix + digits);
  if (m[1] === '-') v = -v;
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}

const FLOAT_TEXT =
  /^[+-]?(?:(?:[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)(?:[eE][+-]?[0-9](?:_?[0-9])*)?|inf|infinity|nan)$/i;

/** Python's float(text) on the text of FLOAT, or null. */
export function parseFloatText(text: string): number | null {
  const s = text.replace(WS, '');
  if (!FLOAT_TEXT.test(s)) return null;
  const lower = s.toLowerCase();
  const body = lower[0] === '+' || lower[0] === '-' ? lower.slice(1) : lower;
  const neg = lower[0] === '-';
  if (body === 'inf' || body === 'infinity') return neg ? -Infinity : Infinity;
  if (body === 'nan') return NaN;
  return Number(s.includes('_') ? s.replace(/_/g, '') : s);
}

/** A string built from code points, in chunks (String.fromCharCode takes a bounded number of arguments). */
class TextBuilder {
  private readonly units: number[] = [];
  constructor(private out = '') {}

  push(cp: number): void {
    if (cp >= 0x10000) {
      const c = cp - 0x10000;
      this.units.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
    } else {
      this.units.push(cp);
    }
    if (this.units.length >= 4096) {
      this.out += String.fromCharCode(...this.units);
      this.units.length = 0;
    }
  }

  toString(): string {
    return this.out + String.fromCharCode(...this.units);
  }
}

/**
 * Strict UTF-8 (Python's codec): overlong forms, code points past U+10FFFF and truncated sequences fail (null);
 * encoded surrogates are accepted only with surrogatePass.
 */
export function decodeUtf8Strict(
  d: Uint8Array,
  start: number,
  end: number,
  surrogatePass: boolean,
): string | null {
  const text = new TextBuilder();
  let i = start;
  while (i < end) {
    const c = d[i];
    let cp: number;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      if (i + 1 >= end) return null;
      const c1 = d[i + 1];
      if ((c1 & 0xc0) !== 0x80) return null;
      cp = ((c & 0x1f) << 6) | (c1 & 0x3f);
      i += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      if (i + 2 >= end) return null;
      const c1 = d[i + 1];
      const c2 = d[i + 2];
      if ((c1 & 0xc0) !== 0x80 || (c2 & 0xc0) !== 0x80) return null;
      cp = ((c & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (c2 & 0x3f);
      if (cp < 0x800) return null; // overlong
      if (cp >= 0xd800 && cp <= 0xdfff && !surrogatePass) return null;
      i += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      if (i + 3 >= end) return null;
      const c1 = d[i + 1];
      const c2 = d[i + 2];
      const c3 = d[i + 3];
      if ((c1 & 0xc0) !== 0x80 || (c2 & 0xc0) !== 0x80 || (c3 & 0xc0) !== 0x80) return null;
      cp = ((c & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((c2 & 0x3f) << 6) | (c3 & 0x3f);
      if (cp < 0x10000 || cp > 0x10ffff) return null;
      i += 4;
    } else {
      return null;
    }
    text.push(cp);
  }
  return text.toString();
}

/** Python's raw-unicode-escape decoding (UNICODE): \uXXXX and \UXXXXXXXX escapes, other bytes are Latin-1; or null. */
export function rawUnicodeEscapeDecode(d: Uint8Array, start: number, end: number): string | null {
  let i = start;
  while (i < end && d[i] !== 0x5c) i++;
  if (i === end) return latin1(d, start, end); // no backslash: all Latin-1
  const text = new TextBuilder(latin1(d, start, i));
  while (i < end) {
    const c = d[i++];
    if (c !== 0x5c || i >= end) {
      text.push(c);
    } else {
      const e = d[i++];
      let count: number;
      if (e === 0x75) count = 4;
      else if (e === 0x55) count = 8;
      else {
        text.push(0x5c);
        text.push(e);
        continue;
      }
      if (i + count > end) return null; // truncated \uXXXX escape
      let cp = 0;
      for (let k = 0; k < count; k++) {
        const h = hexValue(d[i++]);
        if (h < 0) return null;
        cp = cp * 16 + h;
      }
      if (cp > 0x10ffff) return null;
      text.push(cp);
    }
  }
  return text.toString();
}

export function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// escape_decode's one-character escapes: \\ \' \" \b \f \t \n \r \v \a, by the byte after the backslash (-1: none)
const SIMPLE_ESCAPES = new Int16Array(256).fill(-1);
for (const [c, v] of [
  ['\\', 0x5c],
  ["'", 0x27],
  ['"', 0x22],
  ['b', 0x08],
  ['f', 0x0c],
  ['t', 0x09],
  ['n', 0x0a],
  ['r', 0x0d],
  ['v', 0x0b],
  ['a', 0x07],
] as const) {
  SIMPLE_ESCAPES[c.charCodeAt(0)] = v;
}

/** Python's codecs.escape_decode (the STRING opcode's quoted text): the bytes, or a message when it is bad. */
export function escapeDecode(d: Uint8Array, start: number, end: number): Uint8Array | string {
  const out = new Uint8Array(end - start); // escapes only shrink the text
  let o = 0;
  let i = start;
  while (i < end) {
    const c = d[i++];
    if (c !== 0x5c) {
      out[o++] = c;
      continue;
    }
    if (i >= end) return 'Trailing \\ in string';
    const e = d[i++];
    if (e === 0x0a) continue; // backslash-newline: nothing
    const simple = SIMPLE_ESCAPES[e];
    if (simple >= 0) {
      out[o++] = simple;
    } else if (e >= 0x30 && e <= 0x37) {
      // \ooo: up to three octal digits
      let v = e - 0x30;
      for (let k = 0; k < 2 && i < end && d[i] >= 0x30 && d[i] <= 0x37; k++) v = v * 8 + (d[i++] - 0x30);
      out[o++] = v & 0xff; // Python 3.11 keeps the low byte of \400-\777
    } else if (e === 0x78) {
      // \xhh: exactly two hex digits
      const h1 = i < end ? hexValue(d[i]) : -1;
      const h2 = i + 1 < end ? hexValue(d[i + 1]) : -1;
      if (h1 < 0 || h2 < 0) return `invalid \\x escape at position ${i - 2 - start}`;
      out[o++] = h1 * 16 + h2;
      i += 2;
    } else {
      // unknown escapes stay as they are (Python warns)
      out[o++] = 0x5c;
      out[o++] = e;
    }
  }
  return out.subarray(0, o);
}
