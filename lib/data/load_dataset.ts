// loadDataset: the `datasets` library's load_dataset for the cases a text
// classification recipe needs, returning {train, validation, test, …} of
// Dataset.
//
//   loadDataset('rotten_tomatoes')                       Hub dataset (alias → canonical id)
//   loadDataset('org/name', { name: 'config' })          a config folder of a multi-config repo
//   loadDataset('csv', { dataFiles: { train: 'a.csv', test: ['b.csv', 'c.csv'] } })
//   loadDataset('./folder')  or  loadDataset('file.jsonl')
//   loadDataset('rotten_tomatoes', { rawDir })           the raw rt-polarity files, HF's 80/10/10 split
//
// Hub datasets: the repo's file list decides the splits (data_files.ts). When
// the main branch holds no readable data file (script datasets), the Hub's
// parquet conversion at revision refs/convert/parquet is used instead, as
// `datasets` does. Files go through the shared Hugging Face cache (lib/hub);
// offline (HF_HUB_OFFLINE=1) the cached snapshot's files are used.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
import { Dataset, setRowSource, type DatasetDict } from './dataset.js'
import { DataFileError, checkEncoding, formatOf, readDataFile, type Columns, type DataFormat } from './readers.js'
import { configFolders, dataFilesOfOneFormat, matchDataFilePatterns, resolveSplitsFromFileNames } from './data_files.js'
import { cachedSnapshot, hfHubDownload, repoInfo, HubError, type DownloadOptions } from '../hub/hub.js'
import { scanSnapshot, writeRef, storageFolder, checkRepoId } from '../hub/cache.js'
import { hubCacheDir, isOfflineMode } from '../hub/config.js'

/**
 * Short names of datasets that moved under an organisation on the Hub, as
 * `datasets` still accepts them. A name not listed is used as given.
 */
export const DATASET_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  rotten_tomatoes: 'cornell-movie-review-data/rotten_tomatoes',
  imdb: 'stanfordnlp/imdb',
  sst2: 'stanfordnlp/sst2',
  glue: 'nyu-mll/glue',
  ag_news: 'fancyzhx/ag_news',
  emotion: 'dair-ai/emotion',
  yelp_review_full: 'Yelp/yelp_review_full',
  tweet_eval: 'cardiffnlp/tweet_eval',
})

export function canonicalDatasetId(id: string): string {
  return DATASET_ALIASES[id] ?? id
}

export type DataFilesSpec = string | string[] | Record<string, string | string[]>

export interface LoadDatasetOptions extends DownloadOptions {
  /** The configuration (folder) of a multi-config repo, as `name=` in Python. */
  name?: string
  /** Hub revision (default "main"). */
  revision?: string
  /** Files per split (globs allowed), relative to the folder or repo; a string or list means the train split. */
  dataFiles?: DataFilesSpec
  /** A sub-folder of the folder or repo to look in. */
  dataDir?: string
  /** The folder of the raw rt-polarity.pos/.neg files (rotten_tomatoes only). */
  rawDir?: string
  /** When given, every split must have this column, holding strings. */
  textColumn?: string
  /** When given, every split must have this column, with no missing values. */
  labelColumn?: string
  /** JSON: the key that holds the rows. */
  field?: string
  /** CSV: the delimiter (default "," and tab for .tsv). */
  delimiter?: string
  /** CSV / JSON: the text encoding (default "utf-8", strict: invalid bytes are an error naming the line; also "latin1", "cp1252", "utf-16le"). */
  encoding?: string
  /** Accept splits without rows (default: an error). */
  allowEmpty?: boolean
}

const BUILDERS: Record<string, DataFormat> = { parquet: 'parquet', csv: 'csv', json: 'json' }

function asList(v: string | string[]): string[] {
  return Array.isArray(v) ? v : [v]
}

function normalizeDataFiles(spec: DataFilesSpec): Record<string, string[]> {
  if (typeof spec === 'string' || Array.isArray(spec)) return { train: asList(spec) }
  const out: Record<string, string[]> = {}
  for (const [split, v] of Object.entries(spec)) {
    if (!/^\w+(\.\w+)*$/.test(split)) throw new Error(`loadDataset: split name ${JSON.stringify(split)} is not a word`)
    out[split] = asList(v)
  }
  return out
}

/** Files under dir as "/"-separated relative paths, at most maxDepth components deep. */
function walkFiles(dir: string, maxDepth = Infinity): string[] {
  const out: string[] = []
  const walk = (d: string, prefix: string, depth: number) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name
      if (e.isDirectory()) {
        if (depth < maxDepth) walk(join(d, e.name), rel, depth + 1)
      } else out.push(rel)
    }
  }
  walk(dir, '', 1)
  return out.sort()
}

const hasWildcard = (p: string) => /[*?[]/.test(p)

/** Local patterns: plain paths as they are; globs expanded under the folder before their first wildcard. */
function resolveLocalPatterns(patterns: string[], baseDir: string): string[] {
  const out: string[] = []
  for (const p of patterns) {
    const full = resolve(baseDir, p)
    if (!hasWildcard(p)) {
      out.push(full)
      continue
    }
    const parts = full.split(sep)
    const firstWild = parts.findIndex(hasWildcard)
    const root = parts.slice(0, firstWild).join(sep) || sep
    const rest = parts.slice(firstWild).join('/')
    // A pattern without "**" cannot reach deeper than its own components: do not walk further.
    const depth = rest.split('/').includes('**') ? Infinity : rest.split('/').length
    let files: string[]
    try {
      files = walkFiles(root, depth)
    } catch (err) {
      throw new Error(`loadDataset: cannot list ${root} for the pattern "${p}": ${(err as Error).message}`)
    }
    for (const f of matchDataFilePatterns(files, [rest], 'loadDataset')) out.push(join(root, ...f.split('/')))
  }
  return out
}

function concatColumns(parts: Array<{ file: string; cols: Columns }>, split: string): Dataset {
  const first = parts[0]
  const columns: Record<string, unknown[]> = {}
  for (const n of first.cols.names) columns[n] = []
  const starts: number[] = []
  let total = 0
  for (const { file, cols } of parts) {
    starts.push(total)
    total += cols.rows
    const same = cols.names.length === first.cols.names.length && cols.names.every((n) => n in columns)
    if (!same) {
      throw new DataFileError(file, `its columns (${cols.names.join(', ')}) differ from those of ${first.file} (${first.cols.names.join(', ')}); all files of split "${split}" must share them`)
    }
    for (const n of cols.names) {
      const target = columns[n]
      for (const v of cols.columns[n]) target.push(v)
    }
  }
  const ds = Dataset.fromColumns(columns)
  return setRowSource(ds, (i) => {
    let p = parts.length - 1
    while (p > 0 && starts[p] > i) p--
    const local = i - starts[p]
    const line = parts[p].cols.rowLines?.[local]
    return line !== undefined ? `${parts[p].file} line ${line}` : `${parts[p].file} row ${local}`
  })
}

async function readSplits(files: Record<string, string[]>, format: DataFormat | null, options: LoadDatasetOptions): Promise<DatasetDict> {
  const out: DatasetDict = {}
  for (const [split, paths] of Object.entries(files)) {
    if (paths.length === 0) throw new Error(`loadDataset: split "${split}" has no data files`)
    const parts: Array<{ file: string; cols: Columns }> = []
    for (const p of paths) parts.push({ file: p, cols: await readDataFile(p, format ?? formatOf(p), { delimiter: options.delimiter, field: options.field, encoding: options.encoding }) })
    const ds = concatColumns(parts, split)
    const label = paths.length === 1 ? paths[0] : `${paths[0]} (and ${paths.length - 1} more files)`
    checkSplit(ds, split, label, options)
    out[split] = ds
  }
  return out
}

function checkSplit(ds: Dataset, split: string, label: string, options: LoadDatasetOptions): void {
  if (ds.length === 0 && !options.allowEmpty) throw new DataFileError(label, `split "${split}" has no rows (pass allowEmpty: true to accept empty splits)`)
  for (const [col, kind] of [[options.textColumn, 'text'], [options.labelColumn, 'label']] as const) {
    if (col === undefined) continue
    if (!ds.hasColumn(col)) throw new DataFileError(label, `split "${split}" has no ${kind} column "${col}" (columns: ${ds.columnNames.join(', ') || 'none'})`)
    const values = ds.column(col)
    const bad = kind === 'text' ? values.findIndex((v) => typeof v !== 'string') : values.findIndex((v) => v === null || v === undefined)
    if (bad >= 0) {
      throw new DataFileError(label, `split "${split}", row ${bad}: ${kind} column "${col}" holds ${JSON.stringify(values[bad]) ?? 'undefined'}${kind === 'text' ? ', not a string' : ''}`)
    }
  }
}

/** Split → files of a local folder (relative paths resolved against it). */
function localFolderFiles(dir: string, options: LoadDatasetOptions): Record<string, string[]> {
  const base = options.dataDir ? resolve(dir, options.dataDir) : dir
  if (options.dataFiles !== undefined) {
    return Object.fromEntries(Object.entries(normalizeDataFiles(options.dataFiles)).map(([s, ps]) => [s, resolveLocalPatterns(ps, base)]))
  }
  const all = walkFiles(base)
  const one = dataFilesOfOneFormat(all)
  if (!one) throw new Error(`loadDataset: ${base} holds no .parquet, .csv, .tsv, .json or .jsonl file`)
  const cfg = selectConfig(one.files, options.name, `folder ${base}`)
  const splits = resolveSplitsFromFileNames(cfg.files)
  return Object.fromEntries(Object.entries(splits).map(([s, fs]) => [s, fs.map((f) => join(base, ...(cfg.prefix + f).split('/')))]))
}

/** Picks the files of one config folder in a multi-config layout; paths stay repo-relative. */
function selectConfig(files: string[], name: string | undefined, what: string): { files: string[]; prefix: string } {
  const configs = configFolders(files)
  if (name !== undefined) {
    const prefix = `${name}/`
    const inside = files.filter((f) => f.startsWith(prefix))
    if (inside.length === 0) throw new Error(`loadDataset: ${what} has no configuration "${name}"${configs.length ? ` (configurations: ${configs.join(', ')})` : ' (it has a single configuration: leave name out)'}`)
    return { files: inside.map((f) => f.slice(prefix.length)), prefix }
  }
  if (configs.length > 1 && !configs.includes('default')) {
    throw new Error(`loadDataset: ${what} has several configurations (${configs.join(', ')}); pick one with { name: "<config>" }`)
  }
  if (configs.length >= 1) {
    const pick = configs.length === 1 ? configs[0] : 'default'
    const prefix = `${pick}/`
    return { files: files.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length)), prefix }
  }
  return { files, prefix: '' }
}

interface HubFiles {
  revision: string
  commit: string | null
  splits: Record<string, string[]>
  format: DataFormat | null
}

function hubSplits(files: string[], options: LoadDatasetOptions, what: string): { splits: Record<string, string[]>; format: DataFormat | null } | null {
  let pool = files
  let prefix = ''
  if (options.dataDir) {
    prefix = `${options.dataDir.replace(/\/+$/, '')}/`
    pool = pool.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length))
  }
  if (options.dataFiles !== undefined) {
    const spec = normalizeDataFiles(options.dataFiles)
    return { splits: Object.fromEntries(Object.entries(spec).map(([s, ps]) => [s, matchDataFilePatterns(pool, ps, `loadDataset: ${what}`).map((f) => prefix + f)])), format: null }
  }
  const one = dataFilesOfOneFormat(pool)
  if (!one) return null
  const cfg = selectConfig(one.files, options.name, what)
  const splits = resolveSplitsFromFileNames(cfg.files)
  return { splits: Object.fromEntries(Object.entries(splits).map(([s, fs]) => [s, fs.map((f) => prefix + cfg.prefix + f)])), format: one.format }
}

const PARQUET_BRANCH = 'refs/convert/parquet'

async function hubDataFiles(repoId: string, options: LoadDatasetOptions): Promise<HubFiles> {
  const what = `dataset repo "${repoId}"`
  const requested = options.revision ?? 'main'
  const revisions = options.revision !== undefined ? [requested] : ['main', PARQUET_BRANCH]
  if (isOfflineMode(options)) {
    for (const revision of revisions) {
      const dir = cachedSnapshot({ repoId, repoType: 'dataset', revision, cacheDir: options.cacheDir })
      if (!dir) continue
      // Broken links are listed too: reading them below names the link instead of dropping a split silently.
      const listing = scanSnapshot(dir)
      const found = hubSplits([...listing.files, ...listing.broken.keys()].sort(), options, what)
      if (found) return { revision, commit: null, ...found }
    }
    throw new HubError(
      `loadDataset: ${what} is not in the cache ${hubCacheDir(options)} (or holds no data files there), and HF_HUB_OFFLINE is set; run once online, or pass local files with dataFiles`,
      'Offline',
      { repoId, repoType: 'dataset', revision: requested },
    )
  }
  for (const revision of revisions) {
    let info
    try {
      info = await repoInfo({ ...options, repoId, repoType: 'dataset', revision })
    } catch (err) {
      // The conversion branch exists only for some datasets.
      if (revision === PARQUET_BRANCH && err instanceof HubError && (err.code === 'RevisionNotFound' || err.details.status === 404)) break
      throw err
    }
    const found = hubSplits(info.files, options, what)
    if (found) return { revision, commit: info.sha, ...found }
  }
  throw new Error(`loadDataset: ${what} has no .parquet, .csv, .tsv, .json or .jsonl data files${options.revision === undefined ? ` on its main branch nor at ${PARQUET_BRANCH}` : ` at revision "${requested}"`}`)
}

async function loadFromHub(repoId: string, options: LoadDatasetOptions): Promise<DatasetDict> {
  const found = await hubDataFiles(repoId, options)
  const local: Record<string, string[]> = {}
  for (const [split, files] of Object.entries(found.splits)) {
    local[split] = []
    for (const filename of files) {
      local[split].push(await hfHubDownload({ ...options, repoId, repoType: 'dataset', filename, revision: found.commit ?? found.revision }))
    }
  }
  if (found.commit) writeRef(storageFolder(hubCacheDir(options), repoId, 'dataset'), found.revision, found.commit)
  return readSplits(local, found.format, options)
}

export function loadDataset(path: string, options: LoadDatasetOptions & { split: string }): Promise<Dataset>
export function loadDataset(path: string, options?: LoadDatasetOptions): Promise<DatasetDict>
/**
 * The `datasets` library's load_dataset for a Hub id, a local folder or
 * file, a builder name ("csv", "json", "parquet") with dataFiles, or the raw
 * rotten_tomatoes files (rawDir). With `split`, that one Dataset.
 */
export async function loadDataset(path: string, options: LoadDatasetOptions & { split?: string } = {}): Promise<DatasetDict | Dataset> {
  if (typeof path !== 'string' || path === '') throw new TypeError(`loadDataset: expected a dataset name, folder or file, got ${JSON.stringify(path)}`)
  if (options.encoding !== undefined) checkEncoding(options.encoding, 'loadDataset')
  const dict = await loadDatasetDict(path, options)
  if (options.split === undefined) return dict
  const ds = dict[options.split]
  if (!ds) throw new Error(`loadDataset: "${path}" has no split "${options.split}" (splits: ${Object.keys(dict).join(', ')})`)
  return ds
}

async function loadDatasetDict(path: string, options: LoadDatasetOptions): Promise<DatasetDict> {
  if (options.rawDir !== undefined) {
    if (canonicalDatasetId(path) !== DATASET_ALIASES.rotten_tomatoes) throw new Error(`loadDataset: rawDir is only for "rotten_tomatoes" (its rt-polarity files), not "${path}"`)
    const dict = loadRottenTomatoesRaw(options.rawDir)
    for (const [split, ds] of Object.entries(dict)) checkSplit(ds, split, resolve(options.rawDir), options)
    return dict
  }
  const builder = BUILDERS[path]
  if (builder) {
    if (options.dataFiles === undefined) throw new Error(`loadDataset("${path}"): pass dataFiles, e.g. { dataFiles: { train: "train.${path}" } }`)
    const base = resolve(options.dataDir ?? '.')
    const files = Object.fromEntries(Object.entries(normalizeDataFiles(options.dataFiles)).map(([s, ps]) => [s, resolveLocalPatterns(ps, base)]))
    return readSplits(files, builder, options)
  }
  let stat
  try {
    stat = statSync(path)
  } catch {
    stat = null
  }
  if (stat?.isDirectory()) return readSplits(localFolderFiles(resolve(path), options), null, options)
  if (stat?.isFile()) {
    if (!formatOf(path)) throw new DataFileError(path, 'unknown data format (expected .parquet, .csv, .tsv, .json or .jsonl)')
    return readSplits({ train: [resolve(path)] }, null, options)
  }
  if (formatOf(path) || path.startsWith('.') || path.startsWith('/') || path.split('/').length > 2) {
    throw new DataFileError(path, 'no such file or folder')
  }
  return loadFromHub(checkRepoId(canonicalDatasetId(path), 'loadDataset'), options)
}

// ---------------------------------------------------------------- rt-polarity

/** Python's str.strip() for Latin-1 text: also \x1c-\x1f, \x85 (NEL) and \xa0, which String.trim partly keeps. */
function pyStrip(s: string): string {
  const ws = /[\t\n\v\f\r\x1c-\x1f \x85\xa0]/
  let a = 0
  let b = s.length
  while (a < b && ws.test(s[a])) a++
  while (b > a && ws.test(s[b - 1])) b--
  return s.slice(a, b)
}

function readPolarity(path: string): string[] {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (err) {
    throw new DataFileError(path, `cannot read the rt-polarity file: ${(err as Error).message}`, { cause: err })
  }
  // Latin-1 maps each byte to one code point; cp1252 bytes such as 0x85 stay
  // U+0085, which is not a line break here.
  const lines = bytes.toString('latin1').split('\n')
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) throw new DataFileError(path, 'the file is empty')
  return lines.map(pyStrip)
}

/**
 * The Hugging Face rotten_tomatoes split of the raw rt-polarity files: per
 * class, the first 80% (rounded half up) is train, the next 10% validation,
 * the rest test; positives (label 1) first, then negatives (label 0).
 */
export function loadRottenTomatoesRaw(dir: string): DatasetDict {
  const pos = readPolarity(join(dir, 'rt-polarity.pos'))
  const neg = readPolarity(join(dir, 'rt-polarity.neg'))
  const cut = (lines: string[]) => {
    const n = lines.length
    const i1 = Math.trunc(n * 0.8 + 0.5)
    const i2 = Math.trunc(n * 0.9 + 0.5)
    return { train: lines.slice(0, i1), validation: lines.slice(i1, i2), test: lines.slice(i2) }
  }
  const p = cut(pos)
  const q = cut(neg)
  const firstLine = { train: 1, validation: Math.trunc(pos.length * 0.8 + 0.5) + 1, test: Math.trunc(pos.length * 0.9 + 0.5) + 1 }
  const firstLineNeg = { train: 1, validation: Math.trunc(neg.length * 0.8 + 0.5) + 1, test: Math.trunc(neg.length * 0.9 + 0.5) + 1 }
  const out: DatasetDict = {}
  for (const split of ['train', 'validation', 'test'] as const) {
    const ds = Dataset.fromColumns({
      text: [...p[split], ...q[split]],
      label: [...p[split].map(() => 1), ...q[split].map(() => 0)],
    })
    const nPos = p[split].length
    out[split] = setRowSource(ds, (i) => (i < nPos ? `${join(dir, 'rt-polarity.pos')} line ${firstLine[split] + i}` : `${join(dir, 'rt-polarity.neg')} line ${firstLineNeg[split] + i - nPos}`))
  }
  return out
}
