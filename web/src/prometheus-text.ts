// Prometheus's text exposition format (version 0.0.4), read in the page: the samples of /metrics, which the
// dashboard's charts turn into rates (counter deltas) and means (histogram _sum/_count deltas).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a scrape by metric name (a histogram's _sum and _count are names of their own). */
export type Scrape = Map<string, Sample[]>;

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const v = Number(s);
  if (s === '' || Number.isNaN(v)) throw new Error(`not a number: ${s}`);
  return v;
}

/** The labels of `{a="1",b="x\"y"}` from `at` (just after the brace); returns them and where they end. */
function parseLabels(line: string, at: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at;
  for (;;) {
    while (line[i] === ' ' || line[i] === ',') i++;
    if (line[i] === '}') return { labels, end: i + 1 };
    const eq = line.indexOf('=', i);
    if (eq < 0 || line[eq + 1] !== '"') throw new Error('bad label');
    const name = line.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] === '\\') {
        j++;
        value += line[j] === 'n' ? '\n' : line[j];
      } else value += line[j];
    }
    if (j >= line.length) throw new Error('unterminated label value');
    labels[name] = value;
    i = j + 1;
  }
}

/** Parses a scrape; a line it cannot read is skipped (one odd metric must not blank the dashboard). */
export function parsePrometheusText(text: string): Scrape {
  const out: Scrape = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
      if (!m) continue;
      const name = m[0];
      let labels: Record<string, string> = {};
      let rest = line.slice(name.length);
      if (rest.startsWith('{')) {
        const parsed = parseLabels(line, name.length + 1);
        labels = parsed.labels;
        rest = line.slice(parsed.end);
      }
      const value = parseValue(rest.trim().split(/\s+/)[0]);
      let list = out.get(name);
      if (!list) out.set(name, (list = []));
      list.push({ name, labels, value });
    } catch {
      // skipped
    }
  }
  return out;
}

/** The sum of a metric's samples (over every storage); null when the scrape has none. */
export function total(scrape: Scrape, name: string): number | null {
  const list = scrape.get(name);
  if (!list || list.length === 0) return null;
  let s = 0;
  for (const x of list) s += x.value;
  return s;
}
