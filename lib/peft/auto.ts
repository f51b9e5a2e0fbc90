// AutoPeftModelForSequenceClassification: an adapter directory alone is
// enough to get a model: the base named by base_model_name_or_path is loaded
// with AutoModelForSequenceClassification, then the adapter is applied.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { AutoModelForSequenceClassification, type AnyModelForSequenceClassification } from '../models/auto.js'
import type { FromPretrainedOptions } from '../models/modeling_utils.js'
import { openSafetensors } from '../hub/safetensors.js'
import { LoraConfig, ADAPTER_WEIGHTS_NAME } from './config.js'
import { PeftModel } from './peft_model.js'

export class AutoPeftModelForSequenceClassification {
  /**
   * Loads the base model of an adapter directory and applies the adapter. The
   * label count, unless given, comes from the adapter's saved classifier
   * (base_model.model.classifier.weight), so a 3-label adapter on a 2-label base loads.
   */
  static async fromPretrained(adapterDir: string, options: FromPretrainedOptions & { isTrainable?: boolean; baseModel?: string } = {}): Promise<PeftModel<AnyModelForSequenceClassification>> {
    const { isTrainable, baseModel, ...loadOptions } = options
    const config = LoraConfig.fromPretrained(adapterDir)
    const base = baseModel ?? config.baseModelNameOrPath
    if (!base) {
      throw new Error(`${join(adapterDir, 'adapter_config.json')}: no base_model_name_or_path; pass { baseModel } or load the base yourself and call PeftModel.fromPretrained(model, dir)`)
    }
    let numLabels = loadOptions.numLabels
    const weights = join(adapterDir, ADAPTER_WEIGHTS_NAME)
    if (numLabels === undefined && existsSync(weights)) {
      const file = openSafetensors(weights)
      try {
        const name = ['base_model.model.classifier.weight', 'base_model.model.classifier.out_proj.weight'].find((n) => file.has(n))
        const shape = name ? file.info(name).shape : null
        if (shape && shape.length === 2) numLabels = shape[0]
      } finally {
        file.close()
      }
    }
    const model = await AutoModelForSequenceClassification.fromPretrained(base, { ...loadOptions, ...(numLabels !== undefined ? { numLabels } : {}) })
    try {
      return PeftModel.fromPretrained(model, adapterDir, { isTrainable })
    } catch (err) {
      model.dispose()
      throw err
    }
  }
}
