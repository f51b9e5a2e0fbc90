// Auto classes: pick the config and model classes from config.json's
// model_type, as transformers' AutoConfig, AutoModel and
// AutoModelForSequenceClassification do, among the registered families.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { modelFamilies, modelFamily, type ModelFamily } from './families.js'
import { configFromPretrained, resolveModelDir, type FromPretrainedOptions } from './modeling_utils.js'
import { configObject } from './configuration_utils.js'
import type { AnyConfig, AnyModel, AnyModelForSequenceClassification } from './registry.js'

export type { AnyConfig, AnyModel, AnyModelForSequenceClassification }

/** config.json's family, failing with the supported list when model_type is missing or unknown. */
function familyOf(dir: string): ModelFamily {
  const path = join(dir, 'config.json')
  if (!existsSync(path)) throw new Error(`${dir}: no config.json`)
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`${path}: cannot read config (${(err as Error).message})`)
  }
  const modelType = configObject(path, raw).model_type
  const family = modelFamily(modelType)
  if (!family) throw new Error(`${path}: unknown model_type ${JSON.stringify(modelType)}; supported: ${supportedModelTypes().join(', ')}`)
  return family
}

function supportedModelTypes(): readonly string[] {
  return modelFamilies().map((f) => f.modelType)
}

/** What every Auto class shares: the model_type values it knows (the registered families'). */
abstract class AutoClass {
  static get supportedModelTypes(): readonly string[] {
    return supportedModelTypes()
  }
}

export class AutoModelForSequenceClassification extends AutoClass {
  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyModelForSequenceClassification> {
    const dir = await resolveModelDir(idOrDir, options)
    return familyOf(dir).forSequenceClassification.fromPretrained(dir, options) as Promise<AnyModelForSequenceClassification>
  }
}

export class AutoModel extends AutoClass {
  /** The bare encoder of config.json's model_type (BertModel, …). */
  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyModel> {
    const dir = await resolveModelDir(idOrDir, options)
    return familyOf(dir).baseModel.fromPretrained(dir, options) as Promise<AnyModel>
  }
}

export class AutoConfig extends AutoClass {
  /** The config class of config.json's model_type, with from_pretrained's overrides (numLabels, config, …) applied. */
  static async fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<AnyConfig> {
    const dir = await resolveModelDir(idOrDir, options)
    return configFromPretrained(dir, options, familyOf(dir).configClass) as AnyConfig
  }
}
