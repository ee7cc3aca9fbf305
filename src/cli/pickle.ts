import { readFileSync } from 'node:fs';
import { Command } from 'commander';

function readInput(file: string | undefined): Buffer {
  return file && file !== '-' ? readFileSync(file) : readFileSync(0);
}

export function pickleCommand(): Command {
  const cmd = new Command('pickle').description('inspect Python pickles and ZODB records');
  cmd
    .command('show')
    .description('decode a pickle (or with --record a ZODB data record) and print it as Python would repr it')
    .argument('[file]', 'file to read; standard input when absent or -')
    .option('-r, --record', 'the input is a ZODB data record: class metadata pickle, then state pickle')
    .option('--hex', 'the input is hexadecimal text')
    .action(async (file: string | undefined, opts: { record?: boolean; hex?: boolean }) => {
      // the pickle modules load only for this command
      const { decodeRecord, loads, PickleError, pyRepr } = await import('../pickle/index.js');
      let data = readInput(file);
      if (opts.hex) data = Buffer.from(data.toString('latin1').replace(/\s+/g, ''), 'hex');
      try {
        if (opts.record) {
          const rec = decodeRecord(data);
          const { module, name, args } = rec.classMeta;
          console.log(`class: ${module}.${name}${args === null ? '' : ` args=${pyRepr(args)}`}`);
          console.log(`state: ${pyRepr(rec.state)}`);
        } else {
          console.log(pyRepr(loads(data)));
        }
      } catch (e) {
        if (e instanceof PickleError) {
          console.error(`zeo pickle show: ${e.message}`);
          process.exitCode = 1;
          return;
        }
        throw e;
      }
    });
  return cmd;
}
