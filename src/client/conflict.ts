// Conflict resolution on the client: ZODB's ConflictResolution.py (tryToResolveConflict) with resolvers
// registered by class name instead of imported classes.
//
// A conflict is resolved as ZODB does: the class is read from the new record's class metadata; its resolver
// (the class's _p_resolveConflict) gets the states of the old revision (the one the transaction started from,
// read with loadSerial), the committed revision and the new one, unpickled with their persistent references
// kept as PersistentReference (one per reference, shared by the three states, compared by oid); what it
// returns is pickled back after the new record's class metadata, with one pickler (shared memo), as
// ZODB's `pickler.dump(meta); pickler.dump(resolved)`. An unknown class or any failure of the resolver leaves
// the conflict standing (null).
//
// Protocol: ZODB writes protocol 3 (ZODB._compat._protocol), and so do we, except for a record written in
// protocol 2 or below (a database still read by Python 2 clients), which is resolved in protocol 2 so that
// those clients can still read it.
import { PickleError } from '../pickle/errors.js';
import { Pickler } from '../pickle/pickler.js';
import { classifyPersistentId, decodeClassMeta } from '../pickle/record.js';
import { Unpickler } from '../pickle/unpickler.js';
import {
  isList,
  isTuple,
  PersistentRef,
  pyInt,
  pyRepr,
  tupleFrom,
  type PickleValue,
} from '../pickle/values.js';
import { ConflictError } from '../storage/errors.js';
import { idEquals, type Oid, type Tid } from '../storage/ids.js';
import type { ConflictResolver } from '../storage/interfaces.js';

/**
 * _p_resolveConflict for one class: the states as unpickled values (persistent references as
 * PersistentReference); return the resolved state, or throw (ConflictError, or anything) / return undefined
 * when it cannot be resolved.
 */
export type StateResolver = (
  oldState: PickleValue,
  committedState: PickleValue,
  newState: PickleValue,
) => PickleValue | undefined;

/**
 * A persistent reference met while resolving a conflict (ZODB.ConflictResolution.PersistentReference). It
 * pickles back as the reference it was read from (its `id`, the persistent id as the record held it).
 */
export class PersistentReference extends PersistentRef {
  readonly oid: Oid;
  /** the database of a cross-database reference, else null */
  readonly databaseName: string | null;
  readonly weak: boolean;
  /** the class the reference names, when it names one (presence is not reliable, as in ZODB) */
  readonly klass: PickleValue | undefined;

  constructor(pid: PickleValue) {
    super(pid);
    const ref = classifyPersistentId(pid);
    // ZODB's PersistentReference asserts 'unknown reference format'
    if (ref.kind === 'unknown')
      throw new PickleError(`unknown persistent reference format: ${pyRepr(pid)}`, 0);
    this.oid = ref.oid;
    this.databaseName = ref.database ?? null;
    this.weak = ref.kind === 'weak' || ref.kind === 'weak-legacy';
    this.klass = ref.classMeta;
  }

  /**
   * ZODB's comparison: true when `other` is the same reference (same oid and database, neither weak);
   * otherwise it throws, as ZODB's `==` raises ValueError, because nothing reliable can be said (the two
   * objects' own comparison is unknown) — the resolution then fails and the conflict stands.
   */
  equals(other: unknown): boolean {
    if (
      this === other ||
      (other instanceof PersistentReference &&
        idEquals(this.oid, other.oid) &&
        this.databaseName === other.databaseName &&
        !this.weak &&
        !other.weak)
    ) {
      return true;
    }
    throw new Error("can't reliably compare against different PersistentReferences");
  }
}

/** The PersistentReferenceFactory: one PersistentReference per distinct persistent id, across the three states. */
function referenceFactory(): (pid: PickleValue) => PickleValue {
  const seen = new Map<string, PersistentReference>();
  return (pid) => {
    // ZODB keys by tuple(ref): lists and tuples alike
    const key = pyRepr(isList(pid) || isTuple(pid) ? tupleFrom(pid) : pid);
    let r = seen.get(key);
    if (!r) {
      r = new PersistentReference(pid);
      seen.set(key, r);
    }
    return r;
  };
}

/** BTrees.Length.Length._p_resolveConflict: committed + new - old (Python ints). */
function resolveLength(old: PickleValue, committed: PickleValue, newState: PickleValue): PickleValue {
  const int = (v: PickleValue): bigint => {
    if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
    if (typeof v === 'bigint') return v;
    throw new ConflictError(null, null, null, `BTrees.Length.Length state is not an int: ${pyRepr(v)}`);
  };
  return pyInt(int(committed) + int(newState) - int(old));
}

function keyOf(module: string, name: string): string {
  return module + '\n' + name;
}

export class ConflictResolverRegistry {
  private readonly resolvers = new Map<string, StateResolver>();

  /** BTrees.Length.Length built in. */
  constructor() {
    this.register('BTrees.Length', 'Length', resolveLength);
  }

  /** The resolver of the class `module.name` (replacing any earlier one). */
  register(module: string, name: string, resolver: StateResolver): this {
    this.resolvers.set(keyOf(module, name), resolver);
    return this;
  }

  /** The resolver registered for `module.name`, or undefined. */
  get(module: string, name: string): StateResolver | undefined {
    return this.resolvers.get(keyOf(module, name));
  }

  /**
   * The storage's ConflictResolver: reads the old revision (and the committed one, when not given) with
   * `loadSerial`. Resolves to the resolved record, or null when the conflict stands.
   */
  resolverFor(loadSerial: (oid: Oid, serial: Tid) => Promise<Uint8Array>): ConflictResolver {
    return async (oid, committedSerial, oldSerial, newData, committedData) => {
      try {
        return await this.tryToResolve(loadSerial, oid, committedSerial, oldSerial, newData, committedData);
      } catch {
        // as ZODB: whatever went wrong, the conflict stands (never an arbitrary error instead of ConflictError)
        return null;
      }
    };
  }

  private async tryToResolve(
    loadSerial: (oid: Oid, serial: Tid) => Promise<Uint8Array>,
    oid: Oid,
    committedSerial: Tid,
    oldSerial: Tid,
    newData: Uint8Array,
    committedData: Uint8Array | null,
  ): Promise<Uint8Array | null> {
    const klass = decodeClassMeta(newData);
    // a persistent class (module '') has no resolver: ZODB cannot instantiate it either
    const resolve = klass.module ? this.get(klass.module, klass.name) : undefined;
    if (!resolve) return null;

    const [oldData, committed] = await Promise.all([
      loadSerial(oid, oldSerial),
      committedData && committedData.length ? committedData : loadSerial(oid, committedSerial),
    ]);

    const persistentLoad = referenceFactory();
    const reader = new Unpickler(newData, { persistentLoad });
    const meta = reader.load();
    const newState = reader.load();
    const oldState = recordState(oldData, persistentLoad);
    const committedState = recordState(committed, persistentLoad);

    const resolved = resolve(oldState, committedState, newState);
    if (resolved === undefined) return null;
    return new Pickler(recordProtocol(newData) <= 2 ? 2 : 3).dumpsMany([meta, resolved]);
  }
}

/** ZODB.ConflictResolution.state: the state pickle of a record (the class metadata skipped). */
function recordState(data: Uint8Array, persistentLoad: (pid: PickleValue) => PickleValue): PickleValue {
  const u = new Unpickler(data, { persistentLoad });
  u.load();
  return u.load();
}

/** The protocol a record's first pickle declares (PROTO n), 1 when it has none (protocol 0 or 1). */
function recordProtocol(data: Uint8Array): number {
  return data.length >= 2 && data[0] === 0x80 ? data[1] : 1;
}

/** The registry ClientStorage uses unless given another: BTrees.Length.Length, and what the application adds. */
export const defaultResolvers: ConflictResolverRegistry = new ConflictResolverRegistry();
