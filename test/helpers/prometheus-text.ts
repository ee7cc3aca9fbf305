// A strict parser of Prometheus's text exposition format 0.0.4, as Prometheus's own (Go's expfmt) reads it:
// any malformed line throws. The one npm parser (parse-prometheus-text-format) is lenient (a value 'three'
// passes) and merges every labelled histogram into one unlabelled sample, so it cannot check ours.

export interface PromSample {
  /** the sample's own name (a histogram's NAME_bucket, NAME_sum, NAME_count) */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** A float as Go's ParseFloat reads one (NaN and Inf in any case: prom-client writes 'Nan'). */
export function parsePromFloat(text: string): number {
  if (/^nan$/i.test(text)) return NaN;
  const inf = /^([-+]?)inf(inity)?$/i.exec(text);
  if (inf) return inf[1] === '-' ? -Infinity : Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`not a number: '${text}'`);
  return Number(text);
}

function unescape(text: string, quotes: boolean, line: number): string {
  return text.replace(/\\(.)/g, (_m, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quotes) return '"';
    throw new Error(`line ${line}: bad escape \\${c}`);
  });
}

/** The family a sample name belongs to, given the types declared so far. */
function familyOf(name: string, families: Map<string, PromFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const t = families.get(base)?.type;
    if (t === 'histogram' || (t === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

/** Parses `text`; throws on the first malformed line, a family declared twice or split, or a bad histogram. */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map<string, PromFamily>();
  const seen = new Set<string>();
  let current: string | null = null;
  const family = (name: string, line: number): PromFamily => {
    let f = families.get(name);
    if (f && current !== name) throw new Error(`line ${line}: family ${name} is not contiguous`);
    if (!f) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    current = name;
    return f;
  };
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, i) => {
    const n = i + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(raw);
      if (!m) return; // a comment
      const [, kind, name, rest = ''] = m;
      if (METRIC_NAME.exec(name)?.[0] !== name) throw new Error(`line ${n}: bad metric name '${name}'`);
      const f = family(name, n);
      if (kind === 'HELP') {
        if (f.help !== '') throw new Error(`line ${n}: second HELP for ${name}`);
        f.help = unescape(rest, false, n);
      } else {
        if (!TYPES.has(rest)) throw new Error(`line ${n}: unknown type '${rest}'`);
        if (f.samples.length > 0 || seen.has(`type ${name}`)) {
          throw new Error(`line ${n}: TYPE for ${name} after its samples or twice`);
        }
        seen.add(`type ${name}`);
        f.type = rest as PromFamily['type'];
      }
      return;
    }
    let rest = raw.replace(/^[ \t]+/, '');
    const name = METRIC_NAME.exec(rest)?.[0];
    if (!name) throw new Error(`line ${n}: no metric name: ${raw}`);
    rest = rest.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      rest = rest.slice(1).replace(/^[ \t]+/, '');
      while (!rest.startsWith('}')) {
        const ln = LABEL_NAME.exec(rest)?.[0];
        if (!ln) throw new Error(`line ${n}: bad label name: ${raw}`);
        rest = rest.slice(ln.length).replace(/^[ \t]+/, '');
        const v = /^=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*/.exec(rest);
        if (!v) throw new Error(`line ${n}: bad label value: ${raw}`);
        if (Object.hasOwn(labels, ln)) throw new Error(`line ${n}: label ${ln} twice: ${raw}`);
        labels[ln] = unescape(v[1], true, n);
        rest = rest.slice(v[0].length);
        if (rest.startsWith(',')) rest = rest.slice(1).replace(/^[ \t]+/, '');
        else if (!rest.startsWith('}')) throw new Error(`line ${n}: expected , or }: ${raw}`);
      }
      rest = rest.slice(1);
    }
    const parts = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest);
    if (!parts) throw new Error(`line ${n}: bad value or timestamp: ${raw}`);
    let value: number;
    try {
      value = parsePromFloat(parts[1]);
    } catch (e) {
      throw new Error(`line ${n}: ${(e as Error).message}: ${raw}`, { cause: e });
    }
    const f = family(familyOf(name, families), n);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`line ${n}: the same series twice: ${raw}`);
    seen.add(key);
    if (name.endsWith('_bucket') && f.type === 'histogram' && labels.le === undefined) {
      throw new Error(`line ${n}: a bucket without le: ${raw}`);
    }
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** Per series: buckets cumulative in increasing le, the +Inf bucket equal to _count, a _sum. */
function checkHistogram(f: PromFamily): void {
  const series = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const e = series.get(key) ?? { buckets: [] };
    series.set(key, e);
    if (s.name === `${f.name}_bucket`) e.buckets.push([parsePromFloat(le), s.value]);
    else if (s.name === `${f.name}_count`) e.count = s.value;
    else if (s.name === `${f.name}_sum`) e.sum = s.value;
    else throw new Error(`histogram ${f.name} has a sample ${s.name}`);
  }
  for (const [key, e] of series) {
    const where = `histogram ${f.name}${key}`;
    if (e.count === undefined || e.sum === undefined) throw new Error(`${where}: no _count or _sum`);
    let last: [number, number] = [-Infinity, 0];
    for (const b of e.buckets) {
      if (b[0] <= last[0] || b[1] < last[1]) throw new Error(`${where}: buckets not cumulative`);
      last = b;
    }
    if (last[0] !== Infinity || last[1] !== e.count)
      throw new Error(`${where}: +Inf bucket is not the count`);
  }
}
