// BERT: its public API and its registry entry.
import { registerModelFamily } from '../registry.js'
import { BertConfig } from './configuration_bert.js'
import { BertModel, BertForSequenceClassification } from './modeling_bert.js'

export { BertConfig, CLASSIFIER_POOLINGS, type BertConfigFields, type ClassifierPooling } from './configuration_bert.js'
export * from './modeling_bert.js'

registerModelFamily({
  modelType: 'bert',
  configClass: BertConfig,
  baseModel: BertModel,
  forSequenceClassification: BertForSequenceClassification,
  loraTargetModules: ['query', 'value'],
  layers: 'encoder.layer',
  embeddings: 'embeddings',
  tokenTypes: true,
})

declare module '../registry.js' {
  interface RegisteredFamilies {
    bert: { config: BertConfig; model: BertModel; forSequenceClassification: BertForSequenceClassification }
  }
}
