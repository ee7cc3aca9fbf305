// A record that does not decode is still shown: its opcodes, as pickletools.dis would list them, walked without
// building anything, for at most a bounded number of opcodes, stopping where the bytes make no sense.
import * as OP from '../../pickle/opcodes.js';
import type { OpcodeLine, OpcodeSummary } from './types.js';

type ArgKind = 'none' | 'line' | 'lines2' | 'u1' | 'u2' | 'i4' | 'f8' | 'len1' | 'len4' | 'len8' | 'u8';

const NAMES = new Map<number, string>();
for (const [name, code] of Object.entries(OP))
  if (typeof code === 'number' && name === name.toUpperCase()) NAMES.set(code, name);

const ARGS: Partial<Record<string, ArgKind>> = {
  INT: 'line',
  LONG: 'line',
  FLOAT: 'line',
  PERSID: 'line',
  STRING: 'line',
  UNICODE: 'line',
  GET: 'line',
  PUT: 'line',
  GLOBAL: 'lines2',
  INST: 'lines2',
  BININT1: 'u1',
  BINGET: 'u1',
  BINPUT: 'u1',
  EXT1: 'u1',
  PROTO: 'u1',
  BININT2: 'u2',
  EXT2: 'u2',
  BININT: 'i4',
  LONG_BINGET: 'i4',
  LONG_BINPUT: 'i4',
  EXT4: 'i4',
  BINFLOAT: 'f8',
  SHORT_BINSTRING: 'len1',
  SHORT_BINUNICODE: 'len1',
  SHORT_BINBYTES: 'len1',
  LONG1: 'len1',
  BINSTRING: 'len4',
  BINUNICODE: 'len4',
  BINBYTES: 'len4',
  LONG4: 'len4',
  BINUNICODE8: 'len8',
  BINBYTES8: 'len8',
  BYTEARRAY8: 'len8',
  FRAME: 'u8',
};

function shown(b: Uint8Array, maxArg: number): string {
  const s = Buffer.from(b.buffer, b.byteOffset, Math.min(b.length, maxArg)).toString('latin1');
  return JSON.stringify(s) + (b.length > maxArg ? ` … (${b.length} bytes)` : '');
}

/** The record's opcodes from the start, at most `maxOps` of them (both pickles of a record, one after the other). */
export function opcodeSummary(data: Uint8Array, maxOps = 200, maxArg = 80): OpcodeSummary {
  const ops: OpcodeLine[] = [];
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let p = 0;
  const need = (n: number): void => {
    if (p + n > data.length) throw new Error(`truncated at byte ${data.length}`);
  };
  const line = (): Uint8Array => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw new Error(`no newline after byte ${p}`);
    const text = data.subarray(p, end);
    p = end + 1;
    return text;
  };
  try {
    while (p < data.length) {
      if (ops.length >= maxOps)
        return { ops, stopped: `after ${maxOps} opcodes, at byte ${p} of ${data.length}` };
      const pos = p;
      const code = data[p++];
      const name = NAMES.get(code);
      if (!name)
        return { ops, stopped: `unknown opcode 0x${code.toString(16).padStart(2, '0')} at byte ${pos}` };
      let arg: string | undefined;
      let len = 0;
      switch (ARGS[name] ?? 'none') {
        case 'none':
          break;
        case 'line':
          arg = shown(line(), maxArg);
          break;
        case 'lines2':
          arg = `${shown(line(), maxArg)} ${shown(line(), maxArg)}`;
          break;
        case 'u1':
          need(1);
          arg = String(data[p]);
          p += 1;
          break;
        case 'u2':
          need(2);
          arg = String(dv.getUint16(p, true));
          p += 2;
          break;
        case 'i4':
          need(4);
          arg = String(dv.getInt32(p, true));
          p += 4;
          break;
        case 'f8':
          need(8);
          arg = String(dv.getFloat64(p, false));
          p += 8;
          break;
        case 'u8':
          need(8);
          arg = String(dv.getBigUint64(p, true));
          p += 8;
          break;
        case 'len1':
          need(1);
          len = data[p];
          p += 1;
          break;
        case 'len4':
          need(4);
          len = dv.getUint32(p, true);
          p += 4;
          break;
        case 'len8': {
          need(8);
          const n = dv.getBigUint64(p, true);
          p += 8;
          if (n > BigInt(data.length)) throw new Error(`a length of ${n} at byte ${pos} passes the end`);
          len = Number(n);
          break;
        }
      }
      if (ARGS[name]?.startsWith('len')) {
        need(len);
        arg = shown(data.subarray(p, p + len), maxArg);
        p += len;
      }
      ops.push(arg === undefined ? { pos, name } : { pos, name, arg });
    }
  } catch (e) {
    return { ops, stopped: (e as Error).message };
  }
  return { ops };
}
