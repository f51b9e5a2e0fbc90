// Auto classes: pick the config and model classes from config.json's
// model_type, as transformers' AutoConfig and AutoModelForSequenceClassification do.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BertForSequenceClassification } from './bert/modeling_bert.js'
import { BertConfig } from './bert/configuration_bert.js'
import { RobertaForSequenceClassification } from './roberta/modeling_roberta.js'
import { RobertaConfig } from './roberta/configuration_roberta.js'
import { DistilBertForSequenceClassification } from './distilbert/modeling_distilbert.js'
import { DistilBertConfig } from './distilbert/configuration_distilbert.js'
import { DebertaV2ForSequenceClassification } from './deberta_v2/modeling_deberta_v2.js'
import { DebertaV2Config } from './deberta_v2/configuration_deberta_v2.js'
import { configFromPretrained, resolveModelDir, type FromPretrainedOptions } from './bert/pretrained.js'
import { configObject } from './configuration_utils.js'

/** What AutoModelForSequenceClassification can return. */
export type AnyModelForSequenceClassification = BertForSequenceClassification | RobertaForSequenceClassification
  | DistilBertForSequenceClassification | DebertaV2ForSequenceClassification

/** What AutoConfig can return. */
export type AnyConfig = BertConfig | RobertaConfig | DistilBertConfig | DebertaV2Config

const SEQUENCE_CLASSIFICATION: Record<string, { fromPretrained(dir: string, options?: FromPretrainedOptions): Promise<AnyModelForSequenceClassification> }> = {
  bert: BertForSequenceClassification,
  roberta: RobertaForSequenceClassification,
  distilbert: DistilBertForSequenceClassification,
  'deberta-v2': DebertaV2ForSequenceClassification,
}

const CONFIGS: Record<string, { fromFile(path: string, overrides?: Record<string, unknown>): AnyConfig }> = {
  bert: BertConfig,
  roberta: RobertaConfig,
  distilbert: DistilBertConfig,
  'deberta-v2': DebertaV2Config,
}

/** config.json's model_type, failing with the supported list when it is missing or unknown. */
function modelTypeOf(dir: string, known: Record<string, unknown>): string {
  const path = join(dir, 'config.json')
  if (!existsSync(path)) throw new Error(`${dir}: no config.json`)
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`${path}: cannot read config (${(err as Error).message})`)
  }
  const modelType = configObject(path, raw).model_type
  if (typeof modelType !== 'string' || !Object.hasOwn(known, modelType)) {
    throw new Error(`${path}: unknown model_type ${JSON.stringify(modelType)}; supported: ${Object.keys(known).join(', ')}`)
  }
  return modelType
}

export class AutoModelForSequenceClassification {
  /** The model_type values it knows. */
  static readonly supportedModelTypes: readonly string[] = Object.keys(SEQUENCE_CLASSIFICATION)

  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyModelForSequenceClassification> {
    const dir = await resolveModelDir(idOrDir, options)
    return SEQUENCE_CLASSIFICATION[modelTypeOf(dir, SEQUENCE_CLASSIFICATION)].fromPretrained(dir, options)
  }
}

export class AutoConfig {
  /** The model_type values it knows. */
  static readonly supportedModelTypes: readonly string[] = Object.keys(CONFIGS)

  /** The config class of config.json's model_type, with from_pretrained's overrides (numLabels, config, …) applied. */
  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyConfig> {
    const dir = await resolveModelDir(idOrDir, options)
    const cls = CONFIGS[modelTypeOf(dir, CONFIGS)]
    return configFromPretrained(dir, options, { readConfig: (path, overrides) => cls.fromFile(path, overrides), baseModules: [] })
  }
}
