// zeo-ts/pickle: Python's pickle format (protocols 0 to 5 read, 2 and 3 written) with a value model that keeps
// what JavaScript would lose, the ZODB record tools built on it, and Python's text conventions (repr, %-format,
// strftime, json.dumps). Nothing here imports or runs anything a pickle names.

export * from './values.js';
export * from './pytext.js';
export { PickleError, PickleStackLimitError } from './errors.js';
export { anyGlobal, modulesOnly, namesOnly, zeoServerGlobals, type GlobalPolicy } from './globals.js';
export {
  loads,
  Unpickler,
  pickleEnd,
  overBudget,
  pyTypeName,
  type DecodeBudget,
  type LoadOptions,
} from './unpickler.js';
export { dumps, grownBuffer, Pickler, type DumpOptions } from './pickler.js';
export * from './record.js';
