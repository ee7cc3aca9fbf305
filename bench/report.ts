// Shared output for benchmarks: an aligned table on stdout.

/** "2.31x" when ours is faster (theirs / ours in time), "0.80x" when slower. */
export function ratio(theirSeconds: number, ourSeconds: number): string {
  return `${(theirSeconds / ourSeconds).toFixed(2)}x`;
}

export function printTable(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
  console.log('');
}
