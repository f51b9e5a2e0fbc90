// bertkit predict: the text-classification pipeline from the command line.
// Texts come from --text (as often as wanted) and --file (one text per line,
// or a column of a CSV / TSV / JSON / Parquet file); one JSON line per text
// goes to stdout.
import { readFileSync, existsSync } from 'node:fs'
import { extname } from 'node:path'
import { pipeline, type TextClassificationInput, type ClassificationFunction } from '../pipelines/index.js'
import { loadDataset } from '../data/load_dataset.js'
import { describeRow } from '../data/dataset.js'
import { checkEncoding, decodeText } from '../data/readers.js'
import { intFlag } from './args.js'
import type { DeviceRequest } from '../tensor/device.js'

export const PREDICT_FLAGS = ['model', 'text', 'text-pair', 'file', 'text-column', 'text-pair-column', 'top-k', 'function-to-apply',
  'batch-size', 'max-length', 'truncation', 'device', 'tokenizer', 'encoding', 'help']

/** Every value of a flag that may repeat (--text a --text b); parseFlags keeps only the last. */
export function repeatedFlag(argv: readonly string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === `--${name}`) {
      if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`)
      out.push(argv[++i])
    } else if (a.startsWith(`--${name}=`)) {
      out.push(a.slice(name.length + 3))
    }
  }
  return out
}

const DATA_EXTENSIONS = new Set(['.csv', '.tsv', '.json', '.jsonl', '.parquet'])

/**
 * The texts (and pairs) of --file: a column of a data file, or the non-empty
 * lines of any other file. Text is decoded strictly as `encoding` (UTF-8 by
 * default): a bad byte is an error naming the line, not a U+FFFD in the output.
 */
export async function textsFromFile(file: string, textColumn: string | undefined, pairColumn: string | undefined, encoding?: string): Promise<TextClassificationInput[]> {
  if (!existsSync(file)) throw new Error(`--file ${file}: no such file`)
  if (!DATA_EXTENSIONS.has(extname(file).toLowerCase())) {
    if (textColumn !== undefined || pairColumn !== undefined) throw new Error(`--file ${file}: --text-column / --text-pair-column need a .csv, .tsv, .json, .jsonl or .parquet file`)
    return decodeText(readFileSync(file), file, encoding).split(/\r?\n/).filter((l) => l.trim() !== '')
  }
  const splits = await loadDataset(file, { encoding })
  const ds = Object.values(splits)[0]
  const column = textColumn ?? 'text'
  if (!ds.hasColumn(column)) throw new Error(`--file ${file}: no column "${column}" (columns: ${ds.columnNames.join(', ')}); pass --text-column`)
  if (pairColumn !== undefined && !ds.hasColumn(pairColumn)) throw new Error(`--file ${file}: no column "${pairColumn}" (columns: ${ds.columnNames.join(', ')})`)
  const texts = ds.column<unknown>(column)
  const pairs = pairColumn !== undefined ? ds.column<unknown>(pairColumn) : null
  return texts.map((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`--file ${file}: column "${column}" at ${describeRow(ds, i)} is ${t === null ? 'empty' : typeof t}, not text`)
    if (!pairs) return t
    const p = pairs[i]
    if (typeof p !== 'string') throw new TypeError(`--file ${file}: column "${pairColumn}" at ${describeRow(ds, i)} is ${p === null ? 'empty' : typeof p}, not text`)
    return { text: t, textPair: p }
  })
}

/** A positive integer flag, read as train's are (plain decimals only: not "", 0x10, 1e3 or Infinity). */
function positiveInt(flags: Map<string, string | true>, name: string): number | undefined {
  return flags.has(name) ? intFlag(flags.get(name), name, 1) : undefined
}

/** --top-k N | all (all = every label, as top_k=None). */
function topKFlag(v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined
  if (v === 'all') return null
  try {
    return intFlag(v, 'top-k', 1)
  } catch (err) {
    if (/expected a number/.test((err as Error).message)) throw new Error(`--top-k: expected a positive integer or "all", got "${v}"`)
    throw err
  }
}

export async function predictCommand(flags: Map<string, string | true>, argv: readonly string[]): Promise<void> {
  for (const k of flags.keys()) if (!PREDICT_FLAGS.includes(k)) throw new Error(`predict: unknown flag --${k} (predict takes ${PREDICT_FLAGS.map((f) => `--${f}`).join(' ')})`)
  const model = flags.get('model')
  if (typeof model !== 'string' || model === '') throw new Error('--model is required (bertkit --help)')
  const str = (name: string) => {
    const v = flags.get(name)
    if (v === true) throw new Error(`--${name} needs a value`)
    return v
  }
  // Every value is checked before any file is read or model loaded.
  const encodingFlag = str('encoding')
  const encoding = encodingFlag === undefined ? undefined : checkEncoding(encodingFlag, '--encoding')
  const topK = topKFlag(str('top-k'))
  const batchSize = positiveInt(flags, 'batch-size') ?? 32
  const maxLength = positiveInt(flags, 'max-length')
  const fn = str('function-to-apply') as ClassificationFunction | undefined
  const truncation = str('truncation')
  if (truncation !== undefined && truncation !== 'true' && truncation !== 'false') throw new Error(`--truncation: expected true or false, got "${truncation}"`)
  const texts = repeatedFlag(argv, 'text')
  const pairs = repeatedFlag(argv, 'text-pair')
  if (pairs.length && pairs.length !== texts.length) throw new Error(`--text-pair: ${pairs.length} given for ${texts.length} --text; give one per --text`)
  const inputs: TextClassificationInput[] = texts.map((t, i) => (pairs.length ? { text: t, textPair: pairs[i] } : t))
  const file = str('file')
  if (file !== undefined) inputs.push(...await textsFromFile(file, str('text-column'), str('text-pair-column'), encoding))
  else if (flags.has('text-column') || flags.has('text-pair-column')) throw new Error('--text-column / --text-pair-column go with --file')
  if (inputs.length === 0) throw new Error('predict needs --text "..." (as often as wanted) or --file FILE')

  const classifier = await pipeline('text-classification', model, {
    device: (str('device') ?? 'auto') as DeviceRequest,
    ...(str('tokenizer') !== undefined ? { tokenizer: str('tokenizer') } : {}),
    ...(fn !== undefined ? { functionToApply: fn } : {}),
    batchSize,
    // The CLI truncates by default (to the tokenizer's model_max_length): a long line should not stop a batch job.
    truncation: truncation !== 'false',
    ...(maxLength !== undefined ? { maxLength } : {}),
  })
  try {
    const chunk = 256
    for (let start = 0; start < inputs.length; start += chunk) {
      const part = inputs.slice(start, start + chunk)
      const results = await classifier(part, topK === undefined ? {} : { topK })
      part.forEach((input, i) => {
        const text = typeof input === 'string' ? { text: input } : { text: input.text, textPair: input.textPair }
        const r = (results as unknown[])[i]
        console.log(JSON.stringify(Array.isArray(r) ? { ...text, labels: r } : { ...text, ...(r as object) }))
      })
    }
  } finally {
    classifier.dispose()
  }
}
