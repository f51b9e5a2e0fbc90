// pipeline(task, model, options): transformers' factory, for the task bertkit
// models serve. The returned object is callable, as a transformers pipeline is:
//   const classifier = await pipeline('text-classification', 'out/checkpoint-40')
//   await classifier(['great film', 'dull'])   // [{ label: 'pos', score: 0.97 }, …]
import {
  TextClassificationPipeline, loadClassifier, tokenizerForModel, checkOptions, PIPELINE_KEYS,
  type ClassifierModel, type TextClassificationCallOptions, type TextClassificationInput,
  type TextClassificationPipelineFn, type TextClassificationPipelineOptions,
} from './text_classification.js'

export * from './text_classification.js'

/** Task names pipeline() takes; "sentiment-analysis" is transformers' alias of text-classification. */
export const SUPPORTED_TASKS: readonly string[] = ['text-classification', 'sentiment-analysis']

/** Makes a pipeline object callable (pipe(inputs, options)) while keeping its methods and fields. */
function callable(p: TextClassificationPipeline): TextClassificationPipelineFn {
  const fn = (inputs: TextClassificationInput | TextClassificationInput[], options?: TextClassificationCallOptions) => Promise.resolve().then(() => p.run(inputs, options))
  return new Proxy(fn, {
    get: (_t, key) => {
      const v = Reflect.get(p, key, p)
      return typeof v === 'function' ? v.bind(p) : v
    },
    has: (_t, key) => Reflect.has(p, key),
    getPrototypeOf: () => Reflect.getPrototypeOf(p),
  }) as TextClassificationPipelineFn
}

/**
 * transformers' pipeline(): `model` is a model folder, a Hub id, a LoRA
 * adapter folder, or a loaded classifier (then pass { tokenizer } too).
 * The model is put in eval mode.
 */
export async function pipeline(task: string, model: string | ClassifierModel, options: TextClassificationPipelineOptions = {}): Promise<TextClassificationPipelineFn> {
  if (!SUPPORTED_TASKS.includes(task)) {
    throw new Error(`pipeline: unknown task ${JSON.stringify(task)}; bertkit supports ${SUPPORTED_TASKS.map((t) => `"${t}"`).join(', ')}`)
  }
  if (model === undefined || model === null || (typeof model === 'string' && model === '')) {
    throw new Error('pipeline: a model is required (a model folder, a Hub id, or a loaded model)')
  }
  // Checked before anything loads, so a typo does not cost a model load.
  checkOptions(options ?? {}, PIPELINE_KEYS, 'pipeline')
  const { tokenizer: tokenizerOption, device, ...defaults } = options ?? {}
  if (typeof model !== 'string') {
    if (tokenizerOption === undefined) throw new Error('pipeline: a loaded model needs { tokenizer } (a tokenizer, or the folder to load it from)')
    const tokenizer = await tokenizerForModel('', tokenizerOption)
    return callable(new TextClassificationPipeline({ model, tokenizer, ...defaults }))
  }
  const tokenizer = await tokenizerForModel(model, tokenizerOption)
  const loaded = await loadClassifier(model, device) as ClassifierModel
  return callable(new TextClassificationPipeline({ model: loaded, tokenizer, ownsModel: true, ...defaults }))
}
