// A tagged JSON description of pickled values, made the same way on both sides so tests can compare what we
// read with what Python reads:
//
//   TypeScript: toTagged(value) describes a value of our model (src/pickle/values.ts).
//   Python:     PY_TAGGED (a snippet for the oracle) defines describe(value), and a *symbolic* loader,
//               sym_loads(data) / sym_load_all(data), that reads pickles with CPython's own pure-Python
//               unpickler (pickle._Unpickler: its opcodes, memo, marks, framing, string and long decoding)
//               but builds, like ours and without importing anything, G (global), P (persistent id) and
//               O (object) values instead of calling what the pickle names. The builtins that stand for native
//               values (set, frozenset, bytearray, _codecs.encode, bytes, zodbpickle.binary) are mapped the same
//               way as our reader does, so describe(sym_loads(p)) is what our loads(p) must describe as.
//               For plain data, describe(sym_loads(dumps(v))) == describe(v) (tests check that too).
//
// Tags: {"t": "none" | "bool" | "int" | "float" | "str" | "bytes" | "bytearray" | "tuple" | "list" | "dict" |
// "set" | "frozenset" | "global" | "pid" | "obj" | "buffer" | "ref"}. ints are decimal strings, floats
// repr-like strings (compare with normalizeTagged), bytes hex. Lists, dicts, non-empty tuples and objects get
// a number in the order they are first met; meeting one again gives {"t": "ref", "n": number} (shared
// references and cycles). Sets and empty tuples are not numbered (Python shares the empty tuple).
import assert from 'node:assert/strict';
import {
  ByteArray,
  FrozenSet,
  Global,
  PersistentRef,
  PickleBuffer,
  PyFloat,
  PyObject,
  Tuple,
  type PickleValue,
} from '../../src/pickle/index.js';

export type Tagged =
  | { t: 'none' }
  | { t: 'bool'; v: boolean }
  | { t: 'int'; v: string }
  | { t: 'float'; v: string }
  | { t: 'str'; v: string }
  | { t: 'bytes'; v: string }
  | { t: 'bytearray'; v: string }
  | { t: 'tuple'; v: Tagged[] }
  | { t: 'list'; v: Tagged[] }
  | { t: 'dict'; v: Array<[Tagged, Tagged]> }
  | { t: 'set'; v: Tagged[] }
  | { t: 'frozenset'; v: Tagged[] }
  | { t: 'global'; m: string; n: string }
  | { t: 'pid'; v: Tagged }
  | { t: 'buffer'; v: string; readonly: boolean }
  | { t: 'ref'; n: number }
  | {
      t: 'obj';
      kind: string;
      callable: Tagged;
      args: Tagged;
      kwargs: Tagged | null;
      state: Tagged | null;
      list: Tagged[] | null;
      dict: Array<[Tagged, Tagged]> | null;
    };

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Describes a value of our model in the tagged form (see the top of this file). */
export function toTagged(value: PickleValue): Tagged {
  const ids = new Map<object, number>();
  const d = (x: PickleValue): Tagged => {
    if (x === null) return { t: 'none' };
    if (typeof x === 'boolean') return { t: 'bool', v: x };
    if (typeof x === 'number') {
      if (!Number.isInteger(x))
        throw new Error(`a non-integral number is not a value the reader makes: ${x}`);
      return { t: 'int', v: String(x) };
    }
    if (typeof x === 'bigint') return { t: 'int', v: String(x) };
    if (typeof x === 'string') return { t: 'str', v: x };
    if (x instanceof PyFloat) return { t: 'float', v: Object.is(x.value, -0) ? '-0.0' : String(x.value) };
    if (x instanceof ByteArray) return { t: 'bytearray', v: hex(x) };
    if (x instanceof Uint8Array) return { t: 'bytes', v: hex(x) };
    if (x instanceof Global) return { t: 'global', m: x.module, n: x.name };
    if (x instanceof PersistentRef) return { t: 'pid', v: d(x.id) };
    if (x instanceof PickleBuffer) return { t: 'buffer', v: hex(x.data), readonly: x.readonly };
    if (x instanceof Set) {
      const members = [...x].map((m) => toTagged(m)); // numbered on their own, as in Python
      return { t: x instanceof FrozenSet ? 'frozenset' : 'set', v: members };
    }
    if (x instanceof Tuple && x.length === 0) return { t: 'tuple', v: [] };
    const seen = ids.get(x);
    if (seen !== undefined) return { t: 'ref', n: seen };
    ids.set(x, ids.size);
    if (x instanceof Tuple) return { t: 'tuple', v: x.map(d) };
    if (Array.isArray(x)) return { t: 'list', v: x.map(d) };
    if (x instanceof Map) return { t: 'dict', v: [...x].map(([k, v]) => [d(k), d(v)] as [Tagged, Tagged]) };
    if (x instanceof PyObject) {
      const callable = d(x.callable);
      const args = d(x.args);
      const kwargs = x.kwargs === null ? null : d(x.kwargs);
      const state = x.state === undefined ? null : d(x.state);
      const list = x.listItems === null ? null : x.listItems.map(d);
      const dict =
        x.dictItems === null ? null : x.dictItems.map(([k, v]) => [d(k), d(v)] as [Tagged, Tagged]);
      return { t: 'obj', kind: x.kind, callable, args, kwargs, state, list, dict };
    }
    throw new Error(`not a pickle value: ${String(x)}`);
  };
  return d(value);
}

function canonFloat(s: string): string {
  const t = s.toLowerCase();
  let x: number;
  if (t === 'inf' || t === 'infinity') x = Infinity;
  else if (t === '-inf' || t === '-infinity') x = -Infinity;
  else if (t === 'nan' || t === '-nan') x = NaN;
  else x = Number(s);
  if (Number.isNaN(x) && t !== 'nan' && t !== '-nan') throw new Error(`bad float text ${s}`);
  return Object.is(x, -0) ? '-0' : String(x);
}

/** Key-sorted JSON, for sorting set members the same way whichever side described them. */
function canonJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Puts a description (ours or Python's) in a form to compare: floats by value, set members sorted. */
export function normalizeTagged(t: Tagged): Tagged {
  const n = (x: Tagged): Tagged => {
    switch (x.t) {
      case 'float':
        return { t: 'float', v: canonFloat(x.v) };
      case 'tuple':
      case 'list':
        return { t: x.t, v: x.v.map(n) };
      case 'set':
      case 'frozenset': {
        const members = x.v.map(n);
        const keyed = members.map((m) => [canonJson(m), m] as const);
        keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
        return { t: x.t, v: keyed.map((k) => k[1]) };
      }
      case 'dict':
        return { t: 'dict', v: x.v.map(([k, v]) => [n(k), n(v)] as [Tagged, Tagged]) };
      case 'pid':
        return { t: 'pid', v: n(x.v) };
      case 'obj':
        return {
          t: 'obj',
          kind: x.kind,
          callable: n(x.callable),
          args: n(x.args),
          kwargs: x.kwargs === null ? null : n(x.kwargs),
          state: x.state === null ? null : n(x.state),
          list: x.list === null ? null : x.list.map(n),
          dict: x.dict === null ? null : x.dict.map(([k, v]) => [n(k), n(v)] as [Tagged, Tagged]),
        };
      default:
        return x;
    }
  };
  return n(t);
}

/** Asserts that our value describes as Python's description `expected` (from describe() in PY_TAGGED). */
export function assertTaggedEqual(value: PickleValue, expected: Tagged, message?: string): void {
  assert.deepStrictEqual(normalizeTagged(toTagged(value)), normalizeTagged(expected), message);
}

/**
 * Python for oracle snippets: describe(value), sym_loads(data, encoding='ASCII', errors='bytes', buffers=None,
 * extensions=None), sym_load_all(data, ...) (every pickle in data, one after the other with one shared memo, as
 * ZODB reads a record's class and state pickles), and the classes G, P, O, B of what it builds.
 */
export const PY_TAGGED = String.raw`
import io as _io
import json as _json
import pickle as _pickle
from pickle import _Unpickler as _PyUnpickler, UnpicklingError as _UnpicklingError

class G:
    __slots__ = ('module', 'name')
    def __init__(self, module, name):
        self.module = module
        self.name = name
    def __repr__(self):
        return '<global %s.%s>' % (self.module, self.name)

class P:
    __slots__ = ('pid',)
    def __init__(self, pid):
        self.pid = pid

class B:
    __slots__ = ('data', 'readonly')
    def __init__(self, data, readonly):
        self.data = bytes(data)
        self.readonly = readonly

_NOSTATE = object()

class O:
    __slots__ = ('kind', 'callable', 'args', 'kwargs', 'state', 'listitems', 'dictitems', '__weakref__')
    def __init__(self, kind, callable, args, kwargs=None):
        self.kind = kind
        self.callable = callable
        self.args = args
        self.kwargs = kwargs
        self.state = _NOSTATE
        self.listitems = None
        self.dictitems = None

_G = {}
def _global(module, name):
    g = _G.get((module, name))
    if g is None:
        g = _G[(module, name)] = G(module, name)
    return g

def _latin1_name(v):
    return type(v) is str and v in ('latin1', 'latin-1')

def _unhashable(x):
    return type(x) in (list, dict, set, bytearray)

def _reduce(func, args):
    if type(func) is G:
        key = (func.module, func.name)
        a0 = args[0] if args else None
        if key in (('builtins', 'set'), ('__builtin__', 'set'), ('builtins', 'frozenset'), ('__builtin__', 'frozenset')):
            make = set if key[1] == 'set' else frozenset
            if len(args) == 0:
                return make()
            if len(args) == 1 and type(a0) in (list, tuple) and not any(_unhashable(x) for x in a0):
                return make(a0)
        elif key == ('_codecs', 'encode'):
            if len(args) == 2 and type(a0) is str and _latin1_name(args[1]):
                try:
                    return a0.encode('latin1')
                except UnicodeEncodeError:
                    pass
        elif key in (('builtins', 'bytearray'), ('__builtin__', 'bytearray')):
            if len(args) == 0:
                return bytearray()
            if len(args) == 1 and type(a0) is bytes:
                return bytearray(a0)
            if len(args) == 2 and type(a0) is str and _latin1_name(args[1]):
                try:
                    return bytearray(a0.encode('latin1'))
                except UnicodeEncodeError:
                    pass
        elif key in (('builtins', 'bytes'), ('__builtin__', 'bytes')):
            if len(args) == 0:
                return b''
        elif key == ('zodbpickle', 'binary'):
            if len(args) == 1 and type(a0) is bytes:
                return a0
    return O('reduce', func, args)

class SymUnpickler(_PyUnpickler):
    dispatch = dict(_PyUnpickler.dispatch)

    def __init__(self, file, encoding='ASCII', errors='bytes', buffers=None, extensions=None):
        super().__init__(file, encoding='latin1', errors='strict', buffers=buffers)
        self._zencoding = encoding
        self._zerrors = errors
        self._extensions = extensions or {}

    # zodbpickle's decode_string: errors='bytes' keeps an undecodable Python 2 str as bytes
    def _decode_string(self, value):
        if self._zencoding == 'bytes':
            return value
        try:
            return value.decode(self._zencoding)
        except UnicodeDecodeError:
            if self._zerrors == 'bytes':
                return value
            raise

    def find_class(self, module, name):
        return _global(module, name)

    def persistent_load(self, pid):
        return P(pid)

    def get_extension(self, code):
        key = self._extensions.get(code)
        if key is None:
            raise _UnpicklingError('unregistered extension code %d' % code)
        self.append(_global(*key))

    def load_reduce(self):
        args = self.stack.pop()
        if type(args) is not tuple:
            raise _UnpicklingError('REDUCE args must be a tuple')
        self.stack[-1] = _reduce(self.stack[-1], args)
    dispatch[_pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple:
            raise _UnpicklingError('NEWOBJ args must be a tuple')
        self.append(O('newobj', cls, args))
    dispatch[_pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple or type(kwargs) is not dict:
            raise _UnpicklingError('bad NEWOBJ_EX arguments')
        self.append(O('newobj_ex', cls, args, kwargs))
    dispatch[_pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_inst(self):
        module = self.readline()[:-1].decode('ascii')
        name = self.readline()[:-1].decode('ascii')
        cls = self.find_class(module, name)
        args = tuple(self.pop_mark())
        self.append(O('obj', cls, args))
    dispatch[_pickle.INST[0]] = load_inst

    def load_obj(self):
        args = self.pop_mark()
        cls = args.pop(0)
        self.append(O('obj', cls, tuple(args)))
    dispatch[_pickle.OBJ[0]] = load_obj

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is O:
            if inst.state is not _NOSTATE:
                raise _UnpicklingError('BUILD twice')
            inst.state = state
        elif state is not None:
            raise _UnpicklingError('cannot BUILD %s' % type(inst).__name__)
    dispatch[_pickle.BUILD[0]] = load_build

    def _extend(self, target, items):
        if type(target) is list:
            target.extend(items)
        elif type(target) is O:
            if target.listitems is None:
                target.listitems = []
            target.listitems.extend(items)
        else:
            raise _UnpicklingError('cannot append to %s' % type(target).__name__)

    def load_append(self):
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])
    dispatch[_pickle.APPEND[0]] = load_append

    def load_appends(self):
        items = self.pop_mark()
        self._extend(self.stack[-1], items)
    dispatch[_pickle.APPENDS[0]] = load_appends

    def _setitems(self, target, items):
        if type(target) is dict:
            for k, v in items:
                target[k] = v
        elif type(target) is O:
            if target.dictitems is None:
                target.dictitems = []
            target.dictitems.extend(items)
        else:
            raise _UnpicklingError('cannot set items of %s' % type(target).__name__)

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [(key, value)])
    dispatch[_pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise _UnpicklingError('odd number of items for SETITEMS')
        self._setitems(self.stack[-1], [(items[i], items[i + 1]) for i in range(0, len(items), 2)])
    dispatch[_pickle.SETITEMS[0]] = load_setitems

    def load_next_buffer(self):
        if self._buffers is None:
            raise _UnpicklingError('no buffers')
        try:
            buf = next(self._buffers)
        except StopIteration:
            raise _UnpicklingError('not enough out-of-band buffers')
        self.append(B(buf, False))
    dispatch[_pickle.NEXT_BUFFER[0]] = load_next_buffer

    def load_readonly_buffer(self):
        top = self.stack[-1]
        if type(top) is B:
            if not top.readonly:
                self.stack[-1] = B(top.data, True)
        elif type(top) is bytearray:
            self.stack[-1] = B(top, True)
        elif type(top) is not bytes:
            raise _UnpicklingError('READONLY_BUFFER needs a buffer')
    dispatch[_pickle.READONLY_BUFFER[0]] = load_readonly_buffer

def sym_loads(data, encoding='ASCII', errors='bytes', buffers=None, extensions=None):
    return SymUnpickler(_io.BytesIO(data), encoding, errors, buffers, extensions).load()

def sym_load_all(data, encoding='ASCII', errors='bytes'):
    f = _io.BytesIO(data)
    u = SymUnpickler(f, encoding, errors)
    out = []
    while f.tell() < len(data):
        out.append(u.load())
    return out

def describe(value):
    ids = {}
    keep = []
    def d(x):
        t = type(x)
        if x is None:
            return {'t': 'none'}
        if t is bool:
            return {'t': 'bool', 'v': x}
        if t is int:
            return {'t': 'int', 'v': str(x)}
        if t is float:
            return {'t': 'float', 'v': repr(x)}
        if t is str:
            return {'t': 'str', 'v': x}
        if t is bytes:
            return {'t': 'bytes', 'v': x.hex()}
        if t is bytearray:
            return {'t': 'bytearray', 'v': bytes(x).hex()}
        if t is G:
            return {'t': 'global', 'm': x.module, 'n': x.name}
        if t is P:
            return {'t': 'pid', 'v': d(x.pid)}
        if t is B:
            return {'t': 'buffer', 'v': x.data.hex(), 'readonly': x.readonly}
        if t in (set, frozenset):
            members = [describe(m) for m in x]
            members.sort(key=lambda z: _json.dumps(z, sort_keys=True))
            return {'t': t.__name__, 'v': members}
        if t is tuple and not x:
            return {'t': 'tuple', 'v': []}
        if id(x) in ids:
            return {'t': 'ref', 'n': ids[id(x)]}
        ids[id(x)] = len(ids)
        keep.append(x)
        if t is tuple:
            return {'t': 'tuple', 'v': [d(i) for i in x]}
        if t is list:
            return {'t': 'list', 'v': [d(i) for i in x]}
        if t is dict:
            return {'t': 'dict', 'v': [[d(k), d(v)] for k, v in x.items()]}
        if t is O:
            callable_ = d(x.callable)
            args = d(x.args)
            kwargs = None if x.kwargs is None else d(x.kwargs)
            state = None if x.state is _NOSTATE else d(x.state)
            lst = None if x.listitems is None else [d(i) for i in x.listitems]
            dct = None if x.dictitems is None else [[d(k), d(v)] for k, v in x.dictitems]
            return {'t': 'obj', 'kind': x.kind, 'callable': callable_, 'args': args, 'kwargs': kwargs,
                    'state': state, 'list': lst, 'dict': dct}
        raise TypeError('cannot describe %r' % (t,))
    return d(value)
`;
