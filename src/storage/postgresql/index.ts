// The PostgreSQL storage engine on RelStorage's history-preserving schema (issue 12).
export { installSchema, schemaExists, schemaIsHistoryFree } from './schema.js';
