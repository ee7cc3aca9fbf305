// Which globals a pickle may name. Reading never imports or calls anything; the policy only decides whether a
// pickle naming a global is accepted at all (the ZEO wire codec refuses everything but a few modules).

export type GlobalPolicy = (module: string, name: string) => boolean;

/** Every global is accepted and kept as a Global value (the default: ZODB records name application classes). */
export const anyGlobal: GlobalPolicy = () => true;

/** Accept globals from these modules only, any attribute of them (ZEO's server_find_global works this way). */
export function modulesOnly(modules: Iterable<string>): GlobalPolicy {
  const allowed = new Set(modules);
  return (module) => allowed.has(module);
}

/** Accept exactly these `module.name` globals. */
export function namesOnly(names: Iterable<string>): GlobalPolicy {
  const allowed = new Set(names);
  return (module, name) => allowed.has(`${module}.${name}`);
}

/** The modules the reference ZEO server lets a client's pickle name (ZEO.asyncio.marshal.server_find_global). */
export const zeoServerGlobals: GlobalPolicy = modulesOnly([
  'ZopeUndo.Prefix',
  'zodbpickle',
  'builtins',
  'copy_reg',
  '__builtin__',
]);
