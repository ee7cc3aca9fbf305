// The dashboard page (/): every ~2 s it scrapes /metrics (charts: rates from counter deltas, means from
// histogram _sum/_count deltas) and reads /api/server, /api/clients, /api/locks and /api/transactions (the
// tables). A server without /metrics still gets charts from /api/server's counters; a failed request shows
// its error in its panel and the next round tries again.

import { LineChart, formatNumber } from './charts.js';
import { ApiError, el, getJson } from './common.js';
import { parsePrometheusText, total, type Scrape } from './prometheus-text.js';

const INTERVAL_MS = 2000;

// the API's answers, with the types src/server/introspect.ts builds them with
import type {
  ClientSnapshot,
  ConfigValue,
  LockSnapshot,
  ServerSnapshot,
  StorageSummary,
  TransactionSummary,
} from '../../src/server/introspect-types.js';

// ---------------------------------------------------------------------------------------------------------
// formatting

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s % 60}s`;
}

/** an ISO time as the reader's local date and time */
function formatTime(isoTime: string): string {
  const d = new Date(isoTime);
  return Number.isNaN(d.getTime()) ? isoTime : d.toLocaleString();
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function describeError(e: unknown): string {
  if (e instanceof ApiError && e.status === 401) {
    return 'not authorized: open the dashboard with the URL the server logged (…/?token=…)';
  }
  if (e instanceof ApiError) return `${e.status}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

function table(
  caption: string | null,
  headers: string[],
  rows: Node[][],
  numeric: number[] = [],
): HTMLElement {
  return el(
    'table',
    {},
    caption ? el('caption', {}, caption) : null,
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col' }, h)))),
    el(
      'tbody',
      {},
      ...rows.map((cells) =>
        el('tr', {}, ...cells.map((c, i) => el('td', { class: numeric.includes(i) ? 'num' : null }, c))),
      ),
    ),
  );
}

const t = (s: string | number | null | undefined): Node =>
  document.createTextNode(s === null || s === undefined ? '–' : String(s));

// ---------------------------------------------------------------------------------------------------------
// panels: each has a body and an error line

class Panel {
  readonly body: HTMLElement;
  private readonly error: HTMLElement;

  constructor(id: string) {
    const section = document.getElementById(id);
    if (!section) throw new Error(`the page has no #${id}`);
    this.error = el('p', { class: 'error', role: 'alert', hidden: true });
    this.body = el('div', { class: 'panel-body' });
    section.append(this.error, this.body);
  }

  show(...nodes: Node[]): void {
    this.error.hidden = true;
    this.error.textContent = '';
    this.body.replaceChildren(...nodes);
  }

  fail(what: string, e: unknown): void {
    this.error.hidden = false;
    this.error.textContent = `Could not read ${what}: ${describeError(e)}`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// charts

/** Rates of counters between two rounds: (now - before) / seconds; null on the first round or a reset. */
class Rates {
  private before = new Map<string, { t: number; v: number }>();

  rate(key: string, t: number, v: number | null): number | null {
    if (v === null) return null;
    const prev = this.before.get(key);
    this.before.set(key, { t, v });
    if (!prev || t <= prev.t || v < prev.v) return null;
    return (v - prev.v) / ((t - prev.t) / 1000);
  }

  /** a histogram's mean over the interval, in ms: Δ_sum / Δ_count */
  meanMs(name: string, t: number, scrape: Scrape): number | null {
    const sum = total(scrape, `${name}_sum`);
    const count = total(scrape, `${name}_count`);
    const ds = this.delta(`${name}_sum`, t, sum);
    const dc = this.delta(`${name}_count`, t, count);
    if (ds === null || dc === null || dc <= 0) return null;
    return (ds / dc) * 1000;
  }

  private delta(key: string, t: number, v: number | null): number | null {
    if (v === null) return null;
    const prev = this.before.get(key);
    this.before.set(key, { t, v });
    if (!prev || v < prev.v) return null;
    return v - prev.v;
  }
}

interface Round {
  t: number;
  /** null: no /metrics on this server (or it failed) */
  metrics: Scrape | null;
  server: ServerSnapshot | null;
}

interface ChartDef {
  chart: LineChart;
  /** what the chart needs /metrics for: without it, the chart says so */
  metricsOnly: boolean;
  sample(r: Round, rates: Rates): Array<number | null>;
}

function sumStats(s: ServerSnapshot | null, key: StatKey): number | null {
  return s ? s.storages.reduce((a, x) => a + x.stats[key], 0) : null;
}

function counter(
  r: Round,
  rates: Rates,
  metric: string,
  fallback: keyof StorageSummary['stats'] | null,
): number | null {
  if (r.metrics) return rates.rate(metric, r.t, total(r.metrics, metric));
  return fallback ? rates.rate(`api:${fallback}`, r.t, sumStats(r.server, fallback)) : null;
}

function gauge(r: Round, metric: string, fallback: (s: ServerSnapshot) => number): number | null {
  if (r.metrics) {
    const v = total(r.metrics, metric);
    if (v !== null) return v;
  }
  return r.server ? fallback(r.server) : null;
}

type StatKey = keyof StorageSummary['stats'];

/** per-second rates of counters: [label, metric, the /api/server counter to use without /metrics (or null)] */
function rateChart(title: string, unit: string, series: Array<[string, string, StatKey | null]>): ChartDef {
  return {
    chart: new LineChart(
      title,
      unit,
      series.map(([label]) => ({ label })),
    ),
    metricsOnly: series.every(([, , fallback]) => fallback === null),
    sample: (r, rates) => series.map(([, metric, fallback]) => counter(r, rates, metric, fallback)),
  };
}

/** mean durations in ms of histograms over each interval: [label, histogram] */
function meanChart(title: string, series: Array<[string, string]>): ChartDef {
  return {
    chart: new LineChart(
      title,
      'mean ms',
      series.map(([label]) => ({ label })),
    ),
    metricsOnly: true,
    sample: (r, rates) => series.map(([, name]) => (r.metrics ? rates.meanMs(name, r.t, r.metrics) : null)),
  };
}

function chartDefs(): ChartDef[] {
  return [
    rateChart('Loads', 'per s', [['loads', 'zeo_loads_total', 'loads']]),
    rateChart('Commits', 'per s', [
      ['commits', 'zeo_commits_total', 'commits'],
      ['aborts', 'zeo_aborts_total', 'aborts'],
    ]),
    rateChart('Conflicts', 'per s', [['conflicts', 'zeo_conflicts_total', 'conflicts']]),
    rateChart('Network', 'bytes per s', [
      ['in', 'zeo_received_bytes_total', null],
      ['out', 'zeo_sent_bytes_total', null],
    ]),
    meanChart('Commit latency', [
      ['vote', 'zeo_vote_duration_seconds'],
      ['finish', 'zeo_finish_duration_seconds'],
      ['fsync', 'zeo_fsync_duration_seconds'],
    ]),
    meanChart('Commit lock', [
      ['wait', 'zeo_commit_lock_wait_seconds'],
      ['hold', 'zeo_commit_lock_hold_seconds'],
    ]),
    {
      chart: new LineChart('Clients', '', [{ label: 'connected' }, { label: 'waiting for the lock' }]),
      metricsOnly: false,
      sample: (r) => [
        gauge(r, 'zeo_clients', (s) => s.clients),
        gauge(r, 'zeo_commit_lock_waiting', (s) => sumStats(s, 'lockWaiting') ?? 0),
      ],
    },
    {
      chart: new LineChart('Invalidation queue', 'transactions', [{ label: 'queued' }]),
      metricsOnly: false,
      sample: (r) => [
        gauge(r, 'zeo_invalidation_queue_transactions', (s) => sumStats(s, 'invalidationQueue') ?? 0),
      ],
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// the tables

function serverView(s: ServerSnapshot): Node[] {
  const facts: Array<[string, string]> = [
    ['Version', `zeo-ts ${s.version}`],
    ['Up', `${formatDuration(s.uptimeSeconds)} (since ${formatTime(s.startedAt)})`],
    ['Listening on', s.addresses.join(', ') || '–'],
    ['Read-only', yesNo(s.readOnly)],
    ['Encoding offered', s.msgpack ? 'msgpack' : 'pickle'],
    ['Clients', String(s.clients)],
  ];
  return [
    el('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    table(
      'Storages',
      ['Name', 'Engine', 'Storage', 'Read-only', 'Objects', 'Size', 'Last transaction', 'Committed'],
      s.storages.map((x) => [
        t(x.name),
        t(x.engine),
        t(x.description),
        t(yesNo(x.readOnly)),
        t(formatNumber(x.objects)),
        t(formatBytes(x.sizeBytes)),
        el('code', {}, x.lastTransaction?.tid ?? '–'),
        t(x.lastTransaction ? formatTime(x.lastTransaction.time) : null),
      ]),
      [4, 5],
    ),
  ];
}

function clientsView(c: { total: number; clients: ClientSnapshot[] }): Node[] {
  if (c.total === 0) return [el('p', { class: 'empty' }, 'No client is connected.')];
  const caption =
    c.clients.length < c.total
      ? `${c.total} connected (the first ${c.clients.length} shown)`
      : `${c.total} connected`;
  return [
    table(
      caption,
      [
        'Address',
        'Storage',
        'Protocol',
        'Encoding',
        'Read-only',
        'Connected since',
        'Calls in flight',
        'Bytes waiting',
        'Transaction',
        'Commit lock',
      ],
      c.clients.map((x) => [
        t(x.address),
        t(x.storage),
        t(x.protocol),
        t(x.encoding),
        t(yesNo(x.readOnly)),
        t(formatTime(x.connectedSince)),
        t(x.callsInFlight),
        t(formatBytes(x.bytesWaiting)),
        t(x.inTransaction ? 'in progress' : null),
        t(x.lock),
      ]),
      [6, 7],
    ),
  ];
}

function locksView(locks: LockSnapshot[]): Node[] {
  return locks.map((l) =>
    el(
      'div',
      { class: 'lock', 'data-storage': l.storage },
      el('h3', {}, `Storage ${l.storage}`),
      l.holder
        ? el(
            'p',
            { class: 'lock-holder' },
            'Held by ',
            el('strong', {}, l.holder.client),
            ` since ${formatTime(l.holder.since)}`,
          )
        : el('p', { class: 'lock-free' }, 'Free'),
      l.waitingTotal === 0
        ? el('p', { class: 'empty' }, 'Nobody waits.')
        : el(
            'div',
            {},
            el('p', {}, `${l.waitingTotal} waiting, in order:`),
            el(
              'ol',
              { class: 'lock-queue' },
              ...l.waiting.map((w) => el('li', {}, `${w.client} (since ${formatTime(w.since)})`)),
            ),
          ),
    ),
  );
}

function transactionsView(list: TransactionSummary[]): Node[] {
  if (list.length === 0) return [el('p', { class: 'empty' }, 'No transaction yet.')];
  return [
    table(
      null,
      ['Transaction', 'Time', 'User', 'Description', 'Size', 'Records'],
      list.map((x) => [
        el('code', {}, x.tid),
        t(formatTime(x.time)),
        t(x.user),
        t(x.description),
        t(x.size === null ? null : formatBytes(x.size)),
        t(x.records),
      ]),
      [4, 5],
    ),
  ];
}

function configView(config: ServerSnapshot['config']): Node[] {
  if (!config) return [el('p', { class: 'empty' }, 'This server was started without a configuration.')];
  const rows = (settings: Record<string, ConfigValue>): Node[][] =>
    Object.entries(settings).map(([k, v]) => [el('code', {}, k), t(v === null ? null : String(v))]);
  return [
    table('<zeo>', ['Setting', 'Value'], rows(config.zeo)),
    ...config.storages.map((s) => table(`<${s.type}> ${s.name}`, ['Setting', 'Value'], rows(s.settings))),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// the page

/** set once /metrics answered 404: a server's routes do not change, so it is not asked again */
let noMetrics = false;

async function scrapeMetrics(): Promise<Scrape | null> {
  if (noMetrics) return null;
  const res = await fetch('/metrics', { credentials: 'same-origin', headers: { accept: 'text/plain' } });
  if (!res.ok) {
    await res.body?.cancel();
    if (res.status === 404) {
      noMetrics = true;
      return null;
    }
    // (401 once the server restarted with another token, a 500: not the same as a server without /metrics)
    throw new ApiError(res.status, res.statusText);
  }
  return parsePrometheusText(await res.text());
}

function start(): void {
  const status = document.getElementById('status')!;
  const chartsArea = document.getElementById('charts')!;
  const metricsNote = el('p', { class: 'note', id: 'metrics-note', hidden: true });
  const defs = chartDefs();
  chartsArea.append(metricsNote, el('div', { class: 'chart-grid' }, ...defs.map((d) => d.chart.element)));
  const rates = new Rates();
  const panels = {
    server: new Panel('server'),
    clients: new Panel('clients'),
    locks: new Panel('locks'),
    transactions: new Panel('transactions'),
    config: new Panel('config'),
  };
  const storagePick = el('select', { id: 'storage-pick', 'aria-label': 'Storage' });
  const pickLabel = el('label', { class: 'pick', hidden: true }, 'Storage ', storagePick);
  document.getElementById('transactions')!.querySelector('h2')!.after(pickLabel);
  let shownConfig = '';

  const round = async (): Promise<void> => {
    const now = Date.now();
    const [metrics, server, clients, locks] = await Promise.allSettled([
      scrapeMetrics(),
      getJson<ServerSnapshot>('/api/server'),
      getJson<{ total: number; clients: ClientSnapshot[] }>('/api/clients'),
      getJson<{ storages: LockSnapshot[] }>('/api/locks'),
    ]);
    const scrape = metrics.status === 'fulfilled' ? metrics.value : null;
    const snapshot = server.status === 'fulfilled' ? server.value : null;
    metricsNote.hidden = scrape !== null;
    metricsNote.textContent =
      metrics.status === 'rejected'
        ? `Metrics unavailable: could not read /metrics (${describeError(metrics.reason)}).`
        : 'Metrics unavailable: this server has no /metrics. The charts show what /api/server tells.';
    for (const d of defs) {
      d.chart.setNote(scrape === null && d.metricsOnly ? 'metrics unavailable' : '');
      d.chart.add(now, d.sample({ t: now, metrics: scrape, server: snapshot }, rates));
    }
    if (server.status === 'fulfilled') {
      panels.server.show(...serverView(server.value));
      const names = server.value.storages.map((s) => s.name);
      if ([...storagePick.options].map((o) => o.value).join('\n') !== names.join('\n')) {
        storagePick.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
      }
      pickLabel.hidden = names.length < 2;
      const cfg = JSON.stringify(server.value.config);
      if (cfg !== shownConfig) {
        panels.config.show(...configView(server.value.config));
        shownConfig = cfg;
      }
    } else {
      panels.server.fail('the server', server.reason);
      panels.config.fail('the configuration', server.reason);
    }
    if (clients.status === 'fulfilled') panels.clients.show(...clientsView(clients.value));
    else panels.clients.fail('the clients', clients.reason);
    if (locks.status === 'fulfilled') panels.locks.show(...locksView(locks.value.storages));
    else panels.locks.fail('the commit locks', locks.reason);
    try {
      const q = new URLSearchParams({ limit: '20' });
      if (storagePick.value) q.set('storage', storagePick.value);
      const r = await getJson<{ transactions: TransactionSummary[] }>(`/api/transactions?${q.toString()}`);
      panels.transactions.show(...transactionsView(r.transactions));
    } catch (e) {
      panels.transactions.fail('the transactions', e);
    }
    // (the panels keep what they showed last: the header must not call that an update)
    status.textContent =
      server.status === 'rejected'
        ? `Update failed at ${new Date().toLocaleTimeString()}: ${describeError(server.reason)}`
        : `Updated ${new Date().toLocaleTimeString()}`;
    status.dataset.rounds = String(Number(status.dataset.rounds ?? '0') + 1);
  };

  const loop = (): void => {
    void round()
      .catch((e: unknown) => {
        status.textContent = `Update failed: ${describeError(e)}`;
      })
      .finally(() => setTimeout(loop, INTERVAL_MS));
  };
  storagePick.addEventListener('change', () => {
    panels.transactions.show(el('p', { class: 'empty' }, 'Loading…'));
  });
  loop();
}

start();
