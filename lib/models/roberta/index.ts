// RoBERTa: its public API and its registry entry.
import { registerModelFamily } from '../registry.js'
import { RobertaConfig } from './configuration_roberta.js'
import { RobertaModel, RobertaForSequenceClassification } from './modeling_roberta.js'

export { RobertaConfig, type RobertaConfigFields } from './configuration_roberta.js'
export * from './modeling_roberta.js'

registerModelFamily({
  modelType: 'roberta',
  otherModelTypes: ['xlm-roberta'],
  configClass: RobertaConfig,
  baseModel: RobertaModel,
  forSequenceClassification: RobertaForSequenceClassification,
  loraTargetModules: ['query', 'value'],
  layers: 'encoder.layer',
  embeddings: 'embeddings',
  tokenTypes: false,
})

declare module '../registry.js' {
  interface RegisteredFamilies {
    roberta: { config: RobertaConfig; model: RobertaModel; forSequenceClassification: RobertaForSequenceClassification }
  }
}
