// Auto classes: pick the model class from config.json's model_type, as
// transformers' AutoModelForSequenceClassification does.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BertForSequenceClassification } from './bert/modeling_bert.js'
import { RobertaForSequenceClassification } from './roberta/modeling_roberta.js'
import { DistilBertForSequenceClassification } from './distilbert/modeling_distilbert.js'
import { resolveModelDir, type FromPretrainedOptions } from './bert/pretrained.js'

/** What AutoModelForSequenceClassification can return. */
export type AnyModelForSequenceClassification = BertForSequenceClassification | RobertaForSequenceClassification | DistilBertForSequenceClassification

const SEQUENCE_CLASSIFICATION: Record<string, { fromPretrained(dir: string, options?: FromPretrainedOptions): Promise<AnyModelForSequenceClassification> }> = {
  bert: BertForSequenceClassification,
  roberta: RobertaForSequenceClassification,
  distilbert: DistilBertForSequenceClassification,
}

export class AutoModelForSequenceClassification {
  /** The model_type values it knows. */
  static readonly supportedModelTypes: readonly string[] = Object.keys(SEQUENCE_CLASSIFICATION)

  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyModelForSequenceClassification> {
    const dir = await resolveModelDir(idOrDir, options)
    const path = join(dir, 'config.json')
    if (!existsSync(path)) throw new Error(`${dir}: no config.json`)
    let modelType: unknown
    try {
      modelType = (JSON.parse(readFileSync(path, 'utf8')) as { model_type?: unknown }).model_type
    } catch (err) {
      throw new Error(`${path}: cannot read config (${(err as Error).message})`)
    }
    const cls = typeof modelType === 'string' && Object.hasOwn(SEQUENCE_CLASSIFICATION, modelType) ? SEQUENCE_CLASSIFICATION[modelType] : undefined
    if (!cls) {
      throw new Error(`${path}: unknown model_type ${JSON.stringify(modelType)}; supported: ${Object.keys(SEQUENCE_CLASSIFICATION).join(', ')}`)
    }
    return cls.fromPretrained(dir, options)
  }
}
