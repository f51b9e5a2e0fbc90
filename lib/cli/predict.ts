// bertkit predict: the text-classification pipeline from the command line.
// Texts come from --text (as often as wanted) and --file (one text per line,
// or a column of a CSV / TSV / JSON / Parquet file); one JSON line per text
// goes to stdout.
import { readFileSync, existsSync } from 'node:fs'
import { extname } from 'node:path'
import { pipeline, type TextClassificationInput, type ClassificationFunction } from '../pipelines/index.js'
import { loadDataset } from '../data/load_dataset.js'
import type { DeviceRequest } from '../tensor/device.js'

export const PREDICT_FLAGS = ['model', 'text', 'text-pair', 'file', 'text-column', 'text-pair-column', 'top-k', 'function-to-apply',
  'batch-size', 'max-length', 'truncation', 'device', 'tokenizer', 'help']

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

/** The texts (and pairs) of --file: a column of a data file, or the non-empty lines of any other file. */
export async function textsFromFile(file: string, textColumn: string | undefined, pairColumn: string | undefined): Promise<TextClassificationInput[]> {
  if (!existsSync(file)) throw new Error(`--file ${file}: no such file`)
  if (!DATA_EXTENSIONS.has(extname(file).toLowerCase())) {
    if (textColumn !== undefined || pairColumn !== undefined) throw new Error(`--file ${file}: --text-column / --text-pair-column need a .csv, .tsv, .json, .jsonl or .parquet file`)
    return readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '')
  }
  const splits = await loadDataset(file)
  const ds = Object.values(splits)[0]
  const column = textColumn ?? 'text'
  if (!ds.hasColumn(column)) throw new Error(`--file ${file}: no column "${column}" (columns: ${ds.columnNames.join(', ')}); pass --text-column`)
  if (pairColumn !== undefined && !ds.hasColumn(pairColumn)) throw new Error(`--file ${file}: no column "${pairColumn}" (columns: ${ds.columnNames.join(', ')})`)
  const texts = ds.column<unknown>(column)
  const pairs = pairColumn !== undefined ? ds.column<unknown>(pairColumn) : null
  return texts.map((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`--file ${file}: row ${i} of column "${column}" is ${t === null ? 'empty' : typeof t}, not text`)
    if (!pairs) return t
    const p = pairs[i]
    if (typeof p !== 'string') throw new TypeError(`--file ${file}: row ${i} of column "${pairColumn}" is ${p === null ? 'empty' : typeof p}, not text`)
    return { text: t, textPair: p }
  })
}

function positiveInt(flags: Map<string, string | true>, name: string): number | undefined {
  const v = flags.get(name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (v === true || !Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got ${v === true ? 'nothing' : `"${v}"`}`)
  return n
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
  const texts = repeatedFlag(argv, 'text')
  const pairs = repeatedFlag(argv, 'text-pair')
  if (pairs.length && pairs.length !== texts.length) throw new Error(`--text-pair: ${pairs.length} given for ${texts.length} --text; give one per --text`)
  const inputs: TextClassificationInput[] = texts.map((t, i) => (pairs.length ? { text: t, textPair: pairs[i] } : t))
  const file = str('file')
  if (file !== undefined) inputs.push(...await textsFromFile(file, str('text-column'), str('text-pair-column')))
  else if (flags.has('text-column') || flags.has('text-pair-column')) throw new Error('--text-column / --text-pair-column go with --file')
  if (inputs.length === 0) throw new Error('predict needs --text "..." (as often as wanted) or --file FILE')

  const topKFlag = str('top-k')
  const topK = topKFlag === undefined ? undefined : topKFlag === 'all' ? null : positiveInt(flags, 'top-k')
  const fn = str('function-to-apply') as ClassificationFunction | undefined
  const truncation = str('truncation')
  if (truncation !== undefined && truncation !== 'true' && truncation !== 'false') throw new Error(`--truncation: expected true or false, got "${truncation}"`)
  const classifier = await pipeline('text-classification', model, {
    device: (str('device') ?? 'auto') as DeviceRequest,
    ...(str('tokenizer') !== undefined ? { tokenizer: str('tokenizer') } : {}),
    ...(fn !== undefined ? { functionToApply: fn } : {}),
    batchSize: positiveInt(flags, 'batch-size') ?? 32,
    // The CLI truncates by default (to the tokenizer's model_max_length): a long line should not stop a batch job.
    truncation: truncation !== 'false',
    ...(positiveInt(flags, 'max-length') !== undefined ? { maxLength: positiveInt(flags, 'max-length') } : {}),
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
