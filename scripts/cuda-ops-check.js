#!/usr/bin/env node
// Every op of the CUDA backend against the CPU backend on random inputs, and
// per-op timings at BERT-base shapes (batch 16, seq 128, hidden 768, 12 heads,
// intermediate 3072). Complements scripts/cuda-vs-cpu.js (gemm, elementwise,
// activations and dropout against a float64 reference, and the error paths).
//
//   BERTKIT_ADDON_PATH=build-gpu/Release/cuda/bertkit_cuda.node node scripts/cuda-ops-check.js [--quick] [--json FILE]
//
// Each case runs the same function on both devices and compares every output
// tensor: float32 outputs must agree to 1e-5 relative per tensor
// (max |cuda - cpu| / max |cpu|), gemmMixed to 1e-2, casts bit for bit.
// Outputs start as NaN (so an element a kernel forgets to write shows up),
// gradients start as random values (so a kernel that overwrites instead of
// accumulating shows up), and a NaN where the CPU has a number fails.
// Plain JavaScript with no dependencies: it runs with node and the addon alone.
//
// Without a usable GPU it rehearses: the "cuda" side runs on the CPU, which
// exercises this script (not CUDA), says so, and exits 2 unless
// --allow-rehearsal is given. --quick: small shapes, no timings (for
// compute-sanitizer); --rehearse-timing: run the timing code on the CPU too.
'use strict'
const path = require('node:path')
const fs = require('node:fs')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const allowRehearsal = args.includes('--allow-rehearsal')
const jsonAt = args.indexOf('--json')
const jsonPath = jsonAt >= 0 ? args[jsonAt + 1] : null

const addonPath = process.env.BERTKIT_ADDON_PATH
if (!addonPath) {
  console.error('cuda-ops-check: set BERTKIT_ADDON_PATH to the CUDA variant (…/Release/cuda/bertkit_cuda.node)')
  process.exit(1)
}
const addon = require(path.resolve(addonPath))
const CPU = 0
const F32 = 0, F16 = 1, BF16 = 2, I32 = 3
const probe = addon.probeDevice(1)
const rehearsal = !probe.ok
const DEV = rehearsal ? CPU : 1
const devName = rehearsal ? 'cpu (rehearsal)' : 'cuda'
const started = Date.now()

console.log(`addon: ${addonPath} (cudaCompiled=${addon.cudaCompiled})`)
console.log(rehearsal ? `REHEARSAL: no usable GPU (${probe.reason}); CUDA cases run on the CPU` : `cuda:  ${probe.description}`)

// ---- helpers -----------------------------------------------------------------------

function rng(seed) {  // mulberry32
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function random(n, seed, lo = -1, hi = 1) {
  const r = rng(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r()
  return out
}

let live = []
function make(dev, dtype, values) {
  const n = typeof values === 'number' ? values : values.length
  const b = new addon.NativeBuffer(dev, dtype, n)
  if (typeof values !== 'number' && n) b.write(values)
  live.push(b)
  return b
}
const f32 = (dev, values) => make(dev, F32, values instanceof Float32Array ? values : Float32Array.from(values))
const i32 = (dev, values) => make(dev, I32, values instanceof Int32Array ? values : Int32Array.from(values))
const u16 = (dev, dtype, bits) => make(dev, dtype, bits)
const nan = (dev, n) => f32(dev, new Float32Array(n).fill(NaN))
function freeLive() {
  for (const b of live) if (!b.freed) b.free()
  live = []
}

/** Runs fn(dev) -> { name: NativeBuffer } and reads every output; an Error becomes { error }. */
function exec(dev, fn) {
  try {
    const outs = fn(dev)
    const read = {}
    for (const [name, b] of Object.entries(outs)) read[name] = b.read()
    return { read }
  } catch (e) {
    return { error: e.message }
  } finally {
    freeLive()
  }
}

const results = []
function record(op, what, status, detail) {
  results.push({ op, case: what, status, detail })
  console.log(`${status.padEnd(4)}  ${op.padEnd(20)} ${what.padEnd(46)} ${detail}`)
}

/**
 * got vs want for one tensor. Float32: max |got - want| / max |want| <= tol,
 * NaN exactly where want is NaN, infinities equal. Uint16 (half bits): exact.
 */
function compareTensor(got, want, tol) {
  if (got.length !== want.length) return { ok: false, text: `length ${got.length} != ${want.length}` }
  if (want instanceof Uint16Array) {
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i]) return { ok: false, text: `[${i}] bits 0x${got[i].toString(16)} != 0x${want[i].toString(16)}` }
    }
    return { ok: true, text: 'bit-exact' }
  }
  let maxErr = 0, at = -1, scale = 0, differ = 0
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i]
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) return { ok: false, text: `[${i}] got ${g}, want ${w}` }
      continue
    }
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (g !== w) return { ok: false, text: `[${i}] got ${g}, want ${w}` }
      continue
    }
    if (!Object.is(g, w) && !(g === 0 && w === 0)) differ++
    scale = Math.max(scale, Math.abs(w))
    const err = Math.abs(g - w)
    if (err > maxErr) { maxErr = err; at = i }
  }
  const rel = maxErr / (scale > 0 ? scale : 1)
  const text = differ === 0 ? `bit-exact (${want.length})` :
    `rel ${rel.toExponential(2)} (max|err| ${maxErr.toExponential(2)} at [${at}], ${differ}/${want.length} differ)`
  return { ok: rel <= tol, text, rel }
}

/** Runs `fn` on the device and on the CPU, and compares every output. */
function check(op, what, fn, tol = 1e-5) {
  const dev = exec(DEV, fn)
  if (dev.error) return record(op, what, 'FAIL', `${devName} threw: ${dev.error}`)
  const cpu = exec(CPU, fn)
  if (cpu.error) return record(op, what, 'FAIL', `cpu threw: ${cpu.error}`)
  let ok = true
  const parts = []
  for (const name of Object.keys(cpu.read)) {
    const c = compareTensor(dev.read[name], cpu.read[name], tol)
    ok = ok && c.ok
    parts.push(`${name}: ${c.text}`)
  }
  record(op, what, ok ? 'PASS' : 'FAIL', parts.join('; '))
}

// ---- sum, sumSquares -------------------------------------------------------------------

let seed = 5000
for (const n of quick ? [1, 8193, 100003] : [1, 8192, 8193, 1000003, 1 << 22]) {
  const x = random(n, seed++, -1, 3)
  check('sum', `n=${n}`, (d) => { const o = f32(d, [0.5]); addon.sum(n, f32(d, x), o); return { out: o } })
  check('sumSquares', `n=${n}`, (d) => { const o = f32(d, [0.5]); addon.sumSquares(n, f32(d, x), o); return { out: o } })
}
check('sum', 'n=0 adds nothing', (d) => { const o = f32(d, [4]); addon.sum(0, f32(d, [7]), o); return { out: o } })

// ---- cast ------------------------------------------------------------------------------

{
  // Every float16 and bfloat16 bit pattern, widened.
  const all = new Uint16Array(65536).map((_, i) => i)
  for (const [dtype, name] of [[F16, 'float16'], [BF16, 'bfloat16']]) {
    check('cast', `${name} -> float32, all 65536 patterns`, (d) => {
      const out = nan(d, all.length)
      addon.cast(all.length, u16(d, dtype, all), out)
      // NaN payloads compared as bits.
      return { out: { read: () => new Uint16Array(out.read().buffer) } }
    })
  }
  // float32 over a wide range of exponents, plus the special values.
  const n = quick ? 20000 : 400000
  const r = rng(seed++)
  const wide = new Float32Array(n)
  const bits = new Uint32Array(wide.buffer)
  for (let i = 0; i < n; i++) bits[i] = ((r() * 4294967296) >>> 0)
  wide.set([0, -0, Infinity, -Infinity, NaN, 65504, 65520, 65519.996, 6.1e-5, 5.96e-8, 2.98e-8, 1e-40, 3.4e38, -1.5, 1 + 2 ** -8, 1 + 2 ** -11])
  for (const [dtype, name] of [[F16, 'float16'], [BF16, 'bfloat16']]) {
    check('cast', `float32 -> ${name}, ${n} values`, (d) => {
      const out = make(d, dtype, n)
      addon.cast(n, f32(d, wide), out)
      return { out }
    })
  }
  check('cast', 'float32 -> float32', (d) => { const out = nan(d, n); addon.cast(n, f32(d, wide), out); return { out: { read: () => new Uint16Array(out.read().buffer) } } })
  const ints = Int32Array.from([0, -5, 16777216, 16777217, 16777219, 2147483647, -2147483648, ...Array.from({ length: 1000 }, (_, i) => (i * 2654435761) | 0)])
  check('cast', `int32 -> float32, ${ints.length} values`, (d) => { const out = nan(d, ints.length); addon.cast(ints.length, i32(d, ints), out); return { out } }, 0)
}

// ---- sliceRows ------------------------------------------------------------------------------

for (const [batch, srcRows, cols, start, count] of quick ? [[2, 37, 72, 29, 8], [4, 9, 1, 8, 1]] :
  [[16, 128, 768, 0, 1], [2, 37, 72, 29, 8], [4, 9, 1, 8, 1], [2, 6, 5, 0, 6]]) {
  const x = random(batch * srcRows * cols, seed++)
  const g = random(batch * count * cols, seed++)
  const d0 = random(x.length, seed++)
  const what = `[${batch}, ${srcRows}, ${cols}] rows ${start}+${count}`
  check('sliceRowsForward', what, (d) => {
    const out = nan(d, g.length)
    addon.sliceRowsForward(batch, srcRows, cols, start, count, f32(d, x), out)
    return { out }
  }, 0)
  check('sliceRowsBackward', what, (d) => {
    const dsrc = f32(d, d0)
    addon.sliceRowsBackward(batch, srcRows, cols, start, count, f32(d, g), dsrc)
    return { dsrc }
  })
}

// ---- layernorm ----------------------------------------------------------------------------

for (const [rows, cols, eps, residual, offset] of quick ? [[37, 72, 1e-12, true, 5], [3, 4099, 1e-5, false, 0]] :
  [[2048, 768, 1e-12, true, 0], [37, 72, 1e-5, false, 5], [37, 72, 1e-12, true, 5], [5, 1, 1e-5, false, 0],
    [3, 4099, 1e-12, true, 0], [600, 33, 1e-5, false, 0]]) {
  const n = rows * cols
  const x = random(n, seed++, offset - 1, offset + 1)
  const res = residual ? random(n, seed++, -0.5, 0.5) : null
  const gamma = random(cols, seed++, 0.5, 1.5), beta = random(cols, seed++, -0.5, 0.5)
  const dy = random(n, seed++), dx0 = random(n, seed++), dg0 = random(cols, seed++), db0 = random(cols, seed++)
  const what = `${rows}x${cols}${residual ? ' + residual' : ''}${offset ? ` mean ~${offset}` : ''}`
  const forward = (d) => {
    const y = nan(d, n), sumOut = residual ? nan(d, n) : null, mean = nan(d, rows), rstd = nan(d, rows)
    const xb = f32(d, x)
    addon.layernormForward(rows, cols, eps, xb, residual ? f32(d, res) : null, f32(d, gamma), f32(d, beta), y, sumOut, mean, rstd)
    return { y, sumOut, mean, rstd, input: sumOut ?? xb }
  }
  check('layernormForward', what, (d) => {
    const f = forward(d)
    const outs = { y: f.y, mean: f.mean, rstd: f.rstd }
    if (f.sumOut) outs.sumOut = f.sumOut
    return outs
  })
  for (const [which, label] of [[['dx', 'dgamma', 'dbeta'], 'all'], [['dx'], 'dx only'], [['dgamma'], 'dgamma only'], [['dbeta', 'dx'], 'dx, dbeta']]) {
    if (quick && label !== 'all') continue
    check('layernormBackward', `${what}, ${label}`, (d) => {
      const f = forward(d)
      const g = { dx: f32(d, dx0), dgamma: f32(d, dg0), dbeta: f32(d, db0) }
      const pick = (name) => (which.includes(name) ? g[name] : null)
      addon.layernormBackward(rows, cols, f.input, f32(d, gamma), f.mean, f.rstd, f32(d, dy), pick('dx'), pick('dgamma'), pick('dbeta'))
      return g  // the ones not passed must come back unchanged
    })
  }
}

// ---- embedding -----------------------------------------------------------------------------

function someIds(n, vocab, s, kind) {
  const r = rng(s)
  return Int32Array.from({ length: n }, (_, i) => {
    if (kind === 'positions') return i % Math.min(128, vocab)
    if (kind === 'types') return r() < 0.8 ? 0 : 1
    if (kind === 'ones') return 1 % vocab
    // Words: 30% padding (0), [CLS] / [SEP] at 101 / 102 often, the rest spread out.
    return r() < 0.3 ? 0 : r() < 0.2 ? Math.min(101 + (r() < 0.5 ? 1 : 0), vocab - 1) : Math.floor(r() * vocab)
  })
}
for (const [n, dim, vocab, pad, kind] of quick ? [[300, 72, 150, 0, 'words'], [200, 16, 2, -1, 'types']] :
  [[2048, 768, 28996, 0, 'words'], [2048, 768, 28996, -1, 'words'], [2048, 768, 2, -1, 'types'], [2048, 768, 512, -1, 'positions'],
    [37, 5, 7, 3, 'words'], [5000, 64, 2, -1, 'ones'], [1, 3, 4, -1, 'words'], [129, 1, 3, 1, 'words']]) {
  const ids = someIds(n, vocab, seed++, kind)
  const table = random(vocab * dim, seed++)
  const dout = random(n * dim, seed++)
  const t0 = random(vocab * dim, seed++)
  const what = `${n} ${kind} ids, dim ${dim}, vocab ${vocab}, padding ${pad}`
  check('embeddingForward', what, (d) => { const out = nan(d, n * dim); addon.embeddingForward(n, dim, vocab, i32(d, ids), f32(d, table), out); return { out } }, 0)
  check('embeddingBackward', what, (d) => {
    const dtable = f32(d, t0)
    const idb = i32(d, ids), db = f32(d, dout)
    addon.embeddingBackward(n, dim, vocab, idb, db, dtable, pad)
    addon.embeddingBackward(n, dim, vocab, idb, db, dtable, pad)  // twice: accumulates
    return { dtable }
  })
}

// ---- attention -------------------------------------------------------------------------------

const FULL = 1e9
function lengthsMask(seq, lengths) {
  return Int32Array.from(lengths.flatMap((len) => Array.from({ length: seq }, (_, j) => (j < Math.min(len, seq) ? 1 : 0))))
}
const attentionCases = [
  { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0, seed: 0n, offset: 0n },
  { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n },
  { batch: 2, seq: 1, heads: 3, headDim: 24, lengths: [1, 0], p: 0.5, seed: 5n, offset: 17n },
  { batch: 2, seq: 5, heads: 1, headDim: 7, lengths: [3, 5], p: 0.3, seed: 9n, offset: 0n },
]
if (!quick) {
  attentionCases.push({ batch: 16, seq: 128, heads: 12, headDim: 64, lengths: [FULL, 100, 64, 0, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 0], p: 0.1, seed: 42n, offset: 123456n })
  attentionCases.push({ batch: 2, seq: 512, heads: 2, headDim: 64, lengths: [FULL, 300], p: 0, seed: 0n, offset: 0n })
}
for (const c of attentionCases) {
  const hidden = c.heads * c.headDim
  const n = c.batch * c.seq * hidden
  const q = random(n, seed++, -4, 4), k = random(n, seed++, -2, 2), v = random(n, seed++)
  const g = random(n, seed++)
  const init = [random(n, seed++), random(n, seed++), random(n, seed++)]
  const mask = lengthsMask(c.seq, c.lengths)
  const scale = Math.fround(1 / Math.sqrt(c.headDim))
  const probsN = c.batch * c.heads * c.seq * c.seq
  const what = `${c.batch}x${c.seq}x${c.heads}x${c.headDim} p=${c.p}, lengths ${c.lengths.map((l) => (l >= c.seq ? 'full' : l)).join('/')}`
  const forward = (d) => {
    const bufs = { q: f32(d, q), k: f32(d, k), v: f32(d, v), mask: i32(d, mask), probs: nan(d, probsN), out: nan(d, n) }
    addon.attentionForward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, bufs.q, bufs.k, bufs.v, bufs.mask, bufs.probs, bufs.out)
    return bufs
  }
  check('attentionForward', what, (d) => { const f = forward(d); return { probs: f.probs, out: f.out } })
  for (const [which, label] of [[['dq', 'dk', 'dv'], 'dq dk dv'], [['dk'], 'dk only'], [['dq', 'dv'], 'dq dv']]) {
    if (quick && label === 'dq dv') continue
    check('attentionBackward', `${what}, ${label}`, (d) => {
      const f = forward(d)
      const grads = { dq: f32(d, init[0]), dk: f32(d, init[1]), dv: f32(d, init[2]) }
      const pick = (name) => (which.includes(name) ? grads[name] : null)
      addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, f.q, f.k, f.v, f.probs,
        f32(d, g), pick('dq'), pick('dk'), pick('dv'))
      return grads
    })
  }
}

// ---- fused (flash) attention -----------------------------------------------------------------
// flashAttentionForward / Backward (lib: BERTKIT_ATTENTION=fused) CUDA against CPU at seq 1, 37
// (ragged tile), 64, 128 and 512 (8 key tiles), head_dim 32 and 64 (BERT, MiniLM) plus 24 and 72
// (padded to the 32 / 128 kernels), with padded and all-padding batch rows and dropout. Then, on the
// device alone, the fused op against the materialised one (same dropout mask: out and gradients agree).

const flashCases = [
  { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n },
  { batch: 2, seq: 1, heads: 3, headDim: 32, lengths: [1, 0], p: 0.5, seed: 5n, offset: 17n },
  { batch: 2, seq: 130, heads: 2, headDim: 72, lengths: [FULL, 70], p: 0.1, seed: 11n, offset: 3n },
]
if (!quick) {
  for (const headDim of [32, 64]) {
    flashCases.push({ batch: 2, seq: 1, heads: 2, headDim, lengths: [FULL, 1], p: 0.1, seed: 3n, offset: 9n })
    flashCases.push({ batch: 3, seq: 37, heads: 2, headDim, lengths: [FULL, 20, 0], p: 0.1, seed: 4n, offset: 0n })
    flashCases.push({ batch: 4, seq: 64, heads: 3, headDim, lengths: [FULL, 64, 33, 1], p: 0, seed: 0n, offset: 0n })
    flashCases.push({ batch: 4, seq: 128, heads: 4, headDim, lengths: [FULL, 100, 0, 65], p: 0.1, seed: 42n, offset: 123456n })
    flashCases.push({ batch: 2, seq: 512, heads: 2, headDim, lengths: [FULL, 300], p: 0.1, seed: 7n, offset: 1n })
  }
  flashCases.push({ batch: 2, seq: 200, heads: 2, headDim: 128, lengths: [FULL, 150], p: 0.1, seed: 8n, offset: 2n })
}
for (const c of flashCases) {
  const hidden = c.heads * c.headDim
  const n = c.batch * c.seq * hidden
  const q = random(n, seed++, -4, 4), k = random(n, seed++, -2, 2), v = random(n, seed++)
  const g = random(n, seed++)
  const init = [random(n, seed++), random(n, seed++), random(n, seed++)]
  const mask = lengthsMask(c.seq, c.lengths)
  const scale = Math.fround(1 / Math.sqrt(c.headDim))
  const rows = c.batch * c.heads * c.seq
  const what = `${c.batch}x${c.seq}x${c.heads}x${c.headDim} p=${c.p}, lengths ${c.lengths.map((l) => (l >= c.seq ? 'full' : l)).join('/')}`
  const forward = (d) => {
    const bufs = { q: f32(d, q), k: f32(d, k), v: f32(d, v), mask: i32(d, mask), lse: nan(d, rows), out: nan(d, n) }
    addon.flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, bufs.q, bufs.k, bufs.v, bufs.mask, bufs.lse, bufs.out)
    return bufs
  }
  check('flashAttentionForward', what, (d) => { const f = forward(d); return { lse: f.lse, out: f.out } })
  for (const [which, label] of [[['dq', 'dk', 'dv'], 'dq dk dv'], [['dk'], 'dk only'], [['dq', 'dv'], 'dq dv']]) {
    if (label !== 'dq dk dv' && (quick || c.seq > 130)) continue
    check('flashAttentionBackward', `${what}, ${label}`, (d) => {
      const f = forward(d)
      const grads = { dq: f32(d, init[0]), dk: f32(d, init[1]), dv: f32(d, init[2]) }
      const pick = (name) => (which.includes(name) ? grads[name] : null)
      addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, f.q, f.k, f.v, f.mask, f.lse, f.out,
        f32(d, g), pick('dq'), pick('dk'), pick('dv'))
      return grads
    })
  }
}
{
  // On the device alone: fused against materialised, BERT-base attention with dropout.
  const c = { batch: 16, seq: quick ? 37 : 128, heads: 12, headDim: 64, p: 0.1, seed: 99n, offset: 5n }
  const hidden = c.heads * c.headDim
  const n = c.batch * c.seq * hidden
  const q = random(n, seed++, -4, 4), k = random(n, seed++, -2, 2), v = random(n, seed++), g = random(n, seed++)
  const mask = lengthsMask(c.seq, Array.from({ length: c.batch }, (_, b) => (b === 3 ? 0 : 20 + ((b * 37) % c.seq))))
  const scale = Math.fround(1 / Math.sqrt(c.headDim))
  const run = (fused) => exec(DEV, (d) => {
    const x = { q: f32(d, q), k: f32(d, k), v: f32(d, v), mask: i32(d, mask), out: nan(d, n) }
    const grads = { dq: f32(d, new Float32Array(n)), dk: f32(d, new Float32Array(n)), dv: f32(d, new Float32Array(n)) }
    if (fused) {
      const lse = nan(d, c.batch * c.heads * c.seq)
      addon.flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, x.q, x.k, x.v, x.mask, lse, x.out)
      addon.flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, x.q, x.k, x.v, x.mask, lse, x.out,
        f32(d, g), grads.dq, grads.dk, grads.dv)
    } else {
      const probs = nan(d, c.batch * c.heads * c.seq * c.seq)
      addon.attentionForward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, x.q, x.k, x.v, x.mask, probs, x.out)
      addon.attentionBackward(c.batch, c.seq, c.heads, c.headDim, scale, c.p, c.seed, c.offset, x.q, x.k, x.v, probs, f32(d, g),
        grads.dq, grads.dk, grads.dv)
    }
    return { out: x.out, ...grads }
  })
  const what = `${devName}: ${c.batch}x${c.seq}x${c.heads}x${c.headDim} p=${c.p}, fused vs materialized`
  const fused = run(true), mat = run(false)
  if (fused.error || mat.error) record('flashVsMaterialized', what, 'FAIL', `threw: ${fused.error ?? mat.error}`)
  else {
    const parts = []
    let ok = true
    for (const name of Object.keys(mat.read)) {
      const cmp = compareTensor(fused.read[name], mat.read[name], 1e-5)
      ok = ok && cmp.ok
      parts.push(`${name}: ${cmp.text}`)
    }
    record('flashVsMaterialized', what, ok ? 'PASS' : 'FAIL', parts.join('; '))
  }
}

// ---- masked max pooling -----------------------------------------------------------------------

// Values drawn from a few levels (ties in almost every column) or continuous,
// NaN sprinkled in, padded rows of every length including none. The CUDA
// kernel makes the CPU's comparisons in the CPU's order: out and argmax must
// match exactly, and so must dh (one addition per element on both).
for (const [batch, seq, dim, lengths, levels, nanRate] of quick
  ? [[3, 37, 72, [FULL, 20, 0], 0, 0.01], [2, 5, 1, [5, 1], 3, 0]]
  : [[16, 128, 768, [FULL, 100, 64, 0, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 0], 0, 0],
    [16, 128, 768, [FULL, 100, 64, 3, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 2], 4, 0.001],
    [3, 37, 72, [FULL, 20, 0], 0, 0.01], [2, 5, 1, [5, 1], 3, 0], [4, 9, 7, [9, 0, 3, 1], 2, 0.05], [1, 512, 384, [300], 0, 0]]) {
  const r = rng(seed++)
  const h = random(batch * seq * dim, seed++)
  for (let i = 0; i < h.length; i++) {
    if (levels) h[i] = Math.floor(r() * levels) - 1
    if (r() < nanRate) h[i] = NaN
  }
  const mask = lengthsMask(seq, lengths)
  const dout = random(batch * dim, seed++), dh0 = random(batch * seq * dim, seed++)
  const what = `[${batch}, ${seq}, ${dim}]${levels ? ` ${levels} levels (ties)` : ''}${nanRate ? ` NaN ${nanRate}` : ''}${lengths.includes(0) ? ', empty rows' : ''}`
  const forward = (d) => {
    const out = nan(d, batch * dim), argmax = i32(d, new Int32Array(batch * dim).fill(-7))
    addon.maskedMaxPoolForward(batch, seq, dim, f32(d, h), i32(d, mask), out, argmax)
    return { out, argmax }
  }
  check('maskedMaxPoolForward', what, forward, 0)
  check('maskedMaxPoolBackward', what, (d) => {
    const { argmax } = forward(d)
    const dh = f32(d, dh0), db = f32(d, dout)
    addon.maskedMaxPoolBackward(batch, seq, dim, argmax, db, dh)
    addon.maskedMaxPoolBackward(batch, seq, dim, argmax, db, dh)  // twice: accumulates
    addon.maskedMaxPoolBackward(batch, seq, dim, argmax, db, null)  // null: nothing
    return { dh }
  }, 0)
}

// ---- cross-entropy ------------------------------------------------------------------------------

const IGNORE = -100
const ceCases = [
  { what: '7 x 5, ignored rows', rows: 7, classes: 5, labels: [0, 4, IGNORE, 2, 1, IGNORE, 3], weights: null, ignore: IGNORE, shift: 0 },
  { what: '7 x 5, class weights', rows: 7, classes: 5, labels: [0, 4, IGNORE, 2, 1, 4, 3], weights: [0.5, 2, 1, 0.25, 3], ignore: IGNORE, shift: 0 },
  { what: '16 x 2, logits + 1e4', rows: 16, classes: 2, labels: [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0], weights: null, ignore: IGNORE, shift: 1e4 },
  { what: 'every row ignored (NaN)', rows: 4, classes: 3, labels: [IGNORE, IGNORE, IGNORE, IGNORE], weights: null, ignore: IGNORE, shift: 0 },
  { what: 'ignore_index 2 inside the classes', rows: 6, classes: 3, labels: [2, 0, 1, 2, 1, 0], weights: [1, 3, 5], ignore: 2, shift: 0 },
  { what: '64 x 1000, logits - 50', rows: 64, classes: 1000, labels: Array.from({ length: 64 }, (_, i) => (i * 37) % 1000), weights: null, ignore: IGNORE, shift: -50 },
  { what: '3000 x 3 (more rows than one block)', rows: 3000, classes: 3, labels: Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? IGNORE : i % 3)), weights: [0.2, 1, 4], ignore: IGNORE, shift: 0 },
]
for (const c of ceCases) {
  const logits = random(c.rows * c.classes, seed++, -4, 4).map((x) => x + c.shift)
  const d0 = random(c.rows * c.classes, seed++)
  check('crossEntropyForward', c.what, (d) => {
    const loss = nan(d, 1)
    addon.crossEntropyForward(c.rows, c.classes, f32(d, logits), i32(d, c.labels), c.ignore, c.weights ? f32(d, c.weights) : null, loss)
    return { loss }
  })
  check('crossEntropyBackward', c.what, (d) => {
    const dlogits = f32(d, d0)
    addon.crossEntropyBackward(c.rows, c.classes, f32(d, logits), i32(d, c.labels), c.ignore, c.weights ? f32(d, c.weights) : null, f32(d, [0.7]), dlogits)
    return { dlogits }
  })
}

// ---- adamw, clip coefficient ----------------------------------------------------------------------

const HF = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.01 }
for (const run of [
  { what: 'lr 1e-3, wd 0.01', h: HF, scale: null, first: 1 },
  { what: 'grad scale 0.37', h: HF, scale: 0.37, first: 1 },
  { what: 'beta1 0.3 (other lerp branch)', h: { ...HF, beta1: 0.3, beta2: 0.9 }, scale: null, first: 1 },
  { what: 'late steps, grad scale 2', h: { ...HF, lr: 5e-4, wd: 0.1 }, scale: 2, first: 996 },
]) {
  const n = quick ? 72 * 37 : 1 << 20
  const p0 = random(n, seed++).map((p, i) => (i % 2 ? p * run.h.lr : p))
  const late = run.first > 1
  const m0 = late ? random(n, seed++, -0.01, 0.01) : new Float32Array(n)
  const v0 = late ? random(n, seed++, 0, 1e-4) : new Float32Array(n)
  const grads = [0, 1, 2].map(() => random(n, seed++).map((g, i) => (i % 7 === 0 ? g * 1e-6 : g)))
  check('adamwStep', `${n} params, 3 steps, ${run.what}`, (d) => {
    const param = f32(d, p0), m = f32(d, m0), v = f32(d, v0)
    const scale = run.scale === null ? null : f32(d, [run.scale])
    grads.forEach((g, s) => addon.adamwStep(n, run.h.lr, run.h.beta1, run.h.beta2, run.h.eps, run.h.wd, run.first + s, scale, f32(d, g), param, m, v))
    return { param, expAvg: m, expAvgSq: v }
  })
}
check('clipCoefficient', 'sum_sq 4, 0.25, 0, 1e30, NaN; max_norm 1 and 0.5', (d) => {
  const outs = {}
  for (const [i, s] of [4, 0.25, 0, 1e30, NaN].entries()) {
    for (const maxNorm of [1, 0.5]) {
      const coef = nan(d, 1)
      addon.clipCoefficient(f32(d, [s]), maxNorm, coef)
      outs[`s${i}_m${maxNorm}`] = coef
    }
  }
  return outs
}, 0)

// ---- multi-tensor adamw, global norm, found_inf ------------------------------------------------
// One launch over a device table of tensors. Each element runs adamwStep's
// arithmetic, so the report should read "bit-exact" for every output, and the
// per-tensor adamwStep outputs (single*) equal the multi-tensor ones.

{
  const big = quick ? 20011 : (1 << 20) + 3
  const groups = [
    { h: HF, sizes: [0, 1, 7, 1000, 8193, big] },
    { h: { lr: 5e-4, beta1: 0.3, beta2: 0.9, eps: 1e-8, wd: 0 }, sizes: [big, 8192, 3, 0] },
  ]
  const init = groups.map((g) => g.sizes.map((n) => ({ p: random(n, seed++), m: random(n, seed++, -0.01, 0.01), v: random(n, seed++, 0, 1e-4) })))
  const grads = groups.map((g) => [0, 1, 2].map(() => g.sizes.map((n) => random(n, seed++).map((x, i) => (i % 7 === 0 ? x * 1e-6 : x)))))
  // Tensors of one call at different step numbers (as after setState or a late unfreeze).
  const firstSteps = groups.map((g) => g.sizes.map((_, i) => 1 + 3 * i))
  check('multiTensorAdamw', `2 groups, sizes ${groups.map((g) => g.sizes.join('/')).join(' + ')}, 3 steps, grad scale`, (d) => {
    const outs = {}
    const scale = f32(d, [0.37])
    for (const [gi, g] of groups.entries()) {
      const t = init[gi].map((x) => ({ p: f32(d, x.p), m: f32(d, x.m), v: f32(d, x.v) }))
      for (let s = 0; s < 3; s++) {
        addon.multiTensorAdamw(g.sizes.length, g.sizes, t.map((x) => x.p), grads[gi][s].map((x) => f32(d, x)), t.map((x) => x.m), t.map((x) => x.v),
          g.h.lr, g.h.beta1, g.h.beta2, g.h.eps, g.h.wd, firstSteps[gi].map((f) => f + s), scale, null)
      }
      t.forEach((x, i) => { if (g.sizes[i] > 0) Object.assign(outs, { [`g${gi}p${i}`]: x.p, [`g${gi}m${i}`]: x.m, [`g${gi}v${i}`]: x.v }) })
      // The same steps through adamwStep, for the biggest tensor of the group.
      const i = g.sizes.indexOf(big)
      const p = f32(d, init[gi][i].p), m = f32(d, init[gi][i].m), v = f32(d, init[gi][i].v)
      for (let s = 0; s < 3; s++) addon.adamwStep(big, g.h.lr, g.h.beta1, g.h.beta2, g.h.eps, g.h.wd, firstSteps[gi][i] + s, scale, f32(d, grads[gi][s][i]), p, m, v)
      Object.assign(outs, { [`single${gi}p`]: p, [`single${gi}m`]: m, [`single${gi}v`]: v })
    }
    return outs
  })
  check('multiTensorAdamw', 'foundInf = 1 (from an inf gradient) leaves all untouched', (d) => {
    const g = groups[0]
    const t = init[0].map((x) => ({ p: f32(d, x.p), m: f32(d, x.m), v: f32(d, x.v) }))
    const gr = grads[0][0].map((x, i) => (i === 5 ? x.map((y, j) => (j === 777 ? Infinity : y)) : x)).map((x) => f32(d, x))
    const sumSq = f32(d, [0]), flag = nan(d, 1)
    addon.multiTensorSumSquares(g.sizes.length, g.sizes, gr, sumSq)
    addon.nonfiniteFlag(sumSq, flag)
    addon.multiTensorAdamw(g.sizes.length, g.sizes, t.map((x) => x.p), gr, t.map((x) => x.m), t.map((x) => x.v), 1e-3, 0.9, 0.999, 1e-8, 0.01, g.sizes.map(() => 1), null, flag)
    return { flag, bigP: t[5].p, bigM: t[5].m, bigV: t[5].v, smallP: t[2].p }
  }, 0)
  const normSizes = [0, 1, 7, 1000, 8192, 8193, big, 3 * 8192 + 5]
  const normValues = normSizes.map((n) => random(n, seed++, -3, 3))
  check('multiTensorSumSquares', `sizes ${normSizes.join('/')}, into 0.25`, (d) => {
    const out = f32(d, [0.25])
    addon.multiTensorSumSquares(normSizes.length, normSizes, normValues.map((x) => f32(d, x)), out)
    const none = f32(d, [1.5])
    addon.multiTensorSumSquares(0, [], [], none)
    return { out, none }
  })
  check('nonfiniteFlag', 'inf, -inf, NaN, 3e38, 0', (d) => {
    const outs = {}
    for (const [i, x] of [Infinity, -Infinity, NaN, 3e38, 0].entries()) {
      outs[`x${i}`] = nan(d, 1)
      addon.nonfiniteFlag(f32(d, [x]), outs[`x${i}`])
    }
    return outs
  }, 0)
}

// ---- gemmMixed, TF32 -------------------------------------------------------------------------------

/** Random half bits of moderate magnitude (no inf / NaN): sign, exponent, mantissa. */
function halfBits(n, dtype, s) {
  const r = rng(s)
  const out = new Uint16Array(n)
  for (let i = 0; i < n; i++) {
    const sign = r() < 0.5 ? 0x8000 : 0
    out[i] = dtype === F16 ? sign | ((10 + Math.floor(r() * 7)) << 10) | Math.floor(r() * 1024)
      : sign | ((122 + Math.floor(r() * 7)) << 7) | Math.floor(r() * 128)
  }
  return out
}
{
  const shapes = [  // m, n, k, transA, transB, batch, gapA, gapB, gapC, beta
    [37, 45, 29, false, false, 1, 0, 0, 0, 0], [37, 45, 29, true, false, 1, 0, 0, 0, 0.5],
    [13, 29, 23, false, true, 4, 5, 3, 7, 0], [13, 29, 23, true, true, 3, 0, 0, 0, -1],
    [5, 7, 0, false, false, 2, 0, 0, 3, 0.5],
  ]
  if (!quick) shapes.push([512, 3072, 768, false, true, 1, 0, 0, 0, 0], [512, 768, 3072, false, false, 1, 0, 0, 0, 1], [768, 3072, 512, true, false, 1, 0, 0, 0, 1])
  for (const [dtype, name] of [[F16, 'float16'], [BF16, 'bfloat16']]) {
    for (const [m, n, k, ta, tb, batch, gapA, gapB, gapC, beta] of shapes) {
      const sa = m * k + gapA, sb = k * n + gapB, sc = m * n + gapC
      const ext = (s, size) => Math.max(1, (batch - 1) * s + size)
      const A = halfBits(ext(sa, m * k), dtype, seed++), B = halfBits(ext(sb, k * n), dtype, seed++)
      const C0 = random(ext(sc, m * n), seed++)
      if (beta === 0) C0.fill(NaN)
      check('gemmMixed', `${name} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k} beta=${beta}${batch > 1 ? ` batch ${batch}` : ''}`, (d) => {
        const c = f32(d, C0)
        addon.gemmMixed(ta, tb, m, n, k, 1.25, u16(d, dtype, A), u16(d, dtype, B), beta, c, batch, sa, sb, sc)
        return { c }
      }, 1e-2)
    }
  }
}
if (!rehearsal) {
  // TF32 on: the same product rounds its inputs to 10-bit mantissas (error ~1e-3);
  // off again: fp32 within 1e-5.
  const [m, n, k] = [256, 384, 512]
  const A = random(m * k, seed++), B = random(k * n, seed++)
  const product = (d) => { const c = nan(d, m * n); addon.gemm(false, false, m, n, k, 1, f32(d, A), f32(d, B), 0, c, 1, 0, 0, 0); return { c } }
  const cpu = exec(CPU, product)
  for (const allow of [true, false]) {
    addon.setAllowTf32(1, allow)
    const dev = exec(1, product)
    const desc = addon.probeDevice(1).description
    if (dev.error || cpu.error) {
      record('setAllowTf32', String(allow), 'FAIL', dev.error || cpu.error)
      continue
    }
    const cmp = compareTensor(dev.read.c, cpu.read.c, allow ? 1e-2 : 1e-5)
    const describes = allow ? /TF32 allowed/.test(desc) : /without TF32/.test(desc)
    const differs = !allow || cmp.rel > 1e-6  // TF32 must change the result
    record('setAllowTf32', `${allow} then gemm ${m}x${n}x${k}`, cmp.ok && describes && differs ? 'PASS' : 'FAIL',
      `${cmp.text}; description ${describes ? 'says so' : 'does not say so'}`)
  }
  addon.setAllowTf32(1, false)
}

// ---- timings at BERT-base shapes ---------------------------------------------------------------------

// Timings run on the GPU. --rehearse-timing runs them on the CPU at batch 1
// and one iteration, to exercise this code where there is no GPU.
const timingDevice = rehearsal ? CPU : 1
const timeIt = !quick && (!rehearsal || args.includes('--rehearse-timing'))

/** Microseconds per call of the function setup() returns, or the Error that stopped it. */
function time(setup, iters = 20) {
  try {
    const go = setup()
    const n = rehearsal ? 1 : iters
    for (let i = 0; i < Math.min(3, n); i++) go()
    addon.synchronize(timingDevice)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) go()
    addon.synchronize(timingDevice)
    return Number(process.hrtime.bigint() - t0) / 1e3 / n
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e))
  } finally {
    freeLive()
  }
}
function report(label, us, flop = 0, bytes = 0) {
  if (us instanceof Error) return record('time', label, 'FAIL', `threw: ${us.message}`)
  const extra = [flop ? `${(flop / us / 1e6).toFixed(1)} TFLOP/s` : '', bytes ? `${(bytes / us / 1e3).toFixed(0)} GB/s` : ''].filter(Boolean).join(', ')
  console.log(`TIME  ${label}: ${us.toFixed(1)} us${extra ? ` (${extra})` : ''}`)
  results.push({ op: 'time', case: label, status: 'INFO', detail: `${us.toFixed(1)} us${extra ? `, ${extra}` : ''}` })
}
if (timeIt) {
  const B = rehearsal ? 1 : 16, S = 128, H = 12, D = 64, HID = 768, FF = 3072, T = B * S
  const dev = timingDevice
  const filled = (n, v) => { const b = make(dev, F32, n); addon.fill(b, n, v); return b }
  const devRandom = (n, s) => f32(dev, random(n, s))
  const gemmShapes = [[T, FF, HID, false, true, 'FFN up, x Wt'], [T, HID, FF, false, true, 'FFN down, x Wt'],
    [T, HID, FF, false, false, 'dX = dY W'], [FF, HID, T, true, false, 'dW = dYt X'], [T, 3 * HID, HID, false, true, 'QKV']]
  for (const [m, n, k, ta, tb, what] of gemmShapes) {
    const flop = 2 * m * n * k
    for (const tf32 of [false, true]) {
      addon.setAllowTf32(dev, tf32)
      report(`gemm fp32${tf32 ? ' tf32' : ''} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k} (${what})`, time(() => {
        const a = devRandom(m * k, 1), b = devRandom(k * n, 2), c = make(dev, F32, m * n)
        return () => addon.gemm(ta, tb, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0)
      }), flop)
    }
    addon.setAllowTf32(dev, false)
    for (const [dtype, name] of [[F16, 'fp16'], [BF16, 'bf16']]) {
      report(`gemmMixed ${name} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k} (${what})`, time(() => {
        const a = u16(dev, dtype, halfBits(m * k, dtype, 3)), b = u16(dev, dtype, halfBits(k * n, dtype, 4)), c = make(dev, F32, m * n)
        return () => addon.gemmMixed(ta, tb, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0)
      }), flop)
    }
  }
  {
    const n = T * HID
    const mask = lengthsMask(S, Array.from({ length: B }, (_, i) => 40 + ((i * 37) % 89)))
    const scale = 1 / Math.sqrt(D)
    const attFlop = 4 * B * H * S * S * D
    const setupAttention = () => {
      const q = devRandom(n, 5), k = devRandom(n, 6), v = devRandom(n, 7), m = i32(dev, mask)
      const probs = make(dev, F32, B * H * S * S), out = make(dev, F32, n)
      return { q, k, v, m, probs, out }
    }
    report(`attentionForward ${B}x${S}x${H}x${D} p=0.1`, time(() => {
      const a = setupAttention()
      return () => addon.attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out)
    }), attFlop)
    report(`attentionBackward ${B}x${S}x${H}x${D} p=0.1 dq dk dv`, time(() => {
      const a = setupAttention()
      addon.attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out)
      const g = devRandom(n, 8), dq = filled(n, 0), dk = filled(n, 0), dv = filled(n, 0)
      return () => addon.attentionBackward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.probs, g, dq, dk, dv)
    }), 2 * attFlop)
    // The fused op at the same shape (the decision to make it CUDA's default rests on these lines).
    const setupFlash = () => {
      const q = devRandom(n, 5), k = devRandom(n, 6), v = devRandom(n, 7), m = i32(dev, mask)
      const lse = make(dev, F32, B * H * S), out = make(dev, F32, n)
      return { q, k, v, m, lse, out }
    }
    report(`flashAttentionForward ${B}x${S}x${H}x${D} p=0.1`, time(() => {
      const a = setupFlash()
      return () => addon.flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out)
    }), attFlop)
    report(`flashAttentionBackward ${B}x${S}x${H}x${D} p=0.1 dq dk dv`, time(() => {
      const a = setupFlash()
      addon.flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out)
      const g = devRandom(n, 8), dq = filled(n, 0), dk = filled(n, 0), dv = filled(n, 0)
      return () => addon.flashAttentionBackward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out, g, dq, dk, dv)
    }), 2.5 * attFlop)
    {
      // Full-length rows (no key tile skipped) and seq 512, fused vs materialised side by side.
      const full = lengthsMask(S, Array.from({ length: B }, () => S))
      for (const [label, fn] of [
        ['attentionForward', (a) => () => addon.attentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.probs, a.out)],
        ['flashAttentionForward', (a) => () => addon.flashAttentionForward(B, S, H, D, scale, 0.1, 1n, 0n, a.q, a.k, a.v, a.m, a.lse, a.out)],
      ]) {
        report(`${label} ${B}x${S}x${H}x${D} p=0.1 full length`, time(() => {
          const a = { ...setupFlash(), probs: make(dev, F32, B * H * S * S) }
          a.m = i32(dev, full)
          return fn(a)
        }), attFlop)
      }
      const B2 = rehearsal ? 1 : 4, S2 = 512, n2 = B2 * S2 * HID
      const mask2 = lengthsMask(S2, Array.from({ length: B2 }, () => S2))
      for (const fused of [false, true]) {
        report(`${fused ? 'flashAttention' : 'attention'} forward + backward ${B2}x${S2}x${H}x${D} p=0.1`, time(() => {
          const q = devRandom(n2, 5), k = devRandom(n2, 6), v = devRandom(n2, 7), m = i32(dev, mask2), out = make(dev, F32, n2)
          const saved = make(dev, F32, fused ? B2 * H * S2 : B2 * H * S2 * S2)
          const g = devRandom(n2, 8), dq = filled(n2, 0), dk = filled(n2, 0), dv = filled(n2, 0)
          return fused
            ? () => {
              addon.flashAttentionForward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out)
              addon.flashAttentionBackward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out, g, dq, dk, dv)
            }
            : () => {
              addon.attentionForward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, m, saved, out)
              addon.attentionBackward(B2, S2, H, D, scale, 0.1, 1n, 0n, q, k, v, saved, g, dq, dk, dv)
            }
        }, 10), 3 * 4 * B2 * H * S2 * S2 * D)
      }
    }
  }
  {
    const n = T * HID
    report(`layernormForward ${T}x${HID} + residual`, time(() => {
      const x = devRandom(n, 9), r = devRandom(n, 10), g = filled(HID, 1), b = filled(HID, 0)
      const y = make(dev, F32, n), s = make(dev, F32, n), mean = make(dev, F32, T), rstd = make(dev, F32, T)
      return () => addon.layernormForward(T, HID, 1e-12, x, r, g, b, y, s, mean, rstd)
    }), 0, 4 * n * 4)
    report(`layernormBackward ${T}x${HID} dx dgamma dbeta`, time(() => {
      const x = devRandom(n, 11), g = filled(HID, 1), b = filled(HID, 0)
      const y = make(dev, F32, n), mean = make(dev, F32, T), rstd = make(dev, F32, T)
      addon.layernormForward(T, HID, 1e-12, x, null, g, b, y, null, mean, rstd)
      const dy = devRandom(n, 12), dx = filled(n, 0), dg = filled(HID, 0), db = filled(HID, 0)
      return () => addon.layernormBackward(T, HID, x, g, mean, rstd, dy, dx, dg, db)
    }), 0, 5 * n * 4)
  }
  {
    const n = T * FF
    report(`activationForward gelu ${T}x${FF}`, time(() => { const x = devRandom(n, 13), y = make(dev, F32, n); return () => addon.activationForward(0, n, x, y) }), 0, 2 * n * 4)
    report(`activationBackward gelu ${T}x${FF}`, time(() => { const x = devRandom(n, 14), dy = devRandom(n, 15), dx = filled(n, 0); return () => addon.activationBackward(0, n, x, dy, dx) }), 0, 4 * n * 4)
    report(`sumRows ${T}x${FF} (bias grad)`, time(() => { const x = devRandom(n, 16), o = filled(FF, 0); return () => addon.sumRows(T, FF, x, o) }), 0, n * 4)
    report(`cast float32 -> bfloat16 ${T}x${FF}`, time(() => { const x = devRandom(n, 17), y = make(dev, BF16, n); return () => addon.cast(n, x, y) }), 0, 6 * n)
    report(`dropoutForward p=0.1 ${T}x${HID}`, time(() => { const x = devRandom(T * HID, 18), y = make(dev, F32, T * HID); return () => addon.dropoutForward(T * HID, 0.1, 7n, 0n, x, y) }), 0, 8 * T * HID)
  }
  for (const [vocab, pad, kind] of [[28996, 0, 'words'], [2, -1, 'types'], [512, -1, 'positions']]) {
    const ids = someIds(T, vocab, 19, kind)
    report(`embeddingForward ${T} ${kind}, vocab ${vocab}`, time(() => {
      const idb = i32(dev, ids), table = devRandom(vocab * HID, 20), out = make(dev, F32, T * HID)
      return () => addon.embeddingForward(T, HID, vocab, idb, table, out)
    }))
    report(`embeddingBackward ${T} ${kind}, vocab ${vocab}, padding ${pad}`, time(() => {
      const idb = i32(dev, ids), dout = devRandom(T * HID, 21), dtable = filled(vocab * HID, 0)
      return () => addon.embeddingBackward(T, HID, vocab, idb, dout, dtable, pad)
    }))
  }
  report(`maskedMaxPool forward + backward ${B}x${S}x${HID}`, time(() => {
    const h = devRandom(T * HID, 23), m = i32(dev, lengthsMask(S, Array.from({ length: B }, (_, i) => 40 + ((i * 37) % 89))))
    const out = make(dev, F32, B * HID), argmax = make(dev, I32, B * HID), dout = devRandom(B * HID, 24), dh = filled(T * HID, 0)
    return () => { addon.maskedMaxPoolForward(B, S, HID, h, m, out, argmax); addon.maskedMaxPoolBackward(B, S, HID, argmax, dout, dh) }
  }), 0, 4 * (T * HID + B * S + 4 * B * HID))
  report(`crossEntropy forward + backward ${B}x2`, time(() => {
    const logits = devRandom(B * 2, 22), labels = i32(dev, Array.from({ length: B }, (_, i) => i % 2)), loss = make(dev, F32, 1)
    const dloss = f32(dev, [1]), dl = filled(B * 2, 0)
    return () => { addon.crossEntropyForward(B, 2, logits, labels, -100, null, loss); addon.crossEntropyBackward(B, 2, logits, labels, -100, null, dloss, dl) }
  }))
  {
    const n = rehearsal ? 1_000_000 : 108_310_272  // bert-base-cased with a 2-label head, all in one tensor
    report(`sumSquares ${n} (global grad norm)`, time(() => { const x = filled(n, 0.001), o = filled(1, 0); return () => addon.sumSquares(n, x, o) }, 10), 0, 4 * n)
    report(`adamwStep ${n} params with grad scale`, time(() => {
      const g = filled(n, 0.001), p = filled(n, 0.5), m = filled(n, 0), v = filled(n, 0), s = f32(dev, [0.5])
      let step = 1
      return () => addon.adamwStep(n, 2e-5, 0.9, 0.999, 1e-8, 0.01, step++, s, g, p, m, v)
    }, 10), 0, 7 * 4 * n)
  }
  {
    // The optimizer step of bert-base-cased as the Trainer issues it: 201 tensors
    // in two groups (decay / no decay), clipping included; per tensor (201
    // sumSquares + 201 adamwStep launches) against multi-tensor (1 norm + 2 steps).
    const shapes = bertBaseShapes(rehearsal ? 2 : 12, rehearsal ? 1000 : 28996)
    const n = shapes.reduce((a, x) => a + x.n, 0)
    // Made inside each setup: time() frees what was made when it returns.
    const makeTensors = () => shapes.map((x, i) => ({ ...x, g: filled(x.n, 0.001 * (1 + (i % 5))), p: filled(x.n, 0.5), m: filled(x.n, 0), v: filled(x.n, 0) }))
    let step = 1
    report(`optimizer step, ${shapes.length} tensors (${n} params), per tensor`, time(() => {
      const tensors = makeTensors(), sumSq = filled(1, 0), coef = filled(1, 0)
      return () => {
        addon.fill(sumSq, 1, 0)
        for (const x of tensors) addon.sumSquares(x.n, x.g, sumSq)
        addon.clipCoefficient(sumSq, 1, coef)
        for (const x of tensors) addon.adamwStep(x.n, 2e-5, 0.9, 0.999, 1e-8, x.decay ? 0.01 : 0, step, coef, x.g, x.p, x.m, x.v)
        step++
      }
    }, 10), 0, 8 * 4 * n)
    report(`optimizer step, ${shapes.length} tensors (${n} params), multi-tensor`, time(() => {
      const tensors = makeTensors(), sumSq = filled(1, 0), coef = filled(1, 0)
      const grouped = [tensors.filter((x) => x.decay), tensors.filter((x) => !x.decay)]
      return () => {
        addon.fill(sumSq, 1, 0)
        addon.multiTensorSumSquares(tensors.length, tensors.map((x) => x.n), tensors.map((x) => x.g), sumSq)
        addon.clipCoefficient(sumSq, 1, coef)
        for (const [gi, g] of grouped.entries()) {
          addon.multiTensorAdamw(g.length, g.map((x) => x.n), g.map((x) => x.p), g.map((x) => x.g), g.map((x) => x.m), g.map((x) => x.v),
            2e-5, 0.9, 0.999, 1e-8, gi === 0 ? 0.01 : 0, g.map(() => step), coef, null)
        }
        step++
      }
    }, 10), 0, 8 * 4 * n)
  }
}

/** bert-base-cased's 201 parameters in named_parameters() order, with HF's decay / no-decay split. */
function bertBaseShapes(layers, vocab) {
  const H = 768, FF = 3072
  const out = []
  const add = (name, n) => out.push({ name, n, decay: !/bias$|LayerNorm\.weight$/.test(name) })
  add('embeddings.word_embeddings.weight', vocab * H)
  add('embeddings.position_embeddings.weight', 512 * H)
  add('embeddings.token_type_embeddings.weight', 2 * H)
  add('embeddings.LayerNorm.weight', H)
  add('embeddings.LayerNorm.bias', H)
  for (let l = 0; l < layers; l++) {
    for (const [name, w, b] of [['attention.self.query', H * H, H], ['attention.self.key', H * H, H], ['attention.self.value', H * H, H],
      ['attention.output.dense', H * H, H], ['attention.output.LayerNorm', H, H], ['intermediate.dense', FF * H, FF],
      ['output.dense', H * FF, H], ['output.LayerNorm', H, H]]) {
      add(`encoder.layer.${l}.${name}.weight`, w)
      add(`encoder.layer.${l}.${name}.bias`, b)
    }
  }
  add('pooler.dense.weight', H * H)
  add('pooler.dense.bias', H)
  add('classifier.weight', 2 * H)
  add('classifier.bias', 2)
  return out
}

// ---- summary -------------------------------------------------------------------------------------

const stats = addon.memoryStats()
record('memory', 'no live buffers left', stats.liveBuffers === 0 ? 'PASS' : 'FAIL', `liveBuffers=${stats.liveBuffers}`)
const count = (s) => results.filter((r) => r.status === s).length
const line = `cuda-ops-check${rehearsal ? ' (REHEARSAL on cpu)' : ''}: ${count('PASS')} passed, ${count('FAIL')} failed in ${((Date.now() - started) / 1000).toFixed(1)}s`
if (jsonPath) {
  fs.writeFileSync(jsonPath, JSON.stringify({ rehearsal, device: rehearsal ? probe.reason : probe.description, results }, null, 1))
}
console.log(line)
process.exit(count('FAIL') > 0 ? 1 : rehearsal && !allowRehearsal ? 2 : 0)
