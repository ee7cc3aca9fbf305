// Python values and local time zones for tests that compare our text with Python's (the oracle): values of
// %-formats and log records cross to Python as [type, text] (JSON loses -0 and the int/float distinction).
import { PyFloat, type PyValue } from '../../src/pickle/index.js';

/** Runs `fn` with the process's local time zone set to `tz` (Node reads TZ again when it changes). */
export function inZone<T>(tz: string, fn: () => T): T {
  const saved = process.env.TZ;
  process.env.TZ = tz;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
}

// Typed values cross to Python as [type, value]
export type Wire = ['int', string] | ['float', string] | ['str', string] | ['none', null];

export function toWire(v: PyValue): Wire {
  if (typeof v === 'string') return ['str', v];
  if (typeof v === 'number' || typeof v === 'bigint') return ['int', BigInt(v).toString()];
  // as text: JSON loses -0
  if (v instanceof PyFloat) return ['float', Object.is(v.value, -0) ? '-0' : String(v.value)];
  if (v === null) return ['none', null];
  throw new Error('tuple');
}

export const PY_VALUES = `
import math
def from_wire(w):
    t, v = w
    if t == 'int': return int(v)
    if t == 'float': return float({'NaN': 'nan', 'Infinity': 'inf', '-Infinity': '-inf'}.get(v, v))
    if t == 'none': return None
    return v
`;
