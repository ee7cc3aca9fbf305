// The raw bench's chart: hand-written SVG, no dependency. Two panels, operations per second and the server's
// CPU per operation; a group of horizontal bars per phase, one per server, each scaled to the largest value
// of its phase (phases differ by orders of magnitude), with its value written beside it.

export interface ChartRow {
  phase: string;
  /** by server */
  values: Record<string, { opsPerSecond: number; cpuUsPerOp: number }>;
}

const COLORS: Record<string, string> = { zeo: '#2b6cb0', runzeo: '#c05621', floor: '#718096' };
const ORDER = ['zeo', 'runzeo', 'floor'];

export function escapeXml(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!,
  );
}

function number(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 1000) return Math.round(x).toLocaleString('en-US');
  if (x >= 100) return x.toFixed(0);
  return x.toFixed(1);
}

export function rawChartSvg(title: string, rows: ChartRow[]): string {
  const servers = ORDER.filter((s) => rows.some((r) => r.values[s])).concat(
    [...new Set(rows.flatMap((r) => Object.keys(r.values)))].filter((s) => !ORDER.includes(s)),
  );
  const bar = 12;
  const labelW = 210;
  const panelW = 330;
  const gap = 6;
  const top = 56;
  const groupH = (r: ChartRow): number => servers.filter((s) => r.values[s]).length * bar + gap * 2;
  const height = top + rows.reduce((a, r) => a + groupH(r), 0) + 20;
  const width = labelW + 2 * (panelW + 90);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="8" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  const panels: Array<[string, 'opsPerSecond' | 'cpuUsPerOp', number]> = [
    ['operations per second (longer is better)', 'opsPerSecond', labelW],
    ['server CPU µs per operation (shorter is better)', 'cpuUsPerOp', labelW + panelW + 90],
  ];
  for (const [name, , x] of panels)
    out.push(`<text x="${x}" y="${top - 22}" font-weight="bold">${escapeXml(name)}</text>`);
  servers.forEach((s, i) => {
    const x = 8 + i * 90;
    out.push(`<rect x="${x}" y="${top - 14}" width="10" height="10" fill="${COLORS[s] ?? '#999'}"/>`);
    out.push(`<text x="${x + 14}" y="${top - 5}">${escapeXml(s)}</text>`);
  });
  let y = top;
  for (const r of rows) {
    const present = servers.filter((s) => r.values[s]);
    out.push(`<text x="8" y="${y + gap + (present.length * bar) / 2 + 4}">${escapeXml(r.phase)}</text>`);
    for (const [, key, x0] of panels) {
      const max = Math.max(...present.map((s) => r.values[s][key]).filter(Number.isFinite), 0);
      present.forEach((s, i) => {
        const v = r.values[s][key];
        const w = max > 0 && Number.isFinite(v) ? Math.max(1, (v / max) * panelW) : 0;
        const by = y + gap + i * bar;
        out.push(
          `<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${bar - 2}" fill="${COLORS[s] ?? '#999'}"/>`,
        );
        out.push(`<text x="${(x0 + w + 4).toFixed(1)}" y="${by + bar - 3}">${number(v)}</text>`);
      });
    }
    y += groupH(r);
    out.push(`<line x1="8" x2="${width - 8}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
