// Safetensors reader and writer in plain TypeScript over node:fs.
//
// The format: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}),
// then the byte buffer the offsets point into. Validation follows the
// reference implementation (huggingface/safetensors): the tensors must tile
// the byte buffer exactly, so a file Python rejects is rejected here too, but
// every error names the file and the tensor.
//
// Results are host arrays, independent of Tensor: floats widen to
// Float32Array (bertkit keeps fp32 masters), integers narrow to Int32Array
// with a range check.
import { closeSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { constants as bufferConstants } from 'node:buffer'
import { open as openAsync, rename as renameAsync, unlink as unlinkAsync } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { endianness } from 'node:os'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'

/** Every dtype the reference implementation defines, with its size in bits. */
const DTYPE_BITS = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const

export type SafetensorsDType = keyof typeof DTYPE_BITS
/** The dtypes `writeSafetensors` produces. */
export type WritableDType = 'F32' | 'F16' | 'BF16' | 'I32'
export type HostArray = Float32Array | Int32Array | Uint8Array

/**
 * A tensor read into host memory. `dtype` is the dtype on disk; `data` is
 * Float32Array for F64/F32/F16/BF16, Int32Array for I8..I64 and U16..U64,
 * Uint8Array for U8 and BOOL (BOOL normalised to 0/1, as torch reads it).
 */
export interface HostTensor {
  dtype: SafetensorsDType
  shape: number[]
  data: HostArray
}

export interface TensorInfo {
  name: string
  dtype: SafetensorsDType
  shape: number[]
  /** [begin, end) relative to the start of the byte buffer, as in the header. */
  dataOffsets: [number, number]
}

export interface SafetensorsContents {
  /** In file order (by offset). */
  tensors: Map<string, HostTensor>
  metadata: Record<string, string>
}

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    readonly tensor: string | undefined,
    detail: string,
  ) {
    super(`${file}: ${tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `}${detail}`)
    this.name = 'SafetensorsError'
  }
}

/** The reference implementation refuses headers above this size; so do we. */
export const MAX_HEADER_BYTES = 100_000_000
const METADATA_KEY = '__metadata__'
const LITTLE_ENDIAN = endianness() === 'LE'
// Conversions run in slices so a multi-GB tensor never needs a second full-size scratch copy.
const CHUNK_BYTES = 1 << 23
const IO_MAX = 1 << 30

function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BITS, s)
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function brief(v: unknown): string {
  let s: string
  try {
    s = JSON.stringify(v) ?? String(v)
  } catch {
    s = String(v)
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** Product of a validated shape, or null once it stops being an exact double. */
function safeNumel(shape: readonly number[]): number | null {
  let n = 1
  for (const d of shape) {
    n *= d
    if (!Number.isSafeInteger(n)) return null
  }
  return n
}

function validShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0)
}

// ---------------------------------------------------------------------------
// JSON: duplicate keys
// ---------------------------------------------------------------------------

/**
 * JSON.parse keeps the last of two equal keys without a word; a header or a
 * weight map that names a tensor twice is corrupt, so look for that in the
 * text. Runs on text JSON.parse has already accepted.
 */
function findDuplicateKey(text: string): { key: string; parent: string | null } | null {
  interface Frame {
    keys: Set<string> | null // null for arrays
    expectKey: boolean
    name: string | null
  }
  const stack: Frame[] = []
  let lastKey: string | null = null
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"') {
      let j = i + 1
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      const top = stack[stack.length - 1]
      if (top && top.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string
        if (top.keys.has(key)) return { key, parent: top.name }
        top.keys.add(key)
        top.expectKey = false
        lastKey = key
      }
      i = j
    } else if (c === '{' || c === '[') {
      const top = stack[stack.length - 1]
      stack.push({ keys: c === '{' ? new Set() : null, expectKey: c === '{', name: top?.keys ? lastKey : null })
    } else if (c === '}' || c === ']') {
      stack.pop()
    } else if (c === ',') {
      const top = stack[stack.length - 1]
      if (top?.keys) top.expectKey = true
    }
  }
  return null
}

// ---------------------------------------------------------------------------
// Half-precision conversions
// ---------------------------------------------------------------------------

const f32Scratch = new Float32Array(1)
const u32Scratch = new Uint32Array(f32Scratch.buffer)

/** IEEE binary16 bits to the (exactly representable) float32 value. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) {
    if (mant === 0) return sign * Infinity
    // Keep the payload and the sign bit rather than returning a canonical NaN.
    u32Scratch[0] = ((h & 0x8000) << 16) | 0x7f800000 | (mant << 13)
    return f32Scratch[0]
  }
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

let halfTable: Float32Array | null = null
function halfLookup(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536)
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h)
  }
  return halfTable
}

/** float32 bits to binary16 bits, round to nearest even; NaN becomes sign|0x7e00 as torch does. */
function floatBitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  const mant = x & 0x7fffff
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00)
  const halfExp = exp - 112 // rebias 127 -> 15
  if (halfExp >= 31) return sign | 0x7c00
  if (halfExp >= 1) {
    let h = (halfExp << 10) | (mant >>> 13)
    const rest = mant & 0x1fff
    // A carry out of the mantissa bumps the exponent, up to infinity: still correct.
    if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++
    return sign | h
  }
  // Result is subnormal or zero: shift the full significand down to units of 2^-24.
  const shift = 126 - exp
  if (shift >= 25) return sign
  const m = mant | 0x800000
  let h = m >>> shift
  const rest = m & ((1 << shift) - 1)
  const half = 1 << (shift - 1)
  if (rest > half || (rest === half && h & 1)) h++
  return sign | h
}

/** float32 bits to bfloat16 bits, round to nearest even; NaN becomes 0x7fc0 as torch does. */
function floatBitsToBfloat(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fc0
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16
}

export function floatToHalf(v: number): number {
  f32Scratch[0] = v
  return floatBitsToHalf(u32Scratch[0])
}

export function floatToBfloat16(v: number): number {
  f32Scratch[0] = v
  return floatBitsToBfloat(u32Scratch[0])
}

export function bfloat16ToFloat(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16
  return f32Scratch[0]
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a]
      bytes[a] = bytes[b]
      bytes[b] = t
    }
  }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

export interface SafetensorsFile {
  readonly path: string
  readonly metadata: Record<string, string>
  /** Tensor names in file order (by offset). */
  readonly names: readonly string[]
  readonly tensors: ReadonlyMap<string, TensorInfo>
  has(name: string): boolean
  info(name: string): TensorInfo
  /** Reads and converts one tensor; only its bytes are read. */
  read(name: string): HostTensor
  /** The tensor's bytes exactly as stored (little-endian). */
  readRaw(name: string): Uint8Array
  /** Releases the file descriptor; reads after this throw. */
  close(): void
}

interface ParsedHeader {
  tensors: Map<string, TensorInfo>
  metadata: Record<string, string>
}

function parseHeader(file: string, headerBytes: Uint8Array, bufferLength: number): ParsedHeader {
  const fail = (detail: string, tensor?: string): never => {
    throw new SafetensorsError(file, tensor, detail)
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes)
  } catch {
    return fail('header is not valid UTF-8 (corrupt file, or not a safetensors file)')
  }
  // The reference insists on '{' first; anything else is not one of these files.
  if (text[0] !== '{') return fail(`header does not start with '{' (starts with ${brief(text.slice(0, 16))}); not a safetensors file?`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (e) {
    return fail(`header is not valid JSON: ${errorMessage(e)}`)
  }
  if (!isPlainObject(parsed)) return fail('header is not a JSON object')
  const dup = findDuplicateKey(text)
  if (dup) return fail(dup.parent === null ? `header names tensor ${JSON.stringify(dup.key)} twice` : `header has key ${JSON.stringify(dup.key)} twice in ${JSON.stringify(dup.parent)}`)

  let metadata: Record<string, string> = {}
  const tensors = new Map<string, TensorInfo>()
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === METADATA_KEY) {
      if (entry === null) continue
      if (!isPlainObject(entry)) return fail('__metadata__ is not an object of strings')
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') return fail(`__metadata__ value for ${JSON.stringify(k)} is ${brief(v)}, not a string`)
      }
      metadata = Object.fromEntries(Object.entries(entry as Record<string, string>))
      continue
    }
    if (!isPlainObject(entry)) return fail(`header entry is ${brief(entry)}, not an object with dtype, shape and data_offsets`, name)
    const { dtype, shape, data_offsets: offsets } = entry
    if (!isDType(dtype)) return fail(`unknown dtype ${brief(dtype)}`, name)
    if (!validShape(shape)) return fail(`shape must be an array of non-negative integers, got ${brief(shape)}`, name)
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      return fail(`data_offsets must be two non-negative integers [begin, end], got ${brief(offsets)}`, name)
    }
    const [begin, end] = offsets as [number, number]
    if (begin > end) return fail(`data_offsets [${begin}, ${end}] end before they begin`, name)
    if (end > bufferLength) {
      return fail(`data_offsets [${begin}, ${end}] run past the end of the byte buffer (${bufferLength} bytes); truncated file?`, name)
    }
    const numel = safeNumel(shape)
    const bits = numel === null ? null : numel * DTYPE_BITS[dtype]
    if (bits === null || !Number.isSafeInteger(bits)) return fail(`shape [${shape.join(', ')}] is too large`, name)
    if (bits % 8 !== 0) return fail(`shape [${shape.join(', ')}] of ${dtype} is not a whole number of bytes`, name)
    if (end - begin !== bits / 8) {
      return fail(`holds ${end - begin} bytes (data_offsets [${begin}, ${end}]) but shape [${shape.join(', ')}] of ${dtype} needs ${bits / 8}`, name)
    }
    tensors.set(name, { name, dtype, shape: [...shape], dataOffsets: [begin, end] })
  }

  const ordered = [...tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1])
  let covered = 0
  let previous: TensorInfo | null = null
  for (const t of ordered) {
    const [begin, end] = t.dataOffsets
    if (begin < covered) {
      return fail(`data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous!.name)} at [${previous!.dataOffsets.join(', ')}]`, t.name)
    }
    if (begin > covered) return fail(`bytes [${covered}, ${begin}) of the byte buffer belong to no tensor (the format requires tensors to be contiguous)`, t.name)
    covered = end
    previous = t
  }
  if (covered !== bufferLength) {
    return fail(`the byte buffer has ${bufferLength - covered} bytes after the last tensor that belong to no tensor (corrupt file?)`)
  }
  return { tensors: new Map(ordered.map((t) => [t.name, t])), metadata }
}

function readFully(fd: number, target: Uint8Array, position: number, file: string, tensor: string | undefined): void {
  let done = 0
  while (done < target.length) {
    const n = readSync(fd, target, done, Math.min(target.length - done, IO_MAX), position + done)
    if (n === 0) throw new SafetensorsError(file, tensor, `file ended after ${position + done} bytes while reading; was it truncated while open?`)
    done += n
  }
}

class OpenSafetensors implements SafetensorsFile {
  readonly names: readonly string[]
  private fd: number | null

  constructor(
    readonly path: string,
    fd: number,
    private readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {
    this.fd = fd
    this.names = Object.freeze([...tensors.keys()])
  }

  has(name: string): boolean {
    return this.tensors.has(name)
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name)
    if (!t) throw new SafetensorsError(this.path, name, 'no such tensor in this file')
    return t
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd)
    this.fd = null
  }

  private liveFd(name: string): number {
    if (this.fd === null) throw new SafetensorsError(this.path, name, 'read after close()')
    return this.fd
  }

  private checkSize(t: TensorInfo, bytes: number): void {
    if (bytes > bufferConstants.MAX_LENGTH) {
      throw new SafetensorsError(this.path, t.name, `${bytes} bytes exceed the largest buffer Node can allocate (${bufferConstants.MAX_LENGTH})`)
    }
  }

  readRaw(name: string): Uint8Array {
    const t = this.info(name)
    const [begin, end] = t.dataOffsets
    this.checkSize(t, end - begin)
    const out = Buffer.allocUnsafe(end - begin)
    readFully(this.liveFd(name), out, this.dataStart + begin, this.path, name)
    return out
  }

  read(name: string): HostTensor {
    const t = this.info(name)
    const fd = this.liveFd(name)
    const numel = safeNumel(t.shape)!
    const [begin, end] = t.dataOffsets
    const position = this.dataStart + begin
    const fail = (detail: string): never => {
      throw new SafetensorsError(this.path, name, detail)
    }
    const shape = [...t.shape]
    switch (t.dtype) {
      case 'F32':
      case 'I32': {
        this.checkSize(t, end - begin)
        // Read straight into the result: no scratch copy for the common case.
        const data = t.dtype === 'F32' ? new Float32Array(numel) : new Int32Array(numel)
        const bytes = new Uint8Array(data.buffer)
        readFully(fd, bytes, position, this.path, name)
        if (!LITTLE_ENDIAN) swapBytes(bytes, 4)
        return { dtype: t.dtype, shape, data }
      }
      case 'U8':
      case 'BOOL': {
        this.checkSize(t, end - begin)
        const data = new Uint8Array(numel)
        readFully(fd, data, position, this.path, name)
        if (t.dtype === 'BOOL') for (let i = 0; i < numel; i++) data[i] = data[i] ? 1 : 0
        return { dtype: t.dtype, shape, data }
      }
      case 'F16':
      case 'BF16':
      case 'F64': {
        this.checkSize(t, numel * 4)
        const data = new Float32Array(numel)
        this.convert(t, fd, position, (b, m, o) => {
          if (t.dtype === 'F16') {
            const table = halfLookup()
            for (let k = 0; k < m; k++) data[o + k] = table[b[2 * k] | (b[2 * k + 1] << 8)]
          } else if (t.dtype === 'BF16') {
            const bits = new Uint32Array(data.buffer)
            for (let k = 0; k < m; k++) bits[o + k] = (b[2 * k] | (b[2 * k + 1] << 8)) << 16
          } else {
            const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
            for (let k = 0; k < m; k++) data[o + k] = view.getFloat64(8 * k, true)
          }
        })
        return { dtype: t.dtype, shape, data }
      }
      case 'I8':
      case 'I16':
      case 'U16':
      case 'U32':
      case 'I64':
      case 'U64': {
        this.checkSize(t, numel * 4)
        const data = new Int32Array(numel)
        const outOfRange = (index: number, value: bigint | number): never =>
          fail(`element ${index} is ${value}, outside the int32 range bertkit uses for integer tensors`)
        this.convert(t, fd, position, (b, m, o) => {
          const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
          for (let k = 0; k < m; k++) {
            switch (t.dtype) {
              case 'I8':
                data[o + k] = view.getInt8(k)
                break
              case 'I16':
                data[o + k] = view.getInt16(2 * k, true)
                break
              case 'U16':
                data[o + k] = view.getUint16(2 * k, true)
                break
              case 'U32': {
                const v = view.getUint32(4 * k, true)
                if (v > 0x7fffffff) outOfRange(o + k, v)
                data[o + k] = v
                break
              }
              default: {
                const lo = view.getUint32(8 * k, true)
                const hi = view.getInt32(8 * k + 4, true)
                // In range iff the high word is the sign extension of the low word.
                const fits = t.dtype === 'I64' ? hi === (lo & 0x80000000 ? -1 : 0) : hi === 0 && lo <= 0x7fffffff
                if (!fits) outOfRange(o + k, t.dtype === 'I64' ? view.getBigInt64(8 * k, true) : view.getBigUint64(8 * k, true))
                data[o + k] = lo | 0
              }
            }
          }
        })
        return { dtype: t.dtype, shape, data }
      }
      default:
        return fail(`dtype ${t.dtype} is not supported by bertkit (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)`)
    }
  }

  /** Streams a tensor's bytes in element-aligned slices: sink(bytes, count, firstElement). */
  private convert(t: TensorInfo, fd: number, position: number, sink: (bytes: Uint8Array, count: number, first: number) => void): void {
    const width = DTYPE_BITS[t.dtype] / 8
    const total = t.dataOffsets[1] - t.dataOffsets[0]
    const scratch = Buffer.allocUnsafe(Math.min(total, CHUNK_BYTES))
    for (let done = 0; done < total; ) {
      const n = Math.min(scratch.length, total - done)
      const slice = scratch.subarray(0, n)
      readFully(fd, slice, position + done, this.path, t.name)
      sink(slice, n / width, done / width)
      done += n
    }
  }
}

/**
 * Opens a safetensors file and validates its whole header without reading any
 * tensor data. Keeps the file open (close() it) so a checkpoint replaced on
 * disk meanwhile cannot be read with the old file's offsets.
 */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    throw new SafetensorsError(path, undefined, `cannot open: ${errorMessage(e)}`)
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw new SafetensorsError(path, undefined, 'not a regular file')
    const size = stat.size
    if (size < 8) throw new SafetensorsError(path, undefined, `file is ${size} bytes, too short for the 8-byte header length; truncated or not a safetensors file`)
    const prefix = Buffer.alloc(8)
    readFully(fd, prefix, 0, path, undefined)
    const n = prefix.readBigUInt64LE(0)
    if (n > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(path, undefined, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit; corrupt or not a safetensors file`)
    }
    const headerLength = Number(n)
    if (8 + headerLength > size) {
      throw new SafetensorsError(path, undefined, `header length ${headerLength} runs past the end of the file (${size} bytes); truncated or not a safetensors file`)
    }
    const headerBytes = Buffer.alloc(headerLength)
    readFully(fd, headerBytes, 8, path, undefined)
    const dataStart = 8 + headerLength
    const { tensors, metadata } = parseHeader(path, headerBytes, size - dataStart)
    return new OpenSafetensors(path, fd, dataStart, tensors, metadata)
  } catch (e) {
    closeSync(fd)
    throw e
  }
}

/** Reads every tensor of a safetensors file into host memory. */
export function readSafetensors(path: string): SafetensorsContents {
  const file = openSafetensors(path)
  try {
    const tensors = new Map<string, HostTensor>()
    for (const name of file.names) tensors.set(name, file.read(name))
    return { tensors, metadata: file.metadata }
  } finally {
    file.close()
  }
}

// ---------------------------------------------------------------------------
// Sharded checkpoints
// ---------------------------------------------------------------------------

export const SHARDED_INDEX_NAME = 'model.safetensors.index.json'

export interface ShardedIndex {
  indexPath: string
  /** The index's own "metadata" (e.g. total_size); not checked. */
  metadata: Record<string, unknown>
  /** Tensor name -> absolute path of the shard that holds it. */
  weightMap: Map<string, string>
  /** Absolute shard paths, each once, in order of first mention. */
  files: string[]
  /** Header information of every mapped tensor. */
  tensors: Map<string, TensorInfo & { file: string }>
  /** Tensors present in a shard that the weight map does not mention (transformers would still load them). */
  unlisted: Array<{ name: string; file: string }>
}

/**
 * Reads `model.safetensors.index.json` (given its directory or its path),
 * opens every shard's header and checks that the index and the shards agree.
 */
export function readShardedIndex(dirOrIndexPath: string): ShardedIndex {
  const indexPath = dirOrIndexPath.endsWith('.json') ? resolve(dirOrIndexPath) : resolve(dirOrIndexPath, SHARDED_INDEX_NAME)
  const dir = dirname(indexPath)
  const fail = (detail: string, tensor?: string): never => {
    throw new SafetensorsError(indexPath, tensor, detail)
  }
  let text: string
  try {
    text = readFileSync(indexPath, 'utf8')
  } catch (e) {
    return fail(`cannot read the sharded checkpoint index: ${errorMessage(e)}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (e) {
    return fail(`not valid JSON: ${errorMessage(e)}`)
  }
  if (!isPlainObject(parsed)) return fail('not a JSON object')
  const dup = findDuplicateKey(text)
  if (dup) return fail(`key ${JSON.stringify(dup.key)} appears twice${dup.parent === null ? '' : ` in ${JSON.stringify(dup.parent)}`}`)
  const { weight_map: rawMap, metadata = {} } = parsed
  if (!isPlainObject(rawMap)) return fail('"weight_map" is missing or not an object')
  if (metadata !== null && !isPlainObject(metadata)) return fail('"metadata" is not an object')

  const weightMap = new Map<string, string>()
  const files: string[] = []
  for (const [name, file] of Object.entries(rawMap)) {
    if (typeof file !== 'string' || file === '') return fail(`weight_map value ${brief(file)} is not a file name`, name)
    const full = resolve(dir, file)
    const rel = relative(dir, full)
    // A downloaded index must not point the loader at files outside the checkpoint.
    if (isAbsolute(file) || rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      return fail(`weight_map points outside the checkpoint directory: ${JSON.stringify(file)}`, name)
    }
    weightMap.set(name, full)
    if (!files.includes(full)) files.push(full)
  }

  const tensors = new Map<string, TensorInfo & { file: string }>()
  const unlisted: Array<{ name: string; file: string }> = []
  const seenIn = new Map<string, string>()
  for (const file of files) {
    const shard = openSafetensors(file)
    try {
      for (const name of shard.names) {
        const other = seenIn.get(name)
        if (other !== undefined) throw new SafetensorsError(file, name, `also stored in ${other}; the sharded checkpoint is ambiguous`)
        seenIn.set(name, file)
        const mapped = weightMap.get(name)
        if (mapped === undefined) unlisted.push({ name, file })
        else if (mapped === file) tensors.set(name, { ...shard.info(name), file })
      }
    } finally {
      shard.close()
    }
  }
  for (const [name, file] of weightMap) {
    if (!tensors.has(name)) {
      const actual = seenIn.get(name)
      fail(`weight_map says it is in ${basename(file)} but ${actual === undefined ? 'no shard holds it' : `it is in ${basename(actual)}`}`, name)
    }
  }
  return { indexPath, metadata: (metadata ?? {}) as Record<string, unknown>, weightMap, files, tensors, unlisted }
}

/** Reads every tensor named in a sharded checkpoint's weight map. */
export function readShardedSafetensors(dirOrIndexPath: string): { tensors: Map<string, HostTensor>; index: ShardedIndex } {
  const index = readShardedIndex(dirOrIndexPath)
  const byName = new Map<string, HostTensor>()
  for (const file of index.files) {
    const shard = openSafetensors(file)
    try {
      for (const name of shard.names) if (index.weightMap.get(name) === file) byName.set(name, shard.read(name))
    } finally {
      shard.close()
    }
  }
  // Index order, not shard order, so callers see the names as the index lists them.
  const tensors = new Map<string, HostTensor>()
  for (const name of index.weightMap.keys()) tensors.set(name, byName.get(name)!)
  return { tensors, index }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

type WriteData = Float32Array | Int32Array

export interface WriteTensor {
  dtype: WritableDType
  shape: readonly number[]
  /**
   * Float32Array for F32/F16/BF16, Int32Array for I32. A function is called
   * when the tensor's turn comes, so a large model can be copied off the
   * device one tensor at a time.
   */
  data: WriteData | (() => WriteData)
}

const WRITE_BYTES: Record<WritableDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 }

/** The temporary file atomicWrite writes before renaming it over `target`. */
function temporaryPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`)
}

function writeFailure(target: string, e: unknown): Error {
  if (e instanceof SafetensorsError) return e
  const wrapped = new Error(`cannot write ${target}: ${errorMessage(e)}`, { cause: e }) as Error & { code?: unknown }
  if (e && typeof e === 'object' && 'code' in e) wrapped.code = e.code
  return wrapped
}

/** Makes a rename in `dir` durable. Best effort: some platforms cannot fsync a directory. */
function syncDirectory(dir: string): void {
  try {
    const dfd = openSync(dir, 'r')
    try {
      fsyncSync(dfd)
    } finally {
      closeSync(dfd)
    }
  } catch {
    // The data is in place; only durability across a power cut is weaker.
  }
}

/**
 * Writes `path` atomically: a temporary file in the same directory, fsync,
 * rename. On any error the temporary file is removed and an existing file at
 * `path` is left as it was.
 */
function atomicWrite(path: string, produce: (write: (bytes: Uint8Array) => void) => void): void {
  const target = resolve(path)
  const tmp = temporaryPath(target)
  let fd: number | null = null
  try {
    fd = openSync(tmp, 'wx', 0o644)
    const out = fd
    produce((bytes) => {
      for (let done = 0; done < bytes.length; ) {
        done += writeSync(out, bytes, done, Math.min(bytes.length - done, IO_MAX))
      }
    })
    fsyncSync(fd)
    closeSync(fd)
    fd = null
    renameSync(tmp, target)
  } catch (e) {
    if (fd !== null) {
      try {
        closeSync(fd)
      } catch {
        // The write already failed; that error is the one to report.
      }
    }
    try {
      unlinkSync(tmp)
    } catch {
      // Not created, or already renamed.
    }
    throw writeFailure(target, e)
  }
  syncDirectory(dirname(target))
}

/**
 * atomicWrite with the writes, fsync and rename on libuv's threads, so the
 * event loop runs while a large file (a checkpoint) goes to disk.
 */
async function atomicWriteAsync(path: string, produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  const target = resolve(path)
  const tmp = temporaryPath(target)
  let handle: Awaited<ReturnType<typeof openAsync>> | null = null
  try {
    handle = await openAsync(tmp, 'wx', 0o644)
    const out = handle
    await produce(async (bytes) => {
      for (let done = 0; done < bytes.length; ) {
        const { bytesWritten } = await out.write(bytes, done, Math.min(bytes.length - done, IO_MAX))
        done += bytesWritten
      }
    })
    await handle.sync()
    await handle.close()
    handle = null
    await renameAsync(tmp, target)
  } catch (e) {
    if (handle !== null) {
      try {
        await handle.close()
      } catch {
        // The write already failed; that error is the one to report.
      }
    }
    try {
      await unlinkAsync(tmp)
    } catch {
      // Not created, or already renamed.
    }
    throw writeFailure(target, e)
  }
  syncDirectory(dirname(target))
}

/** Writes a whole file atomically (temporary file, fsync, rename), e.g. config.json. */
export function atomicWriteFile(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  atomicWrite(path, (write) => write(bytes))
}

/** atomicWriteFile without holding the event loop. */
export async function atomicWriteFileAsync(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  await atomicWriteAsync(path, (write) => write(bytes))
}

/** Little-endian bytes of a 4-byte-element typed array, without copying where the host is little-endian. */
function le32(data: WriteData): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (LITTLE_ENDIAN) return bytes
  const copy = Uint8Array.from(bytes)
  swapBytes(copy, 4)
  return copy
}

interface SafetensorsPlan {
  file: string
  head: Buffer
  entries: Array<{ name: string; t: WriteTensor; numel: number; begin: number; end: number }>
}

/** Validates names, dtypes, shapes and metadata, and builds the header. */
function planSafetensors(
  path: string,
  tensors: Iterable<readonly [string, WriteTensor]>,
  metadata?: Record<string, string>,
): SafetensorsPlan {
  const file = resolve(path)
  const fail = (detail: string, tensor?: string): never => {
    throw new SafetensorsError(file, tensor, detail)
  }
  const entries: SafetensorsPlan['entries'] = []
  const names = new Set<string>()
  let offset = 0
  for (const [name, t] of tensors) {
    if (typeof name !== 'string' || name === '') fail(`tensor name ${brief(name)} is not a non-empty string`)
    if (name === METADATA_KEY) fail('"__metadata__" is reserved and cannot name a tensor')
    if (names.has(name)) fail('given twice', name)
    names.add(name)
    if (!t || !Object.hasOwn(WRITE_BYTES, t.dtype)) fail(`cannot write dtype ${brief(t?.dtype)} (use F32, F16, BF16 or I32)`, name)
    if (!validShape(t.shape)) fail(`shape must be an array of non-negative integers, got ${brief(t.shape)}`, name)
    const numel = safeNumel(t.shape)
    if (numel === null) return fail(`shape [${t.shape.join(', ')}] is too large`, name)
    if (typeof t.data !== 'function') checkWriteData(file, name, t, t.data, numel)
    const bytes = numel * WRITE_BYTES[t.dtype]
    entries.push({ name, t, numel, begin: offset, end: offset + bytes })
    offset += bytes
  }
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) fail('metadata must be an object of strings')
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') fail(`metadata value for ${JSON.stringify(k)} is ${brief(v)}, not a string`)
  }

  // Built by hand so the header lists tensors in the order given (JSON.stringify
  // of an object would move integer-like names to the front).
  const parts: string[] = []
  if (metadata !== undefined) parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`)
  for (const e of entries) {
    parts.push(`${JSON.stringify(e.name)}:${JSON.stringify({ dtype: e.t.dtype, shape: [...e.t.shape], data_offsets: [e.begin, e.end] })}`)
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8')
  const padded = Math.ceil(json.length / 8) * 8
  if (padded > MAX_HEADER_BYTES) fail(`header would be ${padded} bytes, above the ${MAX_HEADER_BYTES}-byte limit readers enforce`)
  const head = Buffer.alloc(8 + padded, 0x20)
  head.writeBigUInt64LE(BigInt(padded), 0)
  json.copy(head, 8)
  return { file, head, entries }
}

/**
 * The file's bytes in order: the header, then each tensor, its data fetched
 * only when its turn comes (one tensor in host memory at a time). A yielded
 * chunk may be reused once the next one is asked for.
 */
function* safetensorsChunks(plan: SafetensorsPlan): Generator<Uint8Array> {
  yield plan.head
  for (const e of plan.entries) {
    const data = typeof e.t.data === 'function' ? e.t.data() : e.t.data
    checkWriteData(plan.file, e.name, e.t, data, e.numel)
    if (e.t.dtype === 'F32' || e.t.dtype === 'I32') {
      yield le32(data)
      continue
    }
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
    const encode = e.t.dtype === 'F16' ? floatBitsToHalf : floatBitsToBfloat
    const chunk = Buffer.allocUnsafe(Math.min(e.numel * 2, CHUNK_BYTES))
    const per = chunk.length / 2
    for (let first = 0; first < e.numel; first += per) {
      const m = Math.min(per, e.numel - first)
      for (let k = 0; k < m; k++) {
        const h = encode(bits[first + k])
        chunk[2 * k] = h & 0xff
        chunk[2 * k + 1] = h >>> 8
      }
      yield chunk.subarray(0, 2 * m)
    }
  }
}

/**
 * Writes a safetensors file that the reference implementation reads: header
 * padded with spaces to a multiple of 8, tensors contiguous in the order
 * given. F16/BF16 are rounded to nearest even from the Float32Array.
 * Atomic (see atomicWrite).
 */
export function writeSafetensors(
  path: string,
  tensors: Iterable<readonly [string, WriteTensor]>,
  metadata?: Record<string, string>,
): void {
  const plan = planSafetensors(path, tensors, metadata)
  atomicWrite(plan.file, (write) => {
    for (const chunk of safetensorsChunks(plan)) write(chunk)
  })
}

/**
 * writeSafetensors with the disk writes off the event loop (checkpoints of
 * hundreds of megabytes); tensor data is still fetched one tensor at a time.
 */
export async function writeSafetensorsAsync(
  path: string,
  tensors: Iterable<readonly [string, WriteTensor]>,
  metadata?: Record<string, string>,
): Promise<void> {
  const plan = planSafetensors(path, tensors, metadata)
  await atomicWriteAsync(plan.file, async (write) => {
    for (const chunk of safetensorsChunks(plan)) await write(chunk)
  })
}

function checkWriteData(file: string, name: string, t: WriteTensor, data: unknown, numel: number): asserts data is WriteData {
  const want = t.dtype === 'I32' ? Int32Array : Float32Array
  if (!(data instanceof want)) {
    const got = typeof data === 'object' && data !== null ? data.constructor.name : typeof data
    throw new SafetensorsError(file, name, `${t.dtype} data must be a ${want.name}, got ${got}`)
  }
  if (data.length !== numel) {
    throw new SafetensorsError(file, name, `data has ${data.length} elements but shape [${t.shape.join(', ')}] needs ${numel}`)
  }
}
