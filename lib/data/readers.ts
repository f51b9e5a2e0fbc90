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
  /** The 1-based line of the file where each row starts (CSV, JSON Lines), for messages. */
  rowLines?: number[]
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

// ---------------------------------------------------------------- text encodings

/** The encodings CSV / JSON files may be read in (Python's names and the WHATWG labels). */
const ENCODINGS: Record<string, 'utf-8' | 'latin1' | 'windows-1252' | 'utf-16le' | 'ascii'> = {
  'utf-8': 'utf-8', utf8: 'utf-8', 'utf-8-sig': 'utf-8',
  latin1: 'latin1', 'latin-1': 'latin1', 'iso-8859-1': 'latin1', 'iso8859-1': 'latin1', l1: 'latin1',
  cp1252: 'windows-1252', 'windows-1252': 'windows-1252',
  'utf-16': 'utf-16le', 'utf-16le': 'utf-16le', utf16le: 'utf-16le',
  ascii: 'ascii', 'us-ascii': 'ascii',
}

/** cp1252's 0x80-0x9F; 0 where Python's codec leaves the byte undefined. */
const CP1252_HIGH = [
  0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
  0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
]

export function checkEncoding(encoding: string, where: string): string {
  if (!(encoding.toLowerCase() in ENCODINGS)) throw new Error(`${where}: unknown encoding "${encoding}" (utf-8, latin1, cp1252, utf-16le, ascii)`)
  return encoding
}

/** The offset of the first byte that breaks UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length
  let i = 0
  while (i < n) {
    const b = bytes[i]
    if (b < 0x80) {
      i++
      continue
    }
    let need: number
    let lo = 0x80
    let hi = 0xbf
    if (b >= 0xc2 && b <= 0xdf) need = 1
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2
      if (b === 0xe0) lo = 0xa0
      else if (b === 0xed) hi = 0x9f
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3
      if (b === 0xf0) lo = 0x90
      else if (b === 0xf4) hi = 0x8f
    } else return i
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k]
      if (c === undefined) return i
      const min = k === 1 ? lo : 0x80
      const max = k === 1 ? hi : 0xbf
      if (c < min || c > max) return i
    }
    i += need + 1
  }
  return -1
}

/**
 * Bytes to text in the given encoding. UTF-8 (the default) is strict, as
 * Python's open(..., encoding="utf-8") is: a file in another encoding is an
 * error naming the line, never text with U+FFFD in it.
 */
export function decodeText(bytes: Uint8Array, path: string, encoding = 'utf-8'): string {
  const kind = ENCODINGS[checkEncoding(encoding, path).toLowerCase()]
  if (kind === 'latin1') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
  if (kind === 'windows-1252') {
    // Node's TextDecoder('windows-1252') decodes as ISO-8859-1, so the 0x80-0x9F block is mapped here.
    let out = ''
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]
      if (b < 0x80 || b > 0x9f) {
        out += String.fromCharCode(b)
        continue
      }
      const c = CP1252_HIGH[b - 0x80]
      if (c === 0) throw new DataFileError(path, `${where(i)} is not defined in cp1252 (as in Python); check --encoding`)
      out += String.fromCharCode(c)
    }
    return out
  }
  if (kind === 'utf-16le') {
    try {
      return new TextDecoder('utf-16le', { fatal: true }).decode(bytes)
    } catch {
      throw new DataFileError(path, `is not valid UTF-16LE (odd length or an unpaired surrogate); check --encoding`)
    }
  }
  function where(offset: number): string {
    let line = 1
    let lineStart = 0
    for (let j = 0; j < offset; j++) {
      if (bytes[j] === 0x0a) {
        line++
        lineStart = j + 1
      }
    }
    return `line ${line} (byte 0x${bytes[offset].toString(16).padStart(2, '0')} at column ${offset - lineStart + 1})`
  }
  if (kind === 'ascii') {
    const bad = bytes.findIndex((b) => b >= 0x80)
    if (bad >= 0) throw new DataFileError(path, `${where(bad)} is not ASCII; pass the file's encoding (--encoding utf-8, latin1, cp1252)`)
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch {
    const bad = firstInvalidUtf8(bytes)
    throw new DataFileError(path, `${where(bad < 0 ? 0 : bad)} is not valid UTF-8; if the file is Latin-1 or Windows-1252, pass --encoding latin1 or cp1252 (encoding: "latin1" in loadDataset)`)
  }
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

interface CsvRecord {
  record: string[]
  info: { bytes: number }
  raw: string
}

/**
 * The line each CSV record starts on. csv-parse reports where a record ends,
 * in UTF-8 bytes of the text, with the skipped empty lines before it in its
 * raw text; a quoted field may span lines.
 */
function recordStartLine(text: string): (p: CsvRecord) => number {
  const utf8 = Buffer.from(text, 'utf8')
  const newlines: number[] = []
  for (let i = 0; i < utf8.length; i++) if (utf8[i] === 0x0a) newlines.push(i)
  return (p) => {
    const leading = /^[\r\n]*/.exec(p.raw)![0].length
    const start = p.info.bytes - Buffer.byteLength(p.raw) + leading
    let lo = 0
    let hi = newlines.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (newlines[mid] < start) lo = mid + 1
      else hi = mid
    }
    return lo + 1
  }
}

export function readCsv(path: string, options: { delimiter?: string; encoding?: string } = {}): Columns {
  const text = decodeText(readBytes(path), path, options.encoding)
  if (text.trim() === '') throw new DataFileError(path, 'the file is empty (no header row)')
  const delimiter = options.delimiter ?? (extname(path).toLowerCase() === '.tsv' ? '\t' : ',')
  let parsed: CsvRecord[]
  try {
    parsed = parseCsv(text, { delimiter, bom: true, skip_empty_lines: true, relax_quotes: false, info: true, raw: true }) as unknown as typeof parsed
  } catch (err) {
    throw new DataFileError(path, `not valid CSV: ${message(err)}`, { cause: err })
  }
  const rowLines = parsed.slice(1).map(recordStartLine(text))
  const [header, ...body] = parsed.map((p) => p.record)
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
  return { names: header, columns, rows: body.length, rowLines }
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
  const rowLines: number[] = []
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
    rowLines.push(i + 1)
  }
  return { ...rowsToColumns(rows), rowLines }
}

/**
 * JSON Lines (one object a line), a JSON list of row objects, or a JSON object
 * of columns; `field` names the key that holds the rows, as in `datasets`.
 */
export function readJson(path: string, options: { field?: string; encoding?: string } = {}): Columns {
  let text = decodeText(readBytes(path), path, options.encoding)
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
  /** CSV / JSON text encoding (default utf-8, strict). */
  encoding?: string
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
