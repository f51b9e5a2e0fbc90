// DeBERTa-v2/v3: its public API and its registry entry.
import { registerModelFamily } from '../registry.js'
import { DebertaV2Config } from './configuration_deberta_v2.js'
import { DebertaV2Model, DebertaV2ForSequenceClassification } from './modeling_deberta_v2.js'

export { DebertaV2Config, type DebertaV2ConfigFields, type DebertaV2Activation } from './configuration_deberta_v2.js'
export * from './modeling_deberta_v2.js'

registerModelFamily({
  modelType: 'deberta-v2',
  configClass: DebertaV2Config,
  baseModel: DebertaV2Model,
  forSequenceClassification: DebertaV2ForSequenceClassification,
  loraTargetModules: ['query_proj', 'value_proj'],
  layers: 'encoder.layer',
  embeddings: 'embeddings',
  tokenTypes: true,
})

declare module '../registry.js' {
  interface RegisteredFamilies {
    'deberta-v2': { config: DebertaV2Config; model: DebertaV2Model; forSequenceClassification: DebertaV2ForSequenceClassification }
  }
}
