// ZConfig's reader for a schema given as data: cfgparser (lines, sections, %define, %import, %include,
// $substitution), the matcher (keys and sections checked and converted against the schema), and cmdline's
// -X overrides (OptionBag). Errors name file and line with ZConfig's reasons.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { basicKey, pyRstrip, pySplit, pyStrip, repr, type ConvContext } from './datatypes.js';
import { ConfigError, convFail, fail, type Position } from './errors.js';
import type { Schema, SectionSlot, SectionType } from './schema.js';

/** A section as read: its keys converted (defaults filled in), its subsections by slot. */
export interface SectionValue {
  type: string;
  name: string | null;
  start: Position;
  /** converted key values by key name ('read-only'), null when absent without default */
  keys: Map<string, unknown>;
  /** where each given key was written (absent for defaults) */
  keyPos: Map<string, Position>;
  /** section slots by attribute: a SectionValue, null, or an array for multisections */
  sections: Map<string, SectionValue | SectionValue[] | null>;
}

export interface ReadOptions {
  /** names the text in messages and anchors a relative %include */
  fileName?: string;
  /** $(NAME) substitutions, and what datatypes look at ($HOME) */
  env?: NodeJS.ProcessEnv;
  /** -X section/key=value specifiers */
  overrides?: string[];
  /** called for each finished section; `ignored` inside a section whose content is ignored */
  check?: (section: SectionValue, ignored: boolean) => void;
}

/** Reads a configuration text against `schema`; returns the top-level section. */
export function readConfig(text: string, schema: Schema, options: ReadOptions = {}): SectionValue {
  const env = options.env ?? process.env;
  const file = options.fileName ?? null;
  const types = new SchemaTypes(schema);
  const items = parseOverrides(options.overrides ?? []);
  const bag = items.length ? new OptionBag(items) : null;
  const st: ParseState = {
    types,
    defines: new Map(),
    env,
    cx: { env },
    including: file ? [resolve(file)] : [],
    check: options.check ?? (() => {}),
  };
  const top = new Matcher(types, schema.top, null, { file, line: null }, false, bag, st.check);
  parseResource(text, file, top, st);
  return top.finish(st.cx);
}

function parseOverrides(specs: string[]): OverrideItem[] {
  return specs.map((spec) => {
    const pos: Position = { file: null, line: null, override: spec };
    const eq = spec.indexOf('=');
    if (eq < 0) fail('invalid configuration specifier (expected section/key=value)', pos);
    const path = spec.slice(0, eq).split('/');
    if (path.includes('')) fail("'//' is not allowed in an option path", pos);
    return { path, value: spec.slice(eq + 1), pos };
  });
}

/** The schema's types, with those %import has added. */
class SchemaTypes {
  readonly types: Map<string, SectionType>;
  readonly abstract: Set<string>;
  private readonly imported = new Set<string>();

  constructor(readonly schema: Schema) {
    this.types = new Map(schema.types.map((t) => [t.name, t]));
    this.abstract = new Set(schema.abstractTypes);
  }

  import(pkg: string, pos: Position): void {
    const known = Object.hasOwn(this.schema.packages, pkg) ? this.schema.packages[pkg] : null;
    if (!known) fail(this.schema.unknownPackage(pkg), pos);
    if (known.refuse) fail(known.refuse, pos);
    // importing a package twice is a no-op
    if (this.imported.has(pkg)) return;
    this.imported.add(pkg);
    for (const t of known.types ?? []) this.types.set(t.name, t);
    for (const a of known.abstractTypes ?? []) this.abstract.add(a);
  }
}

interface RawValue {
  raw: string;
  pos: Position;
}

interface OverrideItem {
  path: string[];
  value: string;
  pos: Position;
}

/** ZConfig's OptionBag: -X values for one section and the ones for its subsections. */
class OptionBag {
  readonly keys = new Map<string, Array<{ value: string; pos: Position }>>();
  sectionItems: OverrideItem[] = [];

  constructor(items: OverrideItem[]) {
    for (const item of items) {
      if (item.path.length === 1) {
        let name: string;
        try {
          name = basicKey(item.path[0]);
        } catch (e) {
          convFail(item.path[0], e, item.pos);
        }
        const list = this.keys.get(name) ?? [];
        list.push({ value: item.value, pos: item.pos });
        this.keys.set(name, list);
      } else this.sectionItems.push(item);
    }
  }

  /** The items for a subsection, matched by its name or its type (the first such section takes them). */
  forSection(type: string, name: string | null): OptionBag | null {
    const mine: OverrideItem[] = [];
    const rest: OverrideItem[] = [];
    for (const item of this.sectionItems) {
      const s = item.path[0];
      let bk: string | null;
      try {
        bk = basicKey(s);
      } catch {
        bk = null;
      }
      if ((name && s.toLowerCase() === name) || bk === type) mine.push({ ...item, path: item.path.slice(1) });
      else rest.push(item);
    }
    if (!mine.length) return null;
    this.sectionItems = rest;
    return new OptionBag(mine);
  }

  unconsumed(): string[] {
    return [
      ...this.sectionItems.map((i) => i.pos.override!),
      ...[...this.keys.values()].flat().map((v) => v.pos.override!),
    ];
  }
}

class Matcher {
  private readonly values = new Map<string, RawValue | RawValue[]>();
  private readonly sections = new Map<string, SectionValue | SectionValue[]>();
  private readonly sectionNames = new Set<string>();

  constructor(
    readonly schema: SchemaTypes,
    readonly type: SectionType,
    readonly name: string | null,
    readonly start: Position,
    /** inside a section whose content is ignored: checked as ZConfig checks it, never used */
    readonly ignored: boolean,
    readonly bag: OptionBag | null,
    readonly check: (section: SectionValue, ignored: boolean) => void,
  ) {}

  addValue(key: string, raw: string, pos: Position, fromBag = false): void {
    let realKey: string;
    try {
      realKey = basicKey(key);
    } catch (e) {
      convFail(key, e, pos);
    }
    // a -X override replaces what the file says
    if (!fromBag && this.bag?.keys.has(realKey)) return;
    const info = this.type.keys.find((ki) => ki.name === realKey);
    if (!info) fail(`${repr(key)} is not a known key name`, pos);
    const existing = this.values.get(realKey);
    if (info.multi) {
      const list = (existing as RawValue[] | undefined) ?? [];
      list.push({ raw, pos });
      this.values.set(realKey, list);
    } else {
      if (existing) fail(`${repr(key)} does not support multiple values`, pos);
      this.values.set(realKey, { raw, pos });
    }
  }

  // ZConfig's getsectioninfo: a slot for a section of this type and name
  slotFor(type: string, name: string | null, pos: Position): SectionSlot {
    for (const slot of this.type.sections) {
      const slotName = slot.name ?? '*';
      const fits =
        slot.type === type ||
        (this.schema.abstract.has(slot.type) && this.schema.types.get(type)?.implements === slot.type);
      if (slotName !== '*' && slotName !== '+') {
        if (slotName !== name) continue;
        if (!fits) fail(`name ${repr(name)} must be used for a ${repr(slot.type)} section`, pos);
        return slot;
      }
      if (slot.type === type && !name && slotName !== '*') fail(`${repr(type)} sections must be named`, pos);
      if (fits) return slot;
    }
    fail(`no matching section defined for type='${type}', name='${name ?? 'None'}'`, pos);
  }

  createChild(typeName: string, name: string | null, pos: Position): Matcher {
    if (this.schema.abstract.has(typeName)) {
      fail(
        `concrete sections cannot match abstract section types; found abstract type ${repr(typeName)}`,
        pos,
      );
    }
    const type = this.schema.types.get(typeName);
    if (!type) fail(`unknown type name: ${repr(typeName)}`, pos);
    const slot = this.slotFor(typeName, name, pos);
    if (!allowedName(slot, name)) {
      fail(
        `${name === null ? 'None' : repr(name)} is not an allowed name for ${repr(slot.type)} sections`,
        pos,
      );
    }
    const ignored = this.ignored || !!type.ignoreContent;
    if (type.refuse && !ignored) fail(type.refuse, pos);
    const bag = this.bag?.forSection(typeName, name) ?? null;
    return new Matcher(this.schema, type, name, pos, ignored, bag, this.check);
  }

  addSection(value: SectionValue, pos: Position): void {
    if (value.name) {
      if (this.sectionNames.has(value.name)) {
        fail(`section names must not be re-used within the same container:${repr(value.name)}`, value.start);
      }
      this.sectionNames.add(value.name);
    }
    const slot = this.slotFor(value.type, value.name, pos);
    const existing = this.sections.get(slot.attr);
    if (slot.multi) {
      const list = (existing as SectionValue[] | undefined) ?? [];
      list.push(value);
      this.sections.set(slot.attr, list);
    } else {
      if (existing) fail(`too many instances of ${repr(value.type)} section`, value.start);
      this.sections.set(slot.attr, value);
    }
  }

  finish(cx: ConvContext): SectionValue {
    if (this.bag) {
      for (const [key, list] of [...this.bag.keys]) {
        this.bag.keys.delete(key);
        for (const { value, pos } of list) this.addValue(key, value, pos, true);
      }
      const left = this.bag.unconsumed();
      if (left.length) {
        throw new ConfigError(
          `not all command line options were consumed: ${left.map((s) => `-X ${s}`).join(', ')} (no such section)`,
        );
      }
    }
    const result: SectionValue = {
      type: this.type.name,
      name: this.name,
      start: this.start,
      keys: new Map(),
      keyPos: new Map(),
      sections: new Map(),
    };
    const where = this.start;
    for (const info of this.type.keys) {
      const given = this.values.get(info.name);
      if (!given && info.required) {
        fail(
          info.multi
            ? `not enough values for ${repr(info.name)}; 0 found, 1 required`
            : `no values for ${repr(info.name)}; 1 required`,
          where,
        );
      }
      const convert = (rv: RawValue): unknown => {
        try {
          return info.datatype(rv.raw, cx);
        } catch (e) {
          convFail(info.name, e, rv.pos);
        }
      };
      if (info.multi) {
        result.keys.set(info.name, ((given as RawValue[] | undefined) ?? []).map(convert));
      } else if (given) {
        result.keys.set(info.name, convert(given as RawValue));
        result.keyPos.set(info.name, (given as RawValue).pos);
      } else {
        result.keys.set(info.name, info.default === undefined ? null : info.datatype(info.default, cx));
      }
    }
    for (const slot of this.type.sections) {
      const v = this.sections.get(slot.attr);
      const what = `section type ${repr(slot.type)}`;
      if (slot.multi) {
        const list = (v as SectionValue[] | undefined) ?? [];
        if (slot.required && !list.length) fail(`not enough values for ${what}; 0 found, 1 required`, where);
        result.sections.set(slot.attr, list);
      } else {
        if (!v && slot.required) fail(`no values for ${what}; 1 required`, where);
        result.sections.set(slot.attr, (v as SectionValue | undefined) ?? null);
      }
    }
    this.check(result, this.ignored);
    return result;
  }
}

// ZConfig's isAllowedName
function allowedName(slot: SectionSlot, name: string | null): boolean {
  const slotName = slot.name ?? '*';
  if (name === '*' || name === '+') return false;
  if (slotName === '+') return !!name;
  return slotName === '*' || name === slotName;
}

// ZConfig's substitution: $name and ${name} from %define (names case-insensitive), $(NAME) from the
// environment, $$ for a dollar
export function substitute(
  s: string,
  defines: Map<string, string>,
  env: NodeJS.ProcessEnv,
  pos: Position,
): string {
  if (!s.includes('$')) return s;
  let out = '';
  let i = 0;
  const nameAt = (j: number): string | null => /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(j))?.[0] ?? null;
  while (i < s.length) {
    const d = s.indexOf('$', i);
    if (d < 0) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, d);
    const c = s[d + 1];
    if (c === undefined) fail("illegal lone '$' at end of source", pos);
    if (c === '$') {
      out += '$';
      i = d + 2;
      continue;
    }
    let name: string | null;
    let value: string | undefined;
    if (c === '{' || c === '(') {
      const close = c === '{' ? '}' : ')';
      name = nameAt(d + 2);
      if (!name) fail(`'$${c}' not followed by name`, pos);
      if (s[d + 2 + name.length] !== close) fail(`'$${c}${name}' not followed by '${close}'`, pos);
      i = d + 3 + name.length;
      value = c === '{' ? defines.get(name.toLowerCase()) : env[name];
    } else {
      name = nameAt(d + 1);
      if (!name) fail("'$' not followed by '$' or name", pos);
      i = d + 1 + name.length;
      value = defines.get(name.toLowerCase());
    }
    if (value === undefined) fail(`no replacement for ${repr(name)}`, pos);
    out += value;
  }
  return out;
}

const NAME = String.raw`[^\s()]+`;
const KEY_VALUE = new RegExp(`^(${NAME})\\s*(\\S.*)?$`, 's');
const SECTION_START = new RegExp(`^(${NAME})(?:\\s+(${NAME}))?$`);

interface ParseState {
  types: SchemaTypes;
  defines: Map<string, string>;
  env: NodeJS.ProcessEnv;
  cx: ConvContext;
  /** files being read, to refuse an %include loop */
  including: string[];
  check: (section: SectionValue, ignored: boolean) => void;
}

function parseResource(text: string, file: string | null, top: Matcher, st: ParseState): void {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const stack: Array<{ type: string; name: string | null; parent: Matcher; pos: Position }> = [];
  let section = top;
  let lineno = 0;
  for (const rawLine of lines) {
    lineno++;
    const pos: Position = { file, line: lineno };
    const line = pyStrip(rawLine);
    if (line === '' || line[0] === '#') continue;
    if (line.startsWith('</')) {
      if (line[line.length - 1] !== '>') fail('malformed section end', pos);
      if (!stack.length) fail('unexpected section end', pos);
      const type = pyRstrip(line.slice(2, -1)).toLowerCase();
      const open = stack.pop()!;
      if (type !== open.type) fail('unbalanced section end', pos);
      open.parent.addSection(section.finish(st.cx), pos);
      section = open.parent;
    } else if (line[0] === '<') {
      if (line[line.length - 1] !== '>') fail('malformed section start', pos);
      let rest = line.slice(1, -1);
      const empty = rest.endsWith('/');
      if (empty) rest = rest.slice(0, -1);
      const m = SECTION_START.exec(pyRstrip(rest));
      if (!m) fail('malformed section header', pos);
      const type = m[1].toLowerCase();
      const name = m[2] ? m[2].toLowerCase() : null;
      const child = section.createChild(type, name, pos);
      if (empty) section.addSection(child.finish(st.cx), pos);
      else {
        stack.push({ type, name, parent: section, pos });
        section = child;
      }
    } else if (line[0] === '%') {
      const m = KEY_VALUE.exec(line.slice(1));
      if (!m) fail('missing or unrecognized directive', pos);
      const [, directive, arg] = m;
      if (directive !== 'define' && directive !== 'import' && directive !== 'include') {
        fail(`unknown directive: ${repr(directive)}`, pos);
      }
      if (!arg) fail(`missing argument to %${directive} directive`, pos);
      if (directive === 'define') {
        const parts = pySplit(arg);
        const defname = parts[0].toLowerCase();
        const afterName = arg.slice(arg.indexOf(parts[0]) + parts[0].length);
        const defvalue = parts.length > 1 ? pyStrip(afterName) : '';
        if (st.defines.has(defname) && st.defines.get(defname) !== defvalue)
          fail(`cannot redefine ${repr(defname)}`, pos);
        if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(defname))
          fail(`not a substitution legal name: ${repr(defname)}`, pos);
        st.defines.set(defname, substitute(defvalue, st.defines, st.env, pos));
      } else if (directive === 'import') {
        st.types.import(substitute(pyStrip(arg), st.defines, st.env, pos), pos);
      } else {
        const target = substitute(pyStrip(arg), st.defines, st.env, pos);
        const path = resolveInclude(target, file, pos);
        if (st.including.includes(path)) fail(`%include ${target}: the file includes itself`, pos);
        let included: string;
        try {
          included = readFileSync(path, 'utf8');
        } catch (e) {
          fail(`error opening file ${path}: ${(e as Error).message}`, pos);
        }
        st.including.push(path);
        parseResource(included, path, section, st);
        st.including.pop();
      }
    } else {
      const m = KEY_VALUE.exec(line);
      if (!m) fail('malformed configuration data', pos);
      const [, key, value] = m;
      section.addValue(key, value ? substitute(value, st.defines, st.env, pos) : '', pos);
    }
  }
  if (stack.length) fail('unclosed sections not allowed', { file, line: lineno });
}

function resolveInclude(target: string, from: string | null, pos: Position): string {
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(target)) {
    if (target.startsWith('file:')) return fileURLToPath(target);
    fail(`%include ${target}: zeo-ts reads configuration from files only`, pos);
  }
  return resolve(from ? dirname(from) : process.cwd(), target);
}
