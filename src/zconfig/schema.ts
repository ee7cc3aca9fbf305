// A ZConfig schema as data: section types with their keys (datatype, default, required, multikey) and
// section slots (a concrete type, or an abstract type any implementing type fills), the top level, and the
// packages %import may add. ZConfig reads these from schema.xml and component.xml; here they are literals.
import type { ConvContext, Datatype } from './datatypes.js';

export interface KeyInfo {
  name: string;
  datatype: Datatype;
  required?: boolean;
  /** the value as written, converted by `datatype` when the key is absent */
  default?: string;
  /** a multikey: every value, in order */
  multi?: boolean;
}

export interface SectionSlot {
  /** a concrete section type, or an abstract one any implementing type matches */
  type: string;
  attr: string;
  /** '*' (the default): named or not; '+': must be named; anything else: only a section of that name */
  name?: string;
  required?: boolean;
  /** a multisection: every matching section, in order */
  multi?: boolean;
}

export interface SectionType {
  name: string;
  /** the abstract type it implements */
  implements?: string;
  keys: KeyInfo[];
  sections: SectionSlot[];
  /** the schema's user cannot serve this: why (not said where the content is ignored) */
  refuse?: string;
  /** read and checked, never used (zdaemon's <runner> in runzeo): refusals do not apply inside it */
  ignoreContent?: boolean;
}

export interface ImportablePackage {
  /** the types the package's component.xml adds (none: the schema has them already, importing is a no-op) */
  types?: SectionType[];
  /** the abstract types it adds */
  abstractTypes?: string[];
  /** why importing it is refused */
  refuse?: string;
}

export interface Schema {
  /** the top level: its keys and section slots */
  top: SectionType;
  types: SectionType[];
  abstractTypes: string[];
  /** the packages a configuration may %import */
  packages: Record<string, ImportablePackage>;
  /** the refusal for any other %import */
  unknownPackage: (pkg: string) => string;
}

/** A key of a section type, in a schema literal. */
export function key(name: string, datatype: Datatype, extra: Partial<KeyInfo> = {}): KeyInfo {
  return { name, datatype, ...extra };
}

/** Keys of one datatype, each with its default as written (null: none). */
export function keys(datatype: Datatype, defaults: Record<string, string | null>): KeyInfo[] {
  return Object.entries(defaults).map(([name, d]) =>
    d === null ? { name, datatype } : { name, datatype, default: d },
  );
}

export type { ConvContext };
