// The object browser's core (issue 13): what the web UI shows of a storage, through the Storage contract only,
// every answer bounded, nothing written.
export * from './record.js';
export * from './opcodes.js';
export * from './read.js';
export * from './decode.js';
export * from './offload.js';
export * from './object.js';
export * from './containers.js';
export * from './history.js';
export type * from './types.js';
