// The registry index: one line per model family. Each family's index.ts
// registers the family (lib/models/registry.ts) and exports its public API.
export * from './bert/index.js'
export * from './roberta/index.js'
export * from './distilbert/index.js'
export * from './deberta_v2/index.js'

export { modelFamilies, modelFamily, familyOfModel, type ModelFamily } from './registry.js'
