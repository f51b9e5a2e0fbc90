// The safetensors reader and writer: round trips, half-precision rounding
// against torch's, a file written by Python's `safetensors`, every malformed
// header the reference rejects, interrupted writes, sharded indexes.
import t from 'tap'
import { scratchDirs } from '../helpers/scratch.js'
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  SafetensorsError,
  atomicWriteFile,
  atomicWriteFileAsync,
  bfloat16ToFloat,
  floatToBfloat16,
  floatToHalf,
  halfToFloat,
  openSafetensors,
  readSafetensors,
  readShardedIndex,
  readShardedSafetensors,
  writeSafetensors,
  writeSafetensorsAsync,
  type HostArray,
  type WriteTensor,
} from '../../lib/hub/safetensors.js'

const FIXTURE = resolve(__dirname, '../../../test/fixtures/safetensors/python_written.safetensors')

const { root, fresh: freshDir } = scratchDirs('bertkit-safetensors-')

/** Same value, treating NaN as equal to NaN and -0 as different from 0. */
function sameValues(actual: ArrayLike<number>, expected: ArrayLike<number>): string | null {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) return `element ${i}: ${actual[i]} != ${expected[i]}`
  }
  return null
}

function f32(values: number[]): Float32Array {
  return Float32Array.from(values)
}

/** A file with a hand-written header (padded like the reference) and byte buffer. */
function craft(name: string, header: unknown, buffer: Uint8Array | number = 0, rawHeader?: Uint8Array): string {
  const path = join(root, name)
  const json = rawHeader ?? Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8')
  const len = Math.ceil(json.length / 8) * 8
  const head = Buffer.alloc(8 + len, 0x20)
  head.writeBigUInt64LE(BigInt(len))
  Buffer.from(json).copy(head, 8)
  const data = typeof buffer === 'number' ? Buffer.alloc(buffer) : Buffer.from(buffer)
  writeFileSync(path, Buffer.concat([head, data]))
  return path
}

type Test = tap.Test

function expectError(t: Test, fn: () => unknown, file: string, tensor: string | undefined, pattern: RegExp, label: string): void {
  try {
    fn()
    t.fail(`${label}: no error`)
  } catch (e) {
    if (!(e instanceof SafetensorsError)) {
      t.fail(`${label}: threw ${String(e)} instead of a SafetensorsError`)
      return
    }
    t.equal(e.file, file, `${label}: error names the file`)
    t.equal(e.tensor, tensor, `${label}: error names the tensor`)
    t.ok(e.message.includes(file), `${label}: message contains the file`)
    if (tensor !== undefined) t.ok(e.message.includes(JSON.stringify(tensor)), `${label}: message contains the tensor`)
    t.match(e.message, pattern, label)
  }
}

function tempFilesIn(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('.tmp-'))
}

t.test('reads the file Python safetensors wrote', (t) => {
  const { tensors, metadata } = readSafetensors(FIXTURE)
  t.same(metadata, { format: 'pt', source: 'scripts/make_safetensors_fixture.py' })
  const get = (name: string) => {
    const x = tensors.get(name)
    if (!x) throw new Error(`fixture lacks ${name}`)
    return x
  }
  const check = (name: string, dtype: string, shape: number[], type: new (n: number) => HostArray, values: number[]) => {
    const x = get(name)
    t.equal(x.dtype, dtype, `${name} dtype`)
    t.same(x.shape, shape, `${name} shape`)
    t.ok(x.data instanceof type, `${name} is a ${type.name}`)
    t.equal(sameValues(x.data, values), null, `${name} values`)
  }
  const F32_MAX = 3.4028234663852886e38
  check('f32', 'F32', [2, 5], Float32Array, [0, -0, 1, -2.5, F32_MAX, 1.401298464324817e-45, 1.1754943508222875e-38, Infinity, -Infinity, NaN])
  check('f16_exact', 'F16', [13], Float32Array, [1, -2, 0.5, 65504, 2 ** -14, 2 ** -24, 3 * 2 ** -24, -(2 ** -24), 0.333251953125, -0, Infinity, -Infinity, NaN])
  check('bf16_exact', 'BF16', [11], Float32Array, [1, -2, 0.5, 3.3895313892515355e38, 2 ** -126, 2 ** -133, -0, 1.0078125, Infinity, -Infinity, NaN])
  check('i64', 'I64', [2, 3], Int32Array, [0, -1, 2 ** 31 - 1, -(2 ** 31), 42, 7])
  check('i32', 'I32', [3], Int32Array, [5, -6, 2 ** 31 - 1])
  check('u8', 'U8', [3], Uint8Array, [0, 1, 255])
  check('bool', 'BOOL', [3], Uint8Array, [1, 0, 1])
  check('f64', 'F64', [4], Float32Array, [Math.fround(0.1), -Infinity, 0, 1])
  check('scalar', 'F32', [], Float32Array, [7.25])
  check('empty', 'F32', [0, 3], Float32Array, [])
  t.equal(tensors.size, 14, 'every tensor read')
  t.end()
})

t.test('F16 and BF16 rounding is bit-identical to torch on the fixture', (t) => {
  const file = openSafetensors(FIXTURE)
  try {
    for (const [kind, encode] of [['f16', floatToHalf], ['bf16', floatToBfloat16]] as const) {
      const source = file.read(`${kind}_source`).data as Float32Array
      const raw = file.readRaw(`${kind}_rounded`)
      const torchBits = Array.from({ length: raw.length / 2 }, (_, i) => raw[2 * i] | (raw[2 * i + 1] << 8))
      const ours = Array.from(source, encode)
      // torch's vectorised bf16 cast writes NaN as 0xffff, its scalar one as 0x7fc0: any NaN bit pattern agrees.
      const nan = (b: number) => (kind === 'f16' ? (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0 : (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0)
      const bad = ours.findIndex((b, i) => (nan(torchBits[i]) ? !nan(b) : b !== torchBits[i]))
      t.ok(torchBits.some(nan), `${kind}: the cases include NaN`)
      t.equal(bad, -1, `${kind}: every element rounds like torch${bad < 0 ? '' : ` (first mismatch: ${source[bad]} -> 0x${ours[bad].toString(16)}, torch 0x${torchBits[bad].toString(16)})`}`)
      t.equal(ours.length, 47 - (kind === 'bf16' ? 10 : 0), `${kind}: all cases compared`)

      const out = join(freshDir(), `${kind}.safetensors`)
      writeSafetensors(out, [['x', { dtype: kind === 'f16' ? 'F16' : 'BF16', shape: [source.length], data: source }]])
      const written = openSafetensors(out)
      try {
        const writtenRaw = written.readRaw('x')
        const writtenBits = Array.from({ length: writtenRaw.length / 2 }, (_, i) => writtenRaw[2 * i] | (writtenRaw[2 * i + 1] << 8))
        t.same(writtenBits, ours, `${kind}: the writer's chunked encoder gives the same bits`)
      } finally {
        written.close()
      }
    }
  } finally {
    file.close()
  }
  t.end()
})

t.test('half-precision conversions: named cases and every bit pattern', (t) => {
  const u = 2 ** -24
  const halfCases: Array<[number, number]> = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-1e6, 0xfc00],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [u, 0x0001], [u / 2, 0x0000], [-u / 2, 0x8000], [u * 0.75, 0x0001],
    [u * 1.5, 0x0002], [u * 2.5, 0x0002], [2 ** -14 - u / 2, 0x0400], [2 ** -14, 0x0400], [0, 0], [-0, 0x8000],
    [Infinity, 0x7c00], [-Infinity, 0xfc00], [NaN, 0x7e00], [2 ** -16, 0x0100],
  ]
  for (const [v, bits] of halfCases) t.equal(floatToHalf(v), bits, `half(${v}) = 0x${bits.toString(16)}`)
  const bfCases: Array<[number, number]> = [
    [1, 0x3f80], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [1 + 2 ** -8 + 2 ** -20, 0x3f81], [3.4028234663852886e38, 0x7f80],
    [-3.4028234663852886e38, 0xff80], [1e-45, 0x0000], [0, 0], [-0, 0x8000], [Infinity, 0x7f80], [NaN, 0x7fc0],
  ]
  for (const [v, bits] of bfCases) t.equal(floatToBfloat16(v), bits, `bf16(${v}) = 0x${bits.toString(16)}`)

  t.equal(halfToFloat(0x0001), 2 ** -24, 'smallest subnormal')
  t.equal(halfToFloat(0x03ff), 1023 * 2 ** -24, 'largest subnormal')
  t.ok(Object.is(halfToFloat(0x8000), -0), 'negative zero')
  t.equal(halfToFloat(0xfc00), -Infinity, 'negative infinity')
  t.ok(Number.isNaN(halfToFloat(0x7c01)) && Number.isNaN(halfToFloat(0xfe00)), 'NaNs')
  let halfBad = 0, bfBad = 0
  for (let h = 0; h < 65536; h++) {
    const isNaNPattern = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
    const back = floatToHalf(halfToFloat(h))
    if (isNaNPattern ? (back & 0x7fff) <= 0x7c00 : back !== h) halfBad++
    const bfNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0
    const bback = floatToBfloat16(bfloat16ToFloat(h))
    if (bfNaN ? bback !== 0x7fc0 : bback !== h) bfBad++
  }
  t.equal(halfBad, 0, 'every float16 survives float16 -> float32 -> float16')
  t.equal(bfBad, 0, 'every bfloat16 survives bfloat16 -> float32 -> bfloat16')
  t.end()
})

t.test('round trip of every writable dtype, header layout as the reference writes it', (t) => {
  const dir = freshDir()
  const path = join(dir, 'model.safetensors')
  const big = new Float32Array(4_500_003).map((_, i) => Math.sin(i) * 1000)
  const tensors: Array<[string, WriteTensor]> = [
    ['b.weight', { dtype: 'F32', shape: [2, 3], data: f32([1, -2, 3.5, 0, -0, 1e-40]) }],
    ['10', { dtype: 'F16', shape: [3], data: f32([1, 65520, 2 ** -25 * 3]) }],
    ['2', { dtype: 'BF16', shape: [1, 1, 3], data: () => f32([1 + 2 ** -8, -1, 3.4e38]) }],
    ['ids', { dtype: 'I32', shape: [4], data: Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31)]) }],
    ['scalar', { dtype: 'F32', shape: [], data: f32([42]) }],
    ['empty', { dtype: 'F16', shape: [3, 0], data: new Float32Array(0) }],
    ['big', { dtype: 'F16', shape: [big.length], data: big }],
    ['big_bf', { dtype: 'BF16', shape: [big.length], data: big }],
  ]
  writeSafetensors(path, new Map(tensors), { format: 'pt', note: 'ünïcode' })

  const bytes = readFileSync(path)
  const n = Number(bytes.readBigUInt64LE(0))
  t.equal(n % 8, 0, 'header length is a multiple of 8')
  const headerText = bytes.subarray(8, 8 + n).toString('utf8')
  t.match(headerText, /^\{.*\} *$/s, 'header is JSON padded with spaces')
  t.ok(n - Buffer.byteLength(headerText.trimEnd()) < 8, 'padding is less than 8 bytes')
  const header = JSON.parse(headerText) as Record<string, { data_offsets: [number, number] }>
  t.ok(headerText.startsWith('{"__metadata__":{"format":"pt","note":"ünïcode"},'), 'metadata first, as the reference writes it')
  const order = [...headerText.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1])
  t.same(order, tensors.map(([name]) => name), 'header lists tensors in the order given, integer-like names included')
  let end = 0
  for (const [name] of tensors) {
    t.equal(header[name].data_offsets[0], end, `${name} starts where the previous ended`)
    end = header[name].data_offsets[1]
  }
  t.equal(bytes.length, 8 + n + end, 'file is header plus exactly the tensors')

  const back = readSafetensors(path)
  t.same(back.metadata, { format: 'pt', note: 'ünïcode' })
  t.same([...back.tensors.keys()], tensors.map(([name]) => name), 'read back in file order')
  const expect = (name: string, values: ArrayLike<number>) => t.equal(sameValues(back.tensors.get(name)!.data, values), null, `${name} values`)
  expect('b.weight', [1, -2, 3.5, 0, -0, Math.fround(1e-40)])
  expect('10', [1, Infinity, 2 ** -23])
  expect('2', [1, -1, Infinity])
  expect('ids', [0, -1, 2 ** 31 - 1, -(2 ** 31)])
  expect('scalar', [42])
  expect('empty', [])
  t.same(back.tensors.get('2')!.shape, [1, 1, 3])
  t.same(back.tensors.get('scalar')!.shape, [])
  t.same(back.tensors.get('empty')!.shape, [3, 0])
  t.equal(back.tensors.get('ids')!.data.constructor, Int32Array)
  // The big tensors cross the 8 MB conversion chunks in both directions.
  const bigHalf = back.tensors.get('big')!.data
  const bigBf = back.tensors.get('big_bf')!.data
  let bad = 0
  for (let i = 0; i < big.length; i++) {
    if (bigHalf[i] !== halfToFloat(floatToHalf(big[i]))) bad++
    if (bigBf[i] !== bfloat16ToFloat(floatToBfloat16(big[i]))) bad++
  }
  t.equal(bad, 0, 'multi-chunk F16 and BF16 tensors round trip through the rounding')
  t.same(tempFilesIn(dir), [], 'no temporary file left')

  const noMeta = join(dir, 'nometa.safetensors')
  writeSafetensors(noMeta, [])
  t.same(readSafetensors(noMeta), { tensors: new Map(), metadata: {} }, 'an empty file without metadata')
  t.equal(readFileSync(noMeta).length, 16, 'empty header "{}" padded to 8 bytes')
  t.end()
})

t.test('openSafetensors gives the header and reads single tensors', (t) => {
  const file = openSafetensors(FIXTURE)
  t.equal(file.names.length, 14)
  t.ok(file.has('i64') && !file.has('nope'))
  t.same(file.info('i64'), { name: 'i64', dtype: 'I64', shape: [2, 3], dataOffsets: [0, 48] })
  t.same(Array.from(file.read('i32').data), [5, -6, 2 ** 31 - 1])
  expectError(t, () => file.read('nope'), FIXTURE, 'nope', /no such tensor/, 'unknown name')
  file.close()
  file.close()
  expectError(t, () => file.read('i32'), FIXTURE, 'i32', /after close/, 'read after close')
  t.end()
})

t.test('malformed files: clear errors naming the file and the tensor', (t) => {
  const f32Entry = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] })
  const cases: Array<{ label: string; make: () => string; tensor?: string; pattern: RegExp }> = [
    { label: 'empty file', make: () => (writeFileSync(join(root, 'empty'), ''), join(root, 'empty')), pattern: /0 bytes, too short/ },
    { label: 'five bytes', make: () => (writeFileSync(join(root, 'five'), 'abcde'), join(root, 'five')), pattern: /5 bytes, too short/ },
    {
      label: 'header length past the end',
      make: () => {
        const b = Buffer.alloc(30, 0x20)
        b.writeBigUInt64LE(1000n)
        writeFileSync(join(root, 'past'), b)
        return join(root, 'past')
      },
      pattern: /header length 1000 runs past the end of the file \(30 bytes\)/,
    },
    {
      label: 'absurd header length',
      make: () => {
        const b = Buffer.alloc(16)
        b.writeBigUInt64LE(0xffffffffffffffffn)
        writeFileSync(join(root, 'absurd'), b)
        return join(root, 'absurd')
      },
      pattern: /header length 18446744073709551615 exceeds the 100000000-byte limit/,
    },
    {
      label: 'header just above 100 MB',
      make: () => {
        const b = Buffer.alloc(16)
        b.writeBigUInt64LE(100_000_001n)
        writeFileSync(join(root, 'above'), b)
        return join(root, 'above')
      },
      pattern: /exceeds the 100000000-byte limit/,
    },
    { label: 'invalid UTF-8', make: () => craft('utf8', null, 0, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), pattern: /not valid UTF-8/ },
    { label: 'invalid JSON', make: () => craft('json', '{"a": {"dtype": "F32",'), pattern: /not valid JSON/ },
    { label: 'JSON array', make: () => craft('array', '[]'), pattern: /does not start with '\{'/ },
    { label: 'JSON null', make: () => craft('null', 'null'), pattern: /does not start with '\{'/ },
    { label: 'entry not an object', make: () => craft('entry', { w: 5 }), tensor: 'w', pattern: /not an object with dtype/ },
    { label: 'unknown dtype', make: () => craft('dtype', { w: { dtype: 'F17', shape: [1], data_offsets: [0, 4] } }, 4), tensor: 'w', pattern: /unknown dtype "F17"/ },
    { label: 'dtype not a string', make: () => craft('dtype2', { w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, 4), tensor: 'w', pattern: /unknown dtype 4/ },
    { label: 'shape not an array', make: () => craft('shape1', { w: { dtype: 'F32', shape: 3, data_offsets: [0, 12] } }, 12), tensor: 'w', pattern: /shape must be an array of non-negative integers, got 3/ },
    { label: 'negative dimension', make: () => craft('shape2', { w: { dtype: 'F32', shape: [-1, 2], data_offsets: [0, 0] } }), tensor: 'w', pattern: /non-negative integers, got \[-1,2\]/ },
    { label: 'fractional dimension', make: () => craft('shape3', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, 6), tensor: 'w', pattern: /non-negative integers/ },
    { label: 'string dimension', make: () => craft('shape4', { w: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, 8), tensor: 'w', pattern: /non-negative integers/ },
    { label: 'shape too large', make: () => craft('shape5', { w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, 4), tensor: 'w', pattern: /too large/ },
    { label: 'missing data_offsets', make: () => craft('off0', { w: { dtype: 'F32', shape: [1] } }, 4), tensor: 'w', pattern: /data_offsets must be two non-negative integers/ },
    { label: 'one offset', make: () => craft('off1', { w: { dtype: 'F32', shape: [1], data_offsets: [4] } }, 4), tensor: 'w', pattern: /data_offsets must be two/ },
    { label: 'fractional offset', make: () => craft('off2', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4.5] } }, 4), tensor: 'w', pattern: /data_offsets must be two/ },
    { label: 'negative offset', make: () => craft('off3', { w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 4), tensor: 'w', pattern: /data_offsets must be two/ },
    { label: 'string offsets', make: () => craft('off4', { w: { dtype: 'F32', shape: [1], data_offsets: ['0', '4'] } }, 4), tensor: 'w', pattern: /data_offsets must be two/ },
    { label: 'begin after end', make: () => craft('off5', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4), tensor: 'w', pattern: /\[4, 0\] end before they begin/ },
    { label: 'offsets past the buffer', make: () => craft('off6', { w: f32Entry(0, 16) }, 8), tensor: 'w', pattern: /\[0, 16\] run past the end of the byte buffer \(8 bytes\)/ },
    { label: 'byte count disagrees with shape', make: () => craft('count', { w: f32Entry(0, 8, [3]) }, 8), tensor: 'w', pattern: /holds 8 bytes .* shape \[3\] of F32 needs 12/ },
    { label: 'byte count disagrees (F16)', make: () => craft('count2', { w: { dtype: 'F16', shape: [2, 2], data_offsets: [0, 16] } }, 16), tensor: 'w', pattern: /holds 16 bytes .* needs 8/ },
    { label: 'sub-byte dtype, odd count', make: () => craft('f4', { w: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2), tensor: 'w', pattern: /not a whole number of bytes/ },
    { label: 'overlapping tensors', make: () => craft('overlap', { a: f32Entry(0, 8), b: f32Entry(4, 12) }, 12), tensor: 'b', pattern: /\[4, 12\] overlap tensor "a" at \[0, 8\]/ },
    { label: 'identical ranges', make: () => craft('overlap2', { a: f32Entry(0, 8), b: f32Entry(0, 8) }, 8), tensor: 'b', pattern: /overlap tensor "a"/ },
    { label: 'gap between tensors', make: () => craft('gap', { a: f32Entry(0, 4), b: f32Entry(8, 12) }, 12), tensor: 'b', pattern: /bytes \[4, 8\) of the byte buffer belong to no tensor/ },
    { label: 'first tensor not at 0', make: () => craft('gap0', { a: f32Entry(4, 8) }, 8), tensor: 'a', pattern: /bytes \[0, 4\)/ },
    { label: 'trailing bytes', make: () => craft('trailing', { a: f32Entry(0, 4) }, 12), pattern: /8 bytes after the last tensor/ },
    {
      label: 'tensor named twice in the header text',
      make: () => craft('dup', '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),
      pattern: /header names tensor "a" twice/,
    },
    { label: 'non-string metadata', make: () => craft('meta', { __metadata__: { epoch: 3 }, a: f32Entry(0, 4) }, 4), pattern: /__metadata__ value for "epoch" is 3, not a string/ },
    { label: 'metadata an array', make: () => craft('meta2', { __metadata__: ['x'] }), pattern: /__metadata__ is not an object/ },
    { label: 'missing file', make: () => join(root, 'does-not-exist.safetensors'), pattern: /cannot open: .*ENOENT/ },
    { label: 'a directory', make: () => freshDir(), pattern: /not a regular file|cannot open/ },
  ]
  for (const c of cases) {
    const path = c.make()
    expectError(t, () => readSafetensors(path), path, c.tensor, c.pattern, c.label)
  }

  // Valid headers whose data cannot be converted: errors at read time.
  const i64 = (name: string, values: bigint[]) => {
    const b = Buffer.alloc(8 * values.length)
    values.forEach((v, i) => b.writeBigInt64LE(v, 8 * i))
    return craft(name, { ids: { dtype: 'I64', shape: [values.length], data_offsets: [0, b.length] } }, b)
  }
  const big = i64('i64big', [1n, 2n ** 31n])
  expectError(t, () => readSafetensors(big), big, 'ids', /element 1 is 2147483648, outside the int32 range/, 'I64 above int32')
  const small = i64('i64small', [-(2n ** 31n) - 1n])
  expectError(t, () => readSafetensors(small), small, 'ids', /element 0 is -2147483649/, 'I64 below int32')
  const edge = i64('i64edge', [-(2n ** 31n), 2n ** 31n - 1n, -1n])
  t.same(Array.from(readSafetensors(edge).tensors.get('ids')!.data), [-(2 ** 31), 2 ** 31 - 1, -1], 'I64 at the int32 limits reads')
  const u64 = craft('u64', { u: { dtype: 'U64', shape: [1], data_offsets: [0, 8] } }, Buffer.from([0, 0, 0, 0x80, 0, 0, 0, 0]))
  expectError(t, () => readSafetensors(u64), u64, 'u', /element 0 is 2147483648/, 'U64 above int32')

  const fp8 = craft('fp8', { a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] }, b: f32Entry(2, 6) }, 6)
  const opened = openSafetensors(fp8)
  t.same(opened.names, ['a', 'b'], 'a known but unsupported dtype still opens')
  t.same(Array.from(opened.read('b').data), [0], 'and other tensors read')
  expectError(t, () => opened.read('a'), fp8, 'a', /dtype F8_E4M3 is not supported/, 'unsupported dtype')
  opened.close()

  // A file cut short after its header was validated must not be read past its end.
  const victim = join(freshDir(), 'victim.safetensors')
  writeSafetensors(victim, [['a', { dtype: 'F32', shape: [4], data: f32([1, 2, 3, 4]) }], ['b', { dtype: 'F16', shape: [4], data: f32([1, 2, 3, 4]) }]])
  const live = openSafetensors(victim)
  truncateSync(victim, readFileSync(victim).length - 10)
  expectError(t, () => live.read('a'), victim, 'a', /file ended after \d+ bytes/, 'truncated while open (F32 path)')
  expectError(t, () => live.read('b'), victim, 'b', /file ended after/, 'truncated while open (converting path)')
  live.close()
  t.end()
})

t.test('never anything but a SafetensorsError: every truncation and random corruption of the fixture', (t) => {
  const original = readFileSync(FIXTURE)
  const path = join(freshDir(), 'mutant.safetensors')
  let wrongKind: string | null = null
  let accepted = 0
  const attempt = (): boolean => {
    try {
      readSafetensors(path)
      return true
    } catch (e) {
      if (!(e instanceof SafetensorsError) && wrongKind === null) wrongKind = String(e)
      return false
    }
  }
  // Shrink one file in place: rewriting 1,700 files costs seconds on slow disks.
  writeFileSync(path, original)
  for (let len = original.length - 1; len >= 0; len--) {
    truncateSync(path, len)
    if (attempt()) accepted++
  }
  t.equal(accepted, 0, 'every strict prefix is rejected')

  writeFileSync(path, original)
  const fd = openSync(path, 'r+')
  let seed = 7
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
  const headerEnd = 8 + Number(original.readBigUInt64LE(0))
  let rejected = 0
  try {
    for (let i = 0; i < 600; i++) {
      const positions: number[] = []
      for (let f = 1 + (next() % 3); f > 0; f--) {
        const pos = next() % headerEnd
        positions.push(pos)
        writeSync(fd, Buffer.from([original[pos] ^ (1 << (next() % 8))]), 0, 1, pos)
      }
      if (!attempt()) rejected++
      for (const pos of positions) writeSync(fd, original, pos, 1, pos)
    }
  } finally {
    closeSync(fd)
  }
  t.ok(rejected > 300, `most header corruptions are caught (${rejected} of 600)`)
  t.equal(wrongKind, null, 'no other error type escapes')
  t.end()
})

t.test('writer input validation happens before any file is touched', (t) => {
  const dir = freshDir()
  const path = join(dir, 'model.safetensors')
  writeFileSync(path, 'previous contents')
  const bad: Array<[string, Array<[string, WriteTensor]>, RegExp, string | undefined, Record<string, string>?]> = [
    ['wrong array type', [['w', { dtype: 'F32', shape: [2], data: Int32Array.from([1, 2]) }]], /F32 data must be a Float32Array, got Int32Array/, 'w'],
    ['wrong array type (I32)', [['w', { dtype: 'I32', shape: [2], data: f32([1, 2]) }]], /I32 data must be a Int32Array/, 'w'],
    ['length mismatch', [['w', { dtype: 'F16', shape: [2, 2], data: f32([1, 2, 3]) }]], /data has 3 elements but shape \[2, 2\] needs 4/, 'w'],
    ['duplicate name', [['w', { dtype: 'F32', shape: [1], data: f32([1]) }], ['w', { dtype: 'F32', shape: [1], data: f32([1]) }]], /given twice/, 'w'],
    ['reserved name', [['__metadata__', { dtype: 'F32', shape: [1], data: f32([1]) }]], /reserved/, undefined],
    ['empty name', [['', { dtype: 'F32', shape: [1], data: f32([1]) }]], /not a non-empty string/, undefined],
    ['unwritable dtype', [['w', { dtype: 'F64' as 'F32', shape: [1], data: f32([1]) }]], /cannot write dtype "F64"/, 'w'],
    ['bad shape', [['w', { dtype: 'F32', shape: [-1], data: f32([1]) }]], /non-negative integers/, 'w'],
    ['non-string metadata', [], /metadata value for "epoch" is 1/, undefined, { epoch: 1 as unknown as string }],
  ]
  for (const [label, tensors, pattern, tensor, metadata] of bad) {
    expectError(t, () => writeSafetensors(path, tensors, metadata), path, tensor, pattern, label)
  }
  t.equal(readFileSync(path, 'utf8'), 'previous contents', 'existing file untouched')
  t.same(readdirSync(dir), ['model.safetensors'], 'nothing else created')
  t.end()
})

t.test('interrupted writes leave the previous file intact and no temporary file', (t) => {
  const dir = freshDir()
  const path = join(dir, 'model.safetensors')
  writeSafetensors(path, [['old', { dtype: 'F32', shape: [2], data: f32([1, 2]) }]])
  const before = readFileSync(path)

  const big = new Float32Array(1 << 20)
  let produced = 0
  t.throws(
    () =>
      writeSafetensors(path, [
        ['a', { dtype: 'F32', shape: [big.length], data: () => (produced++, big) }],
        ['b', { dtype: 'F16', shape: [big.length], data: () => (produced++, big) }],
        ['c', { dtype: 'F32', shape: [4], data: () => { throw new Error('device lost') } }],
      ]),
    { message: /device lost/ },
    'the data source error comes out',
  )
  t.equal(produced, 2, 'it failed after writing two tensors')
  t.same(readFileSync(path), before, 'old checkpoint byte-identical')
  t.same(tempFilesIn(dir), [], 'temporary file removed')

  expectError(
    t,
    () => writeSafetensors(path, [['a', { dtype: 'F32', shape: [2], data: f32([1, 2]) }], ['b', { dtype: 'F32', shape: [3], data: () => f32([1]) }]]),
    path,
    'b',
    /data has 1 elements but shape \[3\] needs 3/,
    'lazy data of the wrong length',
  )
  t.same(readFileSync(path), before, 'old checkpoint intact after a mid-write validation error')
  t.same(tempFilesIn(dir), [], 'temporary file removed again')

  // Rename fails after the data is written and synced: the target is a directory.
  const blocked = join(dir, 'blocked.safetensors')
  mkdirSync(blocked)
  writeFileSync(join(blocked, 'keep'), 'x')
  t.throws(() => writeSafetensors(blocked, [['a', { dtype: 'F32', shape: [1], data: f32([1]) }]]), { message: new RegExp(`cannot write ${blocked.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) })
  t.same(readdirSync(blocked), ['keep'], 'the directory in the way is untouched')
  t.same(tempFilesIn(dir), [], 'no temporary file after a failed rename')

  t.test('read-only directory', { skip: process.getuid?.() === 0 ? 'root ignores directory permissions' : false }, (t) => {
    const ro = freshDir()
    const target = join(ro, 'model.safetensors')
    writeSafetensors(target, [['old', { dtype: 'F32', shape: [1], data: f32([1]) }]])
    const old = readFileSync(target)
    chmodSync(ro, 0o555)
    t.teardown(() => chmodSync(ro, 0o755))
    t.throws(() => writeSafetensors(target, [['new', { dtype: 'F32', shape: [1], data: f32([2]) }]]), { code: 'EACCES' })
    t.same(readFileSync(target), old, 'old file intact')
    t.same(tempFilesIn(ro), [], 'no temporary file')
    t.end()
  })

  // Success replaces the old file in one step.
  writeSafetensors(path, [['new', { dtype: 'I32', shape: [1], data: Int32Array.from([9]) }]])
  t.same([...readSafetensors(path).tensors.keys()], ['new'], 'a successful write replaces the file')
  t.end()
})

t.test('atomicWriteFile', (t) => {
  const dir = freshDir()
  const path = join(dir, 'config.json')
  atomicWriteFile(path, '{"a": 1}\n')
  t.equal(readFileSync(path, 'utf8'), '{"a": 1}\n')
  atomicWriteFile(path, Buffer.from('{"a": 2}\n'))
  t.equal(readFileSync(path, 'utf8'), '{"a": 2}\n', 'replaces an existing file')
  const missing = join(dir, 'no-such-dir', 'config.json')
  t.throws(() => atomicWriteFile(missing, 'x'), { code: 'ENOENT', message: /cannot write .*no-such-dir/ })
  t.same(readdirSync(dir), ['config.json'], 'nothing else left behind')
  t.end()
})

t.test('the async writer writes the same bytes, atomically, off the event loop', async (t) => {
  const dir = freshDir()
  const tensors: Array<[string, WriteTensor]> = [
    ['w', { dtype: 'F32', shape: [3, 2], data: f32([1, -2, 3.5, 4, 5, 6]) }],
    ['h', { dtype: 'BF16', shape: [1 << 19], data: () => new Float32Array(1 << 19).fill(1.1) }],
    ['ids', { dtype: 'I32', shape: [2], data: Int32Array.from([7, -1]) }],
  ]
  writeSafetensors(join(dir, 'sync.safetensors'), tensors, { format: 'pt' })
  let ticks = 0
  const timer = setInterval(() => ticks++, 0)
  await writeSafetensorsAsync(join(dir, 'async.safetensors'), tensors, { format: 'pt' })
  clearInterval(timer)
  t.same(readFileSync(join(dir, 'async.safetensors')), readFileSync(join(dir, 'sync.safetensors')), 'byte-identical files')
  t.ok(ticks > 0, 'timers ran while it wrote')

  const path = join(dir, 'async.safetensors')
  const before = readFileSync(path)
  await t.rejects(
    writeSafetensorsAsync(path, [
      ['a', { dtype: 'F32', shape: [1 << 20], data: () => new Float32Array(1 << 20) }],
      ['b', { dtype: 'F32', shape: [4], data: () => { throw new Error('device lost') } }],
    ]),
    { message: /device lost/ },
  )
  t.same(readFileSync(path), before, 'the previous file is intact after a failure mid-write')
  t.same(tempFilesIn(dir), [], 'temporary file removed')
  await t.rejects(writeSafetensorsAsync(path, [['a', { dtype: 'F64' as 'F32', shape: [1], data: f32([1]) }]]), { name: 'SafetensorsError' }, 'validated before any file is touched')

  await atomicWriteFileAsync(join(dir, 'config.json'), '{"a": 1}\n')
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), '{"a": 1}\n')
  await t.rejects(atomicWriteFileAsync(join(dir, 'no-such-dir', 'x.json'), 'x'), { code: 'ENOENT', message: /cannot write .*no-such-dir/ })
})

t.test('sharded checkpoints', (t) => {
  const weights = (values: number[]): WriteTensor => ({ dtype: 'F32', shape: [values.length], data: f32(values) })
  const makeCheckpoint = (weightMap: Record<string, string> | string, shards: Record<string, Array<[string, WriteTensor]>> = {}) => {
    const dir = freshDir()
    for (const [file, tensors] of Object.entries(shards)) writeSafetensors(join(dir, file), tensors)
    atomicWriteFile(join(dir, 'model.safetensors.index.json'), typeof weightMap === 'string' ? weightMap : JSON.stringify({ metadata: { total_size: 20 }, weight_map: weightMap }))
    return dir
  }
  const s1 = 'model-00001-of-00002.safetensors', s2 = 'model-00002-of-00002.safetensors'
  const goodShards = { [s1]: [['a', weights([1, 2])], ['b', weights([3])]] as Array<[string, WriteTensor]>, [s2]: [['c', weights([4, 5])]] as Array<[string, WriteTensor]> }
  const dir = makeCheckpoint({ c: s2, a: s1, b: s1 }, goodShards)
  const index = readShardedIndex(dir)
  t.equal(index.indexPath, join(dir, 'model.safetensors.index.json'))
  t.same(index.metadata, { total_size: 20 })
  t.same([...index.weightMap], [['c', join(dir, s2)], ['a', join(dir, s1)], ['b', join(dir, s1)]])
  t.same(index.files, [join(dir, s2), join(dir, s1)])
  t.same(index.tensors.get('a'), { name: 'a', dtype: 'F32', shape: [2], dataOffsets: [0, 8], file: join(dir, s1) })
  t.same(index.unlisted, [])
  t.same(readShardedIndex(join(dir, 'model.safetensors.index.json')).weightMap, index.weightMap, 'the index path works too')
  const all = readShardedSafetensors(dir)
  t.same([...all.tensors.keys()], ['c', 'a', 'b'], 'index order')
  t.same(Array.from(all.tensors.get('a')!.data), [1, 2])
  t.same(Array.from(all.tensors.get('c')!.data), [4, 5])

  const extra = makeCheckpoint({ a: s1 }, { [s1]: [['a', weights([1])], ['stray', weights([2])]] })
  t.same(readShardedIndex(extra).unlisted, [{ name: 'stray', file: join(extra, s1) }], 'tensors the map omits are reported')
  t.same([...readShardedSafetensors(extra).tensors.keys()], ['a'])

  const indexFile = (d: string) => join(d, 'model.safetensors.index.json')
  const missingShard = makeCheckpoint({ a: s1, b: s2 }, { [s1]: [['a', weights([1])]] })
  expectError(t, () => readShardedIndex(missingShard), join(missingShard, s2), undefined, /cannot open: .*ENOENT/, 'missing shard file')
  const notInShard = makeCheckpoint({ a: s1, z: s1 }, { [s1]: [['a', weights([1])]] })
  expectError(t, () => readShardedIndex(notInShard), indexFile(notInShard), 'z', /says it is in model-00001-of-00002.safetensors but no shard holds it/, 'name missing from its shard')
  const wrongShard = makeCheckpoint({ a: s1, b: s1, c: s2 }, { [s1]: [['a', weights([1])]], [s2]: [['b', weights([1])], ['c', weights([1])]] })
  expectError(t, () => readShardedIndex(wrongShard), indexFile(wrongShard), 'b', /says it is in model-00001-of-00002.safetensors but it is in model-00002-of-00002.safetensors/, 'name in another shard')
  const twice = makeCheckpoint({ a: s1, b: s2 }, { [s1]: [['a', weights([1])], ['b', weights([1])]], [s2]: [['b', weights([2])]] })
  expectError(t, () => readShardedIndex(twice), join(twice, s2), 'b', /also stored in .*model-00001-of-00002/, 'tensor in two shards')
  const dupKey = makeCheckpoint(`{"weight_map": {"a": "${s1}", "a": "${s2}"}}`, goodShards)
  expectError(t, () => readShardedIndex(dupKey), indexFile(dupKey), undefined, /key "a" appears twice in "weight_map"/, 'duplicate name in the weight map')
  const escape = makeCheckpoint({ a: '../outside.safetensors' })
  expectError(t, () => readShardedIndex(escape), indexFile(escape), 'a', /outside the checkpoint directory/, 'path escaping the directory')
  const absolute = makeCheckpoint({ a: '/etc/passwd' })
  expectError(t, () => readShardedIndex(absolute), indexFile(absolute), 'a', /outside the checkpoint directory/, 'absolute path')
  const nonString = makeCheckpoint('{"weight_map": {"a": 3}}')
  expectError(t, () => readShardedIndex(nonString), indexFile(nonString), 'a', /value 3 is not a file name/, 'non-string file')
  const noMap = makeCheckpoint('{"metadata": {}}')
  expectError(t, () => readShardedIndex(noMap), indexFile(noMap), undefined, /"weight_map" is missing/, 'no weight_map')
  const badJson = makeCheckpoint('{"weight_map": ')
  expectError(t, () => readShardedIndex(badJson), indexFile(badJson), undefined, /not valid JSON/, 'invalid index JSON')
  const noIndex = freshDir()
  expectError(t, () => readShardedIndex(noIndex), indexFile(noIndex), undefined, /cannot read the sharded checkpoint index/, 'no index file')
  const corruptShard = makeCheckpoint({ a: s1 })
  writeFileSync(join(corruptShard, s1), 'garbage')
  expectError(t, () => readShardedIndex(corruptShard), join(corruptShard, s1), undefined, /too short/, 'corrupt shard names the shard')
  t.end()
})
