// DataCollatorWithPadding: transformers' collator of the same name. Pads a
// list of tokenized rows to the longest in the batch (optionally rounded up to
// a multiple, for tensor cores) and returns int32 tensors.
//
// Ownership: every call returns new tensors that the caller owns and must
// dispose (batch.inputIds.dispose(), … or disposeBatch(batch)), or create
// inside a tidy() scope, as with any tensor factory.
import { tensor, type Tensor } from '../tensor/tensor.js'

export interface PadTokenSource {
  padTokenId: number | null
  /** "left" pads before the tokens; default "right", as BERT tokenizers do. */
  paddingSide?: 'left' | 'right'
}

export interface DataCollatorWithPaddingOptions {
  /** The tokenizer (anything with padTokenId) or the pad token id itself. */
  tokenizer: PadTokenSource | number
  /** "longest" (default, Python's padding=True) or "max_length" (every batch padded to maxLength). */
  padding?: boolean | 'longest' | 'max_length'
  /** With "max_length", the padded length; with "longest", a cap: a longer row is an error (tokenize with truncation). */
  maxLength?: number
  /** Round the padded length up to a multiple of this (8 suits fp16 tensor cores). */
  padToMultipleOf?: number
  /** Force the labels' dtype; default: int32 when every label is an integer, else float32. */
  labelDtype?: 'int32' | 'float32'
}

export interface CollatedBatch {
  /** [batch, length] int32. */
  inputIds: Tensor
  /** [batch, length] int32: 1 for tokens, 0 for padding. */
  attentionMask: Tensor
  /** [batch, length] int32: the rows' token type ids, zeros where the rows have none. */
  tokenTypeIds: Tensor
  /** [batch] int32 (class ids), [batch] float32 (regression) or [batch, numLabels] float32 (multi-label); absent when no row has a label. */
  labels?: Tensor
}

export type Feature = Record<string, unknown>

export interface DataCollator {
  (features: Feature[]): CollatedBatch
  readonly padTokenId: number
}

type IntSeq = ArrayLike<number>

function isIntSeq(v: unknown): v is IntSeq {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))
}

function pick(f: Feature, camel: string, snake: string): unknown {
  return f[camel] !== undefined ? f[camel] : f[snake]
}

function checkInts(seq: IntSeq, what: string): void {
  for (let j = 0; j < seq.length; j++) {
    const v = seq[j]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new TypeError(`DataCollatorWithPadding: ${what}[${j}] is ${JSON.stringify(v) ?? String(v)}, not an int32 integer`)
    }
  }
}

/** Disposes every tensor of a batch. */
export function disposeBatch(batch: CollatedBatch): void {
  batch.inputIds.dispose()
  batch.attentionMask.dispose()
  batch.tokenTypeIds.dispose()
  batch.labels?.dispose()
}

type LabelKind = 'int' | 'float' | 'multi'

function labelKind(v: unknown, where: string): LabelKind {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError(`DataCollatorWithPadding: ${where} is ${v}, not a finite number`)
    return Number.isInteger(v) ? 'int' : 'float'
  }
  if (typeof v === 'bigint') return 'int'
  if (typeof v === 'boolean') return 'int'
  if (isIntSeq(v)) return 'multi'
  throw new TypeError(`DataCollatorWithPadding: ${where} is ${JSON.stringify(v) ?? String(v)}, not a number or an array of numbers`)
}

/** Callable with or without `new`: Python has no `new`, TypeScript habits do. */
export interface DataCollatorWithPaddingFactory {
  (options: DataCollatorWithPaddingOptions): DataCollator
  new (options: DataCollatorWithPaddingOptions): DataCollator
}

/**
 * transformers' DataCollatorWithPadding(tokenizer=…): call the result with a
 * list of rows ({inputIds, attentionMask?, tokenTypeIds?, label | labels}, or
 * the snake_case input_ids, attention_mask, token_type_ids) to get a padded
 * batch of tensors. Other fields (e.g. the text) are ignored.
 */
// A constructor that returns an object yields that object under `new`, so one function serves both forms.
export const DataCollatorWithPadding = function DataCollatorWithPadding(options: DataCollatorWithPaddingOptions): DataCollator {
  return makeCollator(options)
} as DataCollatorWithPaddingFactory

function makeCollator(options: DataCollatorWithPaddingOptions): DataCollator {
  const where = 'DataCollatorWithPadding'
  const tok = options?.tokenizer
  const padTokenId = typeof tok === 'number' ? tok : tok?.padTokenId
  if (typeof padTokenId !== 'number' || !Number.isInteger(padTokenId)) {
    throw new TypeError(`${where}: tokenizer must be a pad token id or have an integer padTokenId (a tokenizer without a pad token cannot pad), got ${JSON.stringify(padTokenId)}`)
  }
  const left = typeof tok === 'object' && tok.paddingSide === 'left'
  const strategy = options.padding === undefined || options.padding === true ? 'longest' : options.padding
  if (strategy !== 'longest' && strategy !== 'max_length') throw new TypeError(`${where}: padding must be true, "longest" or "max_length", got ${JSON.stringify(options.padding)}`)
  const { maxLength, padToMultipleOf, labelDtype } = options
  if (maxLength !== undefined && !(Number.isInteger(maxLength) && maxLength > 0)) throw new RangeError(`${where}: maxLength must be a positive integer, got ${maxLength}`)
  if (strategy === 'max_length' && maxLength === undefined) throw new TypeError(`${where}: padding "max_length" needs maxLength`)
  if (padToMultipleOf !== undefined && !(Number.isInteger(padToMultipleOf) && padToMultipleOf > 0)) {
    throw new RangeError(`${where}: padToMultipleOf must be a positive integer, got ${padToMultipleOf}`)
  }
  if (labelDtype !== undefined && labelDtype !== 'int32' && labelDtype !== 'float32') throw new TypeError(`${where}: labelDtype must be "int32" or "float32"`)

  const collate = (features: Feature[]): CollatedBatch => {
    if (!Array.isArray(features) || features.length === 0) throw new TypeError(`${where}: expected a non-empty array of rows, got ${Array.isArray(features) ? 'an empty array' : typeof features}`)
    const batch = features.length
    const ids: IntSeq[] = []
    const masks: Array<IntSeq | undefined> = []
    const types: Array<IntSeq | undefined> = []
    let longest = 0
    features.forEach((f, i) => {
      if (typeof f !== 'object' || f === null) throw new TypeError(`${where}: row ${i} is not an object`)
      const x = pick(f, 'inputIds', 'input_ids')
      if (!isIntSeq(x)) throw new TypeError(`${where}: row ${i} has no inputIds (or input_ids) array (fields: ${Object.keys(f).join(', ') || 'none'}); tokenize the dataset first`)
      checkInts(x, `row ${i} inputIds`)
      for (const [camel, snake, list] of [['attentionMask', 'attention_mask', masks], ['tokenTypeIds', 'token_type_ids', types]] as const) {
        const v = pick(f, camel, snake)
        if (v === undefined || v === null) {
          list.push(undefined)
          continue
        }
        if (!isIntSeq(v)) throw new TypeError(`${where}: row ${i} ${camel} is not an array`)
        if (v.length !== x.length) throw new RangeError(`${where}: row ${i} is ragged: ${camel} has ${v.length} values, inputIds ${x.length}`)
        checkInts(v, `row ${i} ${camel}`)
        list.push(v)
      }
      if (maxLength !== undefined && x.length > maxLength) {
        throw new RangeError(`${where}: row ${i} has ${x.length} tokens, more than maxLength ${maxLength}; tokenize with truncation`)
      }
      ids.push(x)
      longest = Math.max(longest, x.length)
    })
    for (const [name, list] of [['attentionMask', masks], ['tokenTypeIds', types]] as const) {
      const present = list.filter((v) => v !== undefined).length
      if (present !== 0 && present !== batch) {
        const missing = list.findIndex((v) => v === undefined)
        throw new TypeError(`${where}: row ${missing} has no ${name} while other rows have one`)
      }
    }

    let length = strategy === 'max_length' ? maxLength! : longest
    if (padToMultipleOf !== undefined && length % padToMultipleOf !== 0) length = Math.ceil(length / padToMultipleOf) * padToMultipleOf

    const inputIds = new Int32Array(batch * length).fill(padTokenId)
    const attention = new Int32Array(batch * length)
    const tokenTypes = new Int32Array(batch * length)
    for (let i = 0; i < batch; i++) {
      const x = ids[i]
      const offset = i * length + (left ? length - x.length : 0)
      const m = masks[i]
      const t = types[i]
      for (let j = 0; j < x.length; j++) {
        inputIds[offset + j] = x[j]
        attention[offset + j] = m ? m[j] : 1
        if (t) tokenTypes[offset + j] = t[j]
      }
    }

    const labels = collateLabels(features, labelDtype)
    const made: Tensor[] = []
    try {
      const shape = [batch, length]
      const out: CollatedBatch = {
        inputIds: keep(made, tensor(inputIds, { shape, dtype: 'int32' })),
        attentionMask: keep(made, tensor(attention, { shape, dtype: 'int32' })),
        tokenTypeIds: keep(made, tensor(tokenTypes, { shape, dtype: 'int32' })),
      }
      if (labels) out.labels = keep(made, labels.dtype === 'int32' ? tensor(labels.data as Int32Array, { shape: labels.shape, dtype: 'int32' }) : tensor(labels.data as Float32Array, { shape: labels.shape, dtype: 'float32' }))
      return out
    } catch (err) {
      for (const m of made) m.dispose()
      throw err
    }
  }
  return Object.assign(collate, { padTokenId }) as DataCollator
}

function keep(list: Tensor[], t: Tensor): Tensor {
  list.push(t)
  return t
}

function collateLabels(features: Feature[], force: 'int32' | 'float32' | undefined): { data: Int32Array | Float32Array; shape: number[]; dtype: 'int32' | 'float32' } | null {
  const where = 'DataCollatorWithPadding'
  const values = features.map((f) => (f.labels !== undefined ? f.labels : f.label))
  const present = values.filter((v) => v !== undefined && v !== null).length
  if (present === 0) return null
  if (present !== values.length) {
    const i = values.findIndex((v) => v === undefined || v === null)
    throw new TypeError(`${where}: row ${i} has no label while other rows have one`)
  }
  const kinds = values.map((v, i) => labelKind(v, `row ${i} label`))
  const multi = kinds.filter((k) => k === 'multi').length
  if (multi !== 0 && multi !== kinds.length) {
    const i = kinds.findIndex((k) => (kinds[0] === 'multi' ? k !== 'multi' : k === 'multi'))
    throw new TypeError(`${where}: labels of mixed types: row 0 has ${kinds[0] === 'multi' ? 'an array' : 'a number'}, row ${i} ${kinds[i] === 'multi' ? 'an array' : 'a number'}`)
  }
  const batch = values.length
  if (multi) {
    const width = (values[0] as IntSeq).length
    const data = new Float32Array(batch * width)
    values.forEach((v, i) => {
      const seq = v as IntSeq
      if (seq.length !== width) throw new RangeError(`${where}: multi-label rows differ in length: row 0 has ${width} labels, row ${i} ${seq.length}`)
      for (let j = 0; j < width; j++) {
        const x = Number(seq[j])
        if (!Number.isFinite(x)) throw new TypeError(`${where}: row ${i} label[${j}] is ${String(seq[j])}, not a finite number`)
        data[i * width + j] = x
      }
    })
    if (force === 'int32') throw new TypeError(`${where}: labelDtype "int32" does not fit multi-label (array) labels, which are float32`)
    return { data, shape: [batch, width], dtype: 'float32' }
  }
  const nums = values.map((v) => Number(v))
  const dtype = force ?? (kinds.every((k) => k === 'int') ? 'int32' : 'float32')
  if (dtype === 'int32') {
    const bad = nums.findIndex((x) => !Number.isInteger(x) || x < -2147483648 || x > 2147483647)
    if (bad >= 0) throw new TypeError(`${where}: row ${bad} label ${nums[bad]} is not an int32 class id`)
    return { data: Int32Array.from(nums), shape: [batch], dtype }
  }
  return { data: Float32Array.from(nums), shape: [batch], dtype }
}
