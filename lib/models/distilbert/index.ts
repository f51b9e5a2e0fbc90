// DistilBERT: its public API and its registry entry.
import { registerModelFamily } from '../registry.js'
import { DistilBertConfig } from './configuration_distilbert.js'
import { DistilBertModel, DistilBertForSequenceClassification } from './modeling_distilbert.js'

export { DistilBertConfig, DISTILBERT_LAYER_NORM_EPS, type DistilBertConfigFields, type DistilBertActivation } from './configuration_distilbert.js'
export * from './modeling_distilbert.js'

registerModelFamily({
  modelType: 'distilbert',
  configClass: DistilBertConfig,
  baseModel: DistilBertModel,
  forSequenceClassification: DistilBertForSequenceClassification,
  loraTargetModules: ['q_lin', 'v_lin'],
  layers: 'transformer.layer',
  embeddings: 'embeddings',
  tokenTypes: false,
})

declare module '../registry.js' {
  interface RegisteredFamilies {
    distilbert: { config: DistilBertConfig; model: DistilBertModel; forSequenceClassification: DistilBertForSequenceClassification }
  }
}
