// TextClassificationPipeline: transformers' text-classification pipeline on a
// bertkit model. Same inputs (a string, a {text, textPair} pair, or an array
// of them), same outputs ({label, score} with id2label's names), same
// defaults: topK 1 unless asked (null for every label, sorted), and the
// score function picked from problem_type and num_labels as transformers
// picks it (regression → none; multi-label or one label → sigmoid;
// otherwise softmax). Inputs are tokenized one by one and padded per batch,
// so a batch may mix single texts and pairs.
import { checkFiniteLogits } from '../models/modeling_utils.js'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AutoModelForSequenceClassification, type AnyModelForSequenceClassification } from '../models/auto.js'
import { AutoPeftModelForSequenceClassification, isAdapterDir } from '../peft/index.js'
import { AutoTokenizer, type PreTrainedTokenizerFast, type TruncationStrategy, type Encoding } from '../tokenization/index.js'
import { tensor, type Tensor } from '../tensor/tensor.js'
import { tidy } from '../tensor/scope.js'
import { noGrad } from '../tensor/autograd.js'
import type { DeviceRequest } from '../tensor/device.js'
import type { ProblemType } from '../models/configuration_utils.js'

export type ClassificationFunction = 'softmax' | 'sigmoid' | 'none'
const FUNCTIONS: readonly ClassificationFunction[] = ['softmax', 'sigmoid', 'none']

/** One text, or a text pair as transformers takes it ({text, text_pair}; textPair here). */
export type TextClassificationInput = string | { text: string; textPair?: string; text_pair?: string }

export interface TextClassificationResult {
  label: string
  score: number
}

/**
 * What a call returns, by transformers' rules: a string without topK gives
 * [{label, score}]; a pair without topK gives {label, score}; an array
 * without topK gives one {label, score} per input; with topK, a best-first
 * list per input (a list of lists for an array).
 */
export type TextClassificationOutput = TextClassificationResult | TextClassificationResult[] | TextClassificationResult[][]

/** What the pipeline needs of a model: bertkit's classifiers and PeftModels of them fit. */
export interface ClassifierModel {
  forward(inputs: { inputIds: Tensor; attentionMask?: Tensor | null; tokenTypeIds?: Tensor | null }): { logits: Tensor }
  namedParameters(): Iterable<[string, Tensor]>
  eval(): unknown
  dispose(): void
  readonly config: { num_labels: number; id2label: Record<string, string>; problem_type: ProblemType | null }
}

export interface TextClassificationCallOptions {
  /**
   * How many labels per input, best first; null for all of them. Left out,
   * each input gives its best label alone as one {label, score} (transformers'
   * legacy shape).
   */
  topK?: number | null
  /** softmax, sigmoid or none; default from the config's problem_type and num_labels. */
  functionToApply?: ClassificationFunction
  /** Inputs per forward pass (transformers' batch_size). Default 8. */
  batchSize?: number
  /** Cut inputs to maxLength (default: the tokenizer's model_max_length). transformers' default is false. */
  truncation?: boolean | TruncationStrategy
  maxLength?: number
}

export interface TextClassificationPipelineOptions extends TextClassificationCallOptions {
  /** A tokenizer, or the folder / Hub id to load one from (default: the model's). */
  tokenizer?: PreTrainedTokenizerFast | string
  /** Where a model loaded from a folder or id runs: "auto" (default), "cuda" or "cpu". */
  device?: DeviceRequest
}

export const CALL_KEYS = ['topK', 'functionToApply', 'batchSize', 'truncation', 'maxLength']
export const PIPELINE_KEYS = [...CALL_KEYS, 'tokenizer', 'device']

/** Unknown keys and bad values of pipeline / call options, each named. */
export function checkOptions(options: object, known: string[], where: string): void {
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object`)
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const snake = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      throw new Error(`${where}: unknown option "${key}"${known.includes(snake) ? ` (did you mean "${snake}"?)` : ''} (options: ${known.join(', ')})`)
    }
  }
  const o = options as TextClassificationCallOptions
  if (o.topK !== undefined && o.topK !== null && !(Number.isInteger(o.topK) && o.topK > 0)) {
    throw new RangeError(`${where}: topK must be a positive integer or null (every label), got ${JSON.stringify(o.topK)}`)
  }
  if (o.functionToApply !== undefined && !FUNCTIONS.includes(o.functionToApply)) {
    throw new Error(`${where}: functionToApply must be one of ${FUNCTIONS.join(', ')}, got ${JSON.stringify(o.functionToApply)}`)
  }
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize > 0)) {
    throw new RangeError(`${where}: batchSize must be a positive integer, got ${JSON.stringify(o.batchSize)}`)
  }
  if (o.maxLength !== undefined && !(Number.isInteger(o.maxLength) && o.maxLength > 0)) {
    throw new RangeError(`${where}: maxLength must be a positive integer, got ${JSON.stringify(o.maxLength)}`)
  }
}

/** The function transformers applies when none is asked for. */
export function defaultClassificationFunction(config: { problem_type: ProblemType | null; num_labels: number }): ClassificationFunction {
  if (config.problem_type === 'regression') return 'none'
  if (config.problem_type === 'multi_label_classification' || config.num_labels === 1) return 'sigmoid'
  return 'softmax'
}

/** Scores of one row of logits, in float32 as transformers' numpy code computes them. */
export function applyClassificationFunction(logits: ArrayLike<number>, fn: ClassificationFunction): number[] {
  const row = Array.from(logits, (v) => Math.fround(v))
  if (fn === 'none') return row
  if (fn === 'sigmoid') return row.map((v) => Math.fround(1 / (1 + Math.exp(-v))))
  const max = Math.max(...row)
  const exp = row.map((v) => Math.fround(Math.exp(v - max)))
  const sum = exp.reduce((a, b) => a + b, 0)
  return exp.map((v) => Math.fround(v / sum))
}

interface Normalised {
  text: string
  pair: string | null
}

function normaliseInput(input: unknown, where: string): Normalised {
  if (typeof input === 'string') return { text: input, pair: null }
  if (input !== null && typeof input === 'object' && !Array.isArray(input)) {
    const o = input as Record<string, unknown>
    const extra = Object.keys(o).filter((k) => !['text', 'textPair', 'text_pair'].includes(k))
    if (typeof o.text !== 'string' || extra.length) {
      throw new TypeError(`${where}: a pair is { text: string, textPair: string }${extra.length ? `; unexpected key(s) ${extra.join(', ')}` : `; text is ${o.text === undefined ? 'missing' : typeof o.text}`}`)
    }
    const pair = o.textPair ?? o.text_pair
    if (pair !== undefined && pair !== null && typeof pair !== 'string') throw new TypeError(`${where}: textPair must be a string, got ${typeof pair}`)
    return { text: o.text, pair: (pair as string | undefined) ?? null }
  }
  throw new TypeError(`${where}: expected a string or { text, textPair }, got ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}` +
    (Array.isArray(input) ? '; to classify a text pair, pass { text: "…", textPair: "…" }' : ''))
}

export class TextClassificationPipeline {
  readonly task = 'text-classification'
  readonly model: ClassifierModel
  readonly tokenizer: PreTrainedTokenizerFast
  /** Defaults for every call (topK, functionToApply, batchSize, truncation, maxLength). */
  readonly defaults: TextClassificationCallOptions
  private readonly ownsModel: boolean
  private disposed = false

  constructor(options: { model: ClassifierModel; tokenizer: PreTrainedTokenizerFast; ownsModel?: boolean } & TextClassificationCallOptions) {
    const { model, tokenizer, ownsModel, ...defaults } = options
    if (!model || typeof model.forward !== 'function' || !model.config) throw new TypeError('TextClassificationPipeline: model must be a bertkit sequence classifier')
    if (!tokenizer || typeof tokenizer !== 'function') throw new TypeError('TextClassificationPipeline: tokenizer must be a bertkit tokenizer (AutoTokenizer.fromPretrained)')
    checkOptions(defaults, CALL_KEYS, 'TextClassificationPipeline')
    this.model = model
    this.tokenizer = tokenizer
    this.defaults = defaults
    this.ownsModel = ownsModel ?? false
    // Inference: dropout off, whatever mode the model came in.
    model.eval()
  }

  /** The label name of class i (id2label, else LABEL_i as transformers names it). */
  labelOf(i: number): string {
    return this.model.config.id2label?.[String(i)] ?? `LABEL_${i}`
  }

  /** The call's options over the pipeline's defaults; an option given as undefined counts as not given. */
  private merged(options: TextClassificationCallOptions): TextClassificationCallOptions {
    return { ...this.defaults, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) }
  }

  /** Logits [n, num_labels] of the inputs, in batches. */
  logits(inputs: TextClassificationInput[], options: TextClassificationCallOptions = {}): Float32Array[] {
    if (this.disposed) throw new Error('TextClassificationPipeline: used after dispose()')
    const o = this.merged(options)
    const rows = inputs.map((x, i) => normaliseInput(x, `TextClassificationPipeline: input ${i}`))
    const batchSize = o.batchSize ?? 8
    const encodeOptions = { truncation: o.truncation ?? false, ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}) }
    const [first] = this.model.namedParameters()
    const device = first ? first[1].device : 'cpu'
    const out: Float32Array[] = []
    for (let start = 0; start < rows.length; start += batchSize) {
      const chunk = rows.slice(start, start + batchSize)
      const encoded = chunk.map((r) => this.tokenizer(r.text, { ...encodeOptions, ...(r.pair !== null ? { textPair: r.pair } : {}) }) as Encoding)
      const batch = this.tokenizer.pad(encoded)
      const shape = [chunk.length, batch.inputIds[0].length]
      const logits = noGrad(() => tidy(() => {
        const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape, dtype: 'int32', device })
        try {
          return this.model.forward({ inputIds: ids(batch.inputIds), attentionMask: ids(batch.attentionMask), tokenTypeIds: ids(batch.tokenTypeIds) }).logits.toFloat32Array()
        } catch (err) {
          const msg = (err as Error).message
          if (/truncate the input/.test(msg) && !encodeOptions.truncation) {
            throw new RangeError(`TextClassificationPipeline: inputs ${start}..${start + chunk.length - 1}: ${msg} (pass { truncation: true })`)
          }
          throw err
        }
      }))
      const k = this.model.config.num_labels
      // NaN scores would print as labels with null scores: a silent wrong answer.
      checkFiniteLogits('TextClassificationPipeline', logits, k, start)
      for (let r = 0; r < chunk.length; r++) out.push(logits.slice(r * k, (r + 1) * k))
    }
    return out
  }

  /**
   * Classifies one input or an array of them. As transformers: without topK,
   * one {label, score} per input (wrapped in an array for a single input);
   * with topK (a number, or null for all), a best-first list per input.
   */
  run(inputs: TextClassificationInput | TextClassificationInput[], options: TextClassificationCallOptions = {}): TextClassificationOutput {
    checkOptions(options, CALL_KEYS, 'TextClassificationPipeline')
    const single = !Array.isArray(inputs)
    const list = (single ? [inputs] : inputs) as TextClassificationInput[]
    if (!single && list.length === 0) return []
    const o = this.merged(options)
    const fn = o.functionToApply ?? defaultClassificationFunction(this.model.config)
    // transformers decides the legacy shape by whether the call (not the pipeline) named top_k.
    // (undefined counts as not given; null is transformers' top_k=None, every label.)
    const legacyCall = options.topK === undefined
    const legacyPost = this.defaults.topK === undefined && legacyCall
    const topK = o.topK === undefined ? 1 : o.topK
    const results = this.logits(list, o).map((row) => {
      const scores = applyClassificationFunction(row, fn)
      if (topK === 1 && legacyPost) {
        let best = 0
        for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i
        return { label: this.labelOf(best), score: scores[best] } as TextClassificationResult
      }
      const all = scores.map((score, i) => ({ label: this.labelOf(i), score }))
      if (!legacyPost) {
        // Stable sort, best first, as Python's sort(reverse=True) keeps ties in order.
        all.sort((a, b) => b.score - a.score)
        return topK === null ? all : all.slice(0, topK)
      }
      return all
    })
    // transformers wraps a lone string's result in a list (a lone pair's stays bare).
    if (single && legacyCall && typeof inputs === 'string') return [results[0]] as TextClassificationOutput
    return (single ? results[0] : results) as TextClassificationOutput
  }

  /** Frees the model when the pipeline loaded it (a model passed in stays the caller's). */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    if (this.ownsModel) this.model.dispose()
  }
}

/** A callable TextClassificationPipeline: classifier(texts, options), as transformers' pipeline objects are called. */
export type TextClassificationPipelineFn = TextClassificationPipeline & ((inputs: TextClassificationInput | TextClassificationInput[], options?: TextClassificationCallOptions) => Promise<TextClassificationOutput>)

/** The tokenizer of a model folder, an adapter folder's base, or an explicit one; a clear error when there is none. */
export async function tokenizerForModel(modelId: string, option: PreTrainedTokenizerFast | string | undefined): Promise<PreTrainedTokenizerFast> {
  if (option !== undefined && typeof option !== 'string') return option
  const where = option ?? modelId
  try {
    return await AutoTokenizer.fromPretrained(where)
  } catch (err) {
    if (option === undefined && existsSync(modelId) && isAdapterDir(modelId)) {
      const base = (JSON.parse(readFileSync(join(modelId, 'adapter_config.json'), 'utf8')) as { base_model_name_or_path?: unknown }).base_model_name_or_path
      if (typeof base === 'string' && base !== '') {
        try {
          return await AutoTokenizer.fromPretrained(base)
        } catch {
          // Report the adapter folder's own problem below.
        }
      }
    }
    const hint = option === undefined
      ? ' — a model folder needs its tokenizer files (tokenizer.json, vocab.txt or spm.model) beside config.json: train with the Trainer\'s processingClass (the CLI does this), call tokenizer.savePretrained(dir), or pass { tokenizer }'
      : ''
    throw new Error(`pipeline: no tokenizer for "${where}": ${(err as Error).message}${hint}`)
  }
}

/**
 * The label names a LoRA adapter folder carries: peft's files have none, so
 * bertkit's CLI writes the base model's config.json (with id2label) beside
 * them; loading the adapter then names the labels as training did.
 */
export function adapterLabelOptions(dir: string): { id2label?: Record<string, string>; problemType?: ProblemType } {
  const path = join(dir, 'config.json')
  if (!existsSync(path)) return {}
  let config: { id2label?: unknown; problem_type?: unknown }
  try {
    config = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`${path}: cannot read config (${(err as Error).message})`)
  }
  const out: { id2label?: Record<string, string>; problemType?: ProblemType } = {}
  if (config.id2label && typeof config.id2label === 'object') out.id2label = config.id2label as Record<string, string>
  if (typeof config.problem_type === 'string') out.problemType = config.problem_type as ProblemType
  return out
}

/** Writes a LoRA run's base config (its label names) into the adapter folder; see adapterLabelOptions. */
export function writeAdapterLabels(dir: string, config: { toJSON(): Record<string, unknown> }): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config.toJSON(), null, 2) + '\n')
}

export async function loadClassifier(modelId: string, device: DeviceRequest | undefined): Promise<AnyModelForSequenceClassification | ClassifierModel> {
  const options = device !== undefined ? { device } : {}
  return existsSync(modelId) && isAdapterDir(modelId)
    ? AutoPeftModelForSequenceClassification.fromPretrained(modelId, { ...adapterLabelOptions(modelId), ...options }) as unknown as ClassifierModel
    : AutoModelForSequenceClassification.fromPretrained(modelId, options)
}
