import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { copyCommand } from './copy.js';
import { dumpCommand } from './dump.js';
import { packCommand } from './pack.js';
import { pickleCommand } from './pickle.js';
import { serveCommand } from './serve.js';
import { statusCommand } from './status.js';
import { verifyCommand } from './verify.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command('zeo')
    .description('zeo-ts: ZEO, the client-server storage for ZODB, in TypeScript')
    .version(pkg.version, '-V, --version')
    .showHelpAfterError()
    .enablePositionalOptions();
  program.addCommand(serveCommand());
  program.addCommand(pickleCommand());
  program.addCommand(verifyCommand());
  program.addCommand(dumpCommand());
  program.addCommand(copyCommand());
  program.addCommand(packCommand());
  program.addCommand(statusCommand());
  return program;
}

await buildProgram().parseAsync(process.argv);
