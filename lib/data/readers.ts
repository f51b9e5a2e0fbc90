// Readers for the data-file formats loadDataset accepts: parquet (hyparquet),
// CSV/TSV (csv-parse), JSON and JSON Lines. Each returns named columns; every
// failure is a DataFileError that names the file.
import { readFileSync } from 'node:fs'
import * as zlib from 'node:zlib'
import { extname } from 'node:path'
import { decompress as zstdDecompress } from 'fzstd'
import { parse as parseCsv } from 'csv-parse/sync'

export class DataFileError extends Error {
  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${detail}`, options)
    this.name = 'DataFileError'
  }
}

/** Columns in file order; every column has the same length. */
export interface Columns {
  names: string[]
  columns: Record<string, unknown[]>
  rows: number
}

export type DataFormat = 'parquet' | 'csv' | 'json'

/** The format a file name implies, or null (the `datasets` builders' extensions). */
export function formatOf(path: string): DataFormat | null {
  const ext = extname(path).toLowerCase()
  if (ext === '.parquet') return 'parquet'
  if (ext === '.csv' || ext === '.tsv') return 'csv'
  if (ext === '.json' || ext === '.jsonl' || ext === '.ndjson') return 'json'
  return null
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function readBytes(path: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new DataFileError(path, `cannot read the file: ${message(err)}`, { cause: err })
  }
}

/** Rows (objects) to columns; a key missing from a row reads as null, as in `datasets`. */
export function rowsToColumns(rows: Array<Record<string, unknown>>): Columns {
  const names: string[] = []
  const seen = new Set<string>()
  for (const r of rows) {
    for (const k of Object.keys(r)) {
      if (!seen.has(k)) {
        seen.add(k)
        names.push(k)
      }
    }
  }
  const columns: Record<string, unknown[]> = {}
  for (const n of names) columns[n] = rows.map((r) => (n in r ? r[n] : null))
  return { names, columns, rows: rows.length }
}

// ---------------------------------------------------------------- parquet

// hyparquet decodes SNAPPY itself; the other codecs that writers use come
// from node:zlib, and ZSTD (pyarrow's second favourite) from fzstd where this
// Node has no zstd of its own (it arrived in Node 22.15).
const nodeZstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync
const COMPRESSORS = {
  GZIP: (input: Uint8Array) => new Uint8Array(zlib.gunzipSync(input)),
  BROTLI: (input: Uint8Array) => new Uint8Array(zlib.brotliDecompressSync(input)),
  ZSTD: (input: Uint8Array, outputLength: number) => (nodeZstd ? new Uint8Array(nodeZstd(input)) : zstdDecompress(input, new Uint8Array(outputLength))),
}

/** INT64 columns decode as bigint; labels and counts are plain numbers in JavaScript, so narrow them when exact. */
function normalizeParquetValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
  if (Array.isArray(v)) return v.map(normalizeParquetValue)
  return v
}

type Hyparquet = typeof import('hyparquet')
let hyparquet: Promise<Hyparquet> | null = null

export async function readParquet(path: string): Promise<Columns> {
  // hyparquet is an ES module; a dynamic import loads it from this CommonJS build.
  hyparquet ??= import('hyparquet')
  const { parquetMetadata, parquetReadObjects, parquetSchema } = await hyparquet
  const bytes = readBytes(path)
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
  let metadata
  try {
    metadata = parquetMetadata(buffer)
  } catch (err) {
    throw new DataFileError(path, `not a readable parquet file (${message(err)})`, { cause: err })
  }
  const names = parquetSchema(metadata).children.map((c) => c.element.name)
  let rows: Array<Record<string, unknown>>
  try {
    rows = await parquetReadObjects({ file: buffer, metadata, compressors: COMPRESSORS, rowFormat: 'object' })
  } catch (err) {
    const codec = /unsupported compression codec: (\w+)/.exec(message(err))
    throw new DataFileError(
      path,
      codec ? `compressed with ${codec[1]}, which bertkit cannot decompress (it reads SNAPPY, GZIP, BROTLI, ZSTD); rewrite the file with one of those` : `corrupt or unsupported parquet data (${message(err)})`,
      { cause: err },
    )
  }
  const columns: Record<string, unknown[]> = {}
  for (const n of names) columns[n] = rows.map((r) => normalizeParquetValue(r[n]))
  return { names, columns, rows: rows.length }
}

// ---------------------------------------------------------------- CSV

const INT_RE = /^[+-]?\d+$/
const FLOAT_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:inf|infinity|nan)$/i

function parseFloatLiteral(s: string): number {
  const t = s.trim().toLowerCase()
  if (t.endsWith('nan')) return NaN
  if (t.endsWith('inf') || t.endsWith('infinity')) return t.startsWith('-') ? -Infinity : Infinity
  return Number(t)
}

/**
 * pandas.read_csv's inference, which `datasets` uses: a column whose filled
 * cells are all integers becomes numbers, all numeric becomes numbers,
 * all True/False becomes booleans; else strings. Empty cells are null.
 */
function inferColumn(values: string[]): unknown[] {
  const filled = values.filter((v) => v !== '')
  if (filled.length === 0) return values.map(() => null)
  if (filled.every((v) => INT_RE.test(v.trim()) && Number.isSafeInteger(Number(v)))) return values.map((v) => (v === '' ? null : Number(v)))
  if (filled.every((v) => FLOAT_RE.test(v.trim()))) return values.map((v) => (v === '' ? null : parseFloatLiteral(v)))
  if (filled.every((v) => /^(true|false)$/i.test(v.trim()))) return values.map((v) => (v === '' ? null : /^true$/i.test(v.trim())))
  return values.map((v) => (v === '' ? null : v))
}

export function readCsv(path: string, options: { delimiter?: string } = {}): Columns {
  const text = readBytes(path).toString('utf8')
  if (text.trim() === '') throw new DataFileError(path, 'the file is empty (no header row)')
  const delimiter = options.delimiter ?? (extname(path).toLowerCase() === '.tsv' ? '\t' : ',')
  let records: string[][]
  try {
    records = parseCsv(text, { delimiter, bom: true, skip_empty_lines: true, relax_quotes: false }) as string[][]
  } catch (err) {
    throw new DataFileError(path, `not valid CSV: ${message(err)}`, { cause: err })
  }
  const [header, ...body] = records
  const seen = new Set<string>()
  for (const [i, name] of header.entries()) {
    if (name === '') throw new DataFileError(path, `header column ${i + 1} has no name`)
    if (seen.has(name)) throw new DataFileError(path, `header names the column "${name}" twice`)
    seen.add(name)
  }
  const columns: Record<string, unknown[]> = {}
  header.forEach((name, j) => {
    columns[name] = inferColumn(body.map((r) => r[j]))
  })
  return { names: header, columns, rows: body.length }
}

// ---------------------------------------------------------------- JSON

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function fromJsonValue(path: string, value: unknown, where: string): Columns {
  if (Array.isArray(value)) {
    const bad = value.findIndex((r) => !isPlainObject(r))
    if (bad >= 0) throw new DataFileError(path, `${where}item ${bad} is not an object (rows must be {"column": value, ...})`)
    return rowsToColumns(value as Array<Record<string, unknown>>)
  }
  if (isPlainObject(value)) {
    const entries = Object.entries(value)
    const lengths = new Set(entries.map(([, v]) => (Array.isArray(v) ? v.length : -1)))
    if (entries.length > 0 && !lengths.has(-1) && lengths.size === 1) {
      return { names: entries.map(([k]) => k), columns: Object.fromEntries(entries) as Record<string, unknown[]>, rows: [...lengths][0] }
    }
    throw new DataFileError(path, `${where}a JSON object that is not a table of equal-length columns; if the rows sit under one key, pass { field: "<key>" } (keys: ${Object.keys(value).slice(0, 10).join(', ')})`)
  }
  throw new DataFileError(path, `${where}neither a list of rows nor an object of columns`)
}

function readJsonLines(path: string, text: string): Columns {
  const rows: Array<Record<string, unknown>> = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (line === '') continue
    let v: unknown
    try {
      v = JSON.parse(line)
    } catch (err) {
      throw new DataFileError(path, `line ${i + 1} is not valid JSON (${message(err)})`, { cause: err })
    }
    if (!isPlainObject(v)) throw new DataFileError(path, `line ${i + 1} is not a JSON object`)
    rows.push(v)
  }
  return rowsToColumns(rows)
}

/**
 * JSON Lines (one object a line), a JSON list of row objects, or a JSON object
 * of columns; `field` names the key that holds the rows, as in `datasets`.
 */
export function readJson(path: string, options: { field?: string } = {}): Columns {
  let text = readBytes(path).toString('utf8')
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  if (text.trim() === '') throw new DataFileError(path, 'the file is empty')
  const ext = extname(path).toLowerCase()
  if ((ext === '.jsonl' || ext === '.ndjson') && options.field === undefined) return readJsonLines(path, text)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    // A .json file holding JSON Lines is common (the `datasets` builder accepts it too).
    if (options.field === undefined && text.trimStart().startsWith('{') && text.trim().includes('\n')) return readJsonLines(path, text)
    throw new DataFileError(path, `not valid JSON (${message(err)})`, { cause: err })
  }
  if (options.field !== undefined) {
    if (!isPlainObject(value) || !(options.field in value)) throw new DataFileError(path, `has no top-level key "${options.field}" (field)`)
    return fromJsonValue(path, value[options.field], `"${options.field}" holds `)
  }
  return fromJsonValue(path, value, '')
}

export interface ReadOptions {
  delimiter?: string
  field?: string
}

/** Reads one data file by its format (from the extension unless given). */
export async function readDataFile(path: string, format: DataFormat | null = formatOf(path), options: ReadOptions = {}): Promise<Columns> {
  switch (format) {
    case 'parquet':
      return readParquet(path)
    case 'csv':
      return readCsv(path, options)
    case 'json':
      return readJson(path, options)
    default:
      throw new DataFileError(path, 'unknown data format (expected .parquet, .csv, .tsv, .json or .jsonl)')
  }
}
