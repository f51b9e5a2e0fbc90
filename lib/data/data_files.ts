// Which files make which split, decided from file names the way the `datasets`
// library does when a repo or folder has no explicit configuration
// (datasets/data_files.py, for fsspec >= 2023.12). In this order, the first
// rule that matches anything wins:
//
// 1. Sharded names: data/{split}-00000-of-00003.parquet (any split name that
//    is a word, e.g. data/unsupervised-00000-of-00001.parquet).
// 2. A split keyword as a folder name: train/…, data/train/…, default/train/…,
//    partial-train/… (the Hub's parquet conversion of big datasets).
// 3. A split keyword in a file name: train.csv, data/train-00000.parquet,
//    my_test.jsonl.
// 4. Everything is the train split.
//
// Keywords: train ← train, training; validation ← validation, valid, dev, val;
// test ← test, testing, eval, evaluation. A keyword must be delimited by one of
// "-._ 0-9" or a "/". Hidden files and folders (".x") and "__x" folders are
// skipped, and so are README.md, config.json, dataset_info(s).json and
// dataset_dict.json.
//
// Not supported: the `configs:` section of a dataset card's YAML. Multi-config
// repos whose data sits in one folder per config ({config}/{split}-….parquet,
// the layout the Hub's converter writes) are handled with the `name` option.
import { globToRegExp } from '../hub/glob.js'
import { formatOf, type DataFormat } from './readers.js'

export const SPLIT_KEYWORDS: Record<'train' | 'validation' | 'test', string[]> = {
  train: ['train', 'training'],
  validation: ['validation', 'valid', 'dev', 'val'],
  test: ['test', 'testing', 'eval', 'evaluation'],
}
const DEFAULT_SPLITS = ['train', 'validation', 'test'] as const
const SEP = '-._ 0-9'
const FILES_TO_IGNORE = new Set(['README.md', 'config.json', 'dataset_info.json', 'dataset_infos.json', 'dummy_data.zip', 'dataset_dict.json'])

const SHARDED = /^data\/(.+)-\d{5}-of-\d{5}[^/]*\.[^/]*$/
const SPLIT_NAME = /^\w+(\.\w+)*$/

function patternsFor(keyword: string, kind: 'dir' | 'file'): string[] {
  return kind === 'dir'
    ? [`**/${keyword}/**`, `**/${keyword}[${SEP}]*/**`, `**/*[${SEP}]${keyword}/**`, `**/*[${SEP}]${keyword}[${SEP}]*/**`]
    : [`**/${keyword}[${SEP}]*`, `**/*[${SEP}]${keyword}[${SEP}]*`]
}

/** The `datasets` default split patterns, kind by kind. */
export const DEFAULT_SPLIT_PATTERNS: Record<'dir' | 'file', Record<string, RegExp[]>> = {
  dir: Object.fromEntries(DEFAULT_SPLITS.map((s) => [s, SPLIT_KEYWORDS[s].flatMap((k) => patternsFor(k, 'dir')).map(globToRegExp)])),
  file: Object.fromEntries(DEFAULT_SPLITS.map((s) => [s, SPLIT_KEYWORDS[s].flatMap((k) => patternsFor(k, 'file')).map(globToRegExp)])),
}

/** Files `datasets` would consider data files: not hidden, not "__" folders, not the card or its metadata. */
export function isCandidateDataFile(path: string): boolean {
  const parts = path.split('/')
  const base = parts[parts.length - 1]
  if (FILES_TO_IGNORE.has(base)) return false
  if (parts.some((p) => p.startsWith('.') && p !== '.' && p !== '..')) return false
  if (parts.slice(0, -1).some((p) => p.startsWith('__'))) return false
  return true
}

const FORMAT_PREFERENCE: DataFormat[] = ['parquet', 'json', 'csv']

/**
 * The data files of the most common readable format (ties: parquet, JSON,
 * CSV), as `datasets` infers one builder per dataset from the extensions.
 */
export function dataFilesOfOneFormat(files: string[]): { format: DataFormat; files: string[] } | null {
  const byFormat = new Map<DataFormat, string[]>()
  for (const f of files) {
    if (!isCandidateDataFile(f)) continue
    const fmt = formatOf(f)
    if (fmt) byFormat.set(fmt, [...(byFormat.get(fmt) ?? []), f])
  }
  let best: DataFormat | null = null
  for (const fmt of FORMAT_PREFERENCE) {
    const n = byFormat.get(fmt)?.length ?? 0
    if (n > 0 && (best === null || n > byFormat.get(best)!.length)) best = fmt
  }
  return best ? { format: best, files: byFormat.get(best)!.sort() } : null
}

function orderSplits(splits: Iterable<string>): string[] {
  const set = new Set(splits)
  return [...DEFAULT_SPLITS.filter((s) => set.has(s)), ...[...set].filter((s) => !(DEFAULT_SPLITS as readonly string[]).includes(s)).sort()]
}

/**
 * Split name → files (sorted), from repo-relative "/"-separated paths, by
 * the rules above. Returns {} when no file is a candidate.
 */
export function resolveSplitsFromFileNames(files: string[]): Record<string, string[]> {
  const candidates = files.filter(isCandidateDataFile).sort()
  if (candidates.length === 0) return {}

  const sharded = new Map<string, string[]>()
  for (const f of candidates) {
    const m = SHARDED.exec(f)
    if (m) sharded.set(m[1], [...(sharded.get(m[1]) ?? []), f])
  }
  if (sharded.size > 0) {
    const bad = [...sharded.keys()].filter((s) => !SPLIT_NAME.test(s))
    if (bad.length > 0) throw new Error(`data files: split names must be words (${SPLIT_NAME.source}), got ${bad.map((s) => JSON.stringify(s)).join(', ')}`)
    return Object.fromEntries(orderSplits(sharded.keys()).map((s) => [s, sharded.get(s)!]))
  }

  for (const kind of ['dir', 'file'] as const) {
    const out: Record<string, string[]> = {}
    for (const split of DEFAULT_SPLITS) {
      const matched = candidates.filter((f) => DEFAULT_SPLIT_PATTERNS[kind][split].some((re) => re.test(f)))
      if (matched.length > 0) out[split] = matched
    }
    if (Object.keys(out).length > 0) return out
  }
  return { train: candidates }
}

/** Resolves user patterns (globs or plain paths) against a file list; a pattern that matches nothing is an error. */
export function matchDataFilePatterns(files: string[], patterns: string[], where: string): string[] {
  const out: string[] = []
  for (const p of patterns) {
    const re = globToRegExp(p.replace(/^\.\//, ''))
    const hits = files.filter((f) => re.test(f) && (isCandidateDataFile(f) || f === p))
    if (hits.length === 0) throw new Error(`${where}: no file matches "${p}"`)
    for (const h of hits.sort()) if (!out.includes(h)) out.push(h)
  }
  return out
}

/**
 * The config folders of a multi-config layout ({config}/…): the top-level
 * folders that hold data files, when no data file sits at the top level and
 * the folders are not themselves split names or "data".
 */
export function configFolders(files: string[]): string[] {
  const candidates = files.filter((f) => isCandidateDataFile(f) && formatOf(f) !== null)
  if (candidates.length === 0 || candidates.some((f) => !f.includes('/'))) return []
  const tops = [...new Set(candidates.map((f) => f.split('/')[0]))].sort()
  const splitWords = new Set([...Object.values(SPLIT_KEYWORDS).flat(), 'data'])
  if (tops.some((t) => splitWords.has(t))) return []
  return tops
}
