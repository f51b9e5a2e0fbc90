// Auto classes: pick the model class from config.json's model_type, as
// transformers' AutoModelForSequenceClassification does.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BertForSequenceClassification } from './bert/modeling_bert.js'
import { resolveModelDir, type FromPretrainedOptions } from './bert/pretrained.js'

const SEQUENCE_CLASSIFICATION: Record<string, { fromPretrained(dir: string, options?: FromPretrainedOptions): Promise<BertForSequenceClassification> }> = {
  bert: BertForSequenceClassification,
}

export class AutoModelForSequenceClassification {
  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<BertForSequenceClassification> {
    const dir = await resolveModelDir(idOrDir, options)
    const path = join(dir, 'config.json')
    if (!existsSync(path)) throw new Error(`${dir}: no config.json`)
    let modelType: unknown
    try {
      modelType = (JSON.parse(readFileSync(path, 'utf8')) as { model_type?: unknown }).model_type
    } catch (err) {
      throw new Error(`${path}: cannot read config (${(err as Error).message})`)
    }
    const cls = typeof modelType === 'string' ? SEQUENCE_CLASSIFICATION[modelType] : undefined
    if (!cls) {
      throw new Error(`${path}: unknown model_type ${JSON.stringify(modelType)}; supported: ${Object.keys(SEQUENCE_CLASSIFICATION).join(', ')}`)
    }
    return cls.fromPretrained(dir, options)
  }
}
