#!/usr/bin/env node
// The CUDA backend against the CPU backend and a float64 reference, on random
// inputs, for gemm, the elementwise ops, activations and dropout; plus the
// error paths a GPU run must prove (out of memory) and GEMM timings.
// scripts/cuda-ops-check.js covers the other ops (and per-op timings).
//
//   BERTKIT_ADDON_PATH=build-gpu/Release/cuda/bertkit_cuda.node node scripts/cuda-vs-cpu.js [--quick] [--json FILE]
//
// Outputs an op must overwrite start as NaN, so an element a kernel forgets to
// write shows up. Plain JavaScript with no dependencies, so it runs on the GPU
// machine with nothing but node and the addon.
//
// Without a usable GPU it rehearses: every case runs on the CPU backend in
// place of CUDA, which exercises the script (not CUDA), says so, and exits 2
// unless --allow-rehearsal is given.
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
  console.error('cuda-vs-cpu: set BERTKIT_ADDON_PATH to the CUDA variant (…/Release/cuda/bertkit_cuda.node)')
  process.exit(1)
}
const addon = require(path.resolve(addonPath))
const CPU = 0
const F32 = 0
const probe = addon.probeDevice(1)
const rehearsal = !probe.ok
const DEV = rehearsal ? CPU : 1
const devName = rehearsal ? 'cpu (rehearsal)' : 'cuda'

console.log(`addon: ${addonPath} (cudaCompiled=${addon.cudaCompiled})`)
console.log(`cpu:   ${addon.probeDevice(CPU).description}`)
console.log(rehearsal ? `REHEARSAL: no usable GPU (${probe.reason}); CUDA cases run on the CPU` : `cuda:  ${probe.description}`)

// ---- helpers -------------------------------------------------------------------

function rng(seed) {  // mulberry32: small, seeded, reproducible
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
function buf(dev, values) {
  const b = new addon.NativeBuffer(dev, F32, values.length)
  if (values.length) b.write(values instanceof Float32Array ? values : Float32Array.from(values))
  live.push(b)
  return b
}
const poisoned = (dev, n) => buf(dev, new Float32Array(n).fill(NaN))
function freeLive() {
  for (const b of live) if (!b.freed) b.free()
  live = []
}

/** Runs fn(dev) -> Float32Array on `dev`; an Error becomes { error }. */
function on(dev, fn) {
  try {
    return { out: fn(dev) }
  } catch (e) {
    return { error: e.message }
  } finally {
    freeLive()
  }
}

const results = []
function record(op, what, ok, detail, skipped = false) {
  results.push({ op, case: what, status: skipped ? 'SKIP' : ok ? 'PASS' : 'FAIL', detail })
  console.log(`${skipped ? 'SKIP' : ok ? 'PASS' : 'FAIL'}  ${op.padEnd(20)} ${what.padEnd(44)} ${detail}`)
}

/**
 * Worst |got - want| / (atol + rtol * scale_i) (scale defaults to |want|).
 * NaN where a number is expected (an unwritten element) is a failure.
 */
function closeness(got, want, rtol, atol, scale) {
  let worst = 0, at = -1, maxAbs = 0
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i]
    if (Number.isNaN(w) && Number.isNaN(g)) continue
    const err = Math.abs(g - w)
    if (!(err <= Infinity)) return { ok: false, text: `[${i}] got ${g}, want ${w}` }
    maxAbs = Math.max(maxAbs, err)
    const ratio = err / (atol + rtol * (scale ? scale[i] : Math.abs(w)))
    if (ratio > worst) { worst = ratio; at = i }
  }
  const text = at < 0 ? `exact (${want.length} elements)` :
    `max|err| ${maxAbs.toExponential(2)}, worst/tol ${worst.toFixed(3)} at [${at}] (got ${got[at]}, want ${want[at]})`
  return { ok: worst <= 1 && got.length === want.length, text }
}

function bitsEqual(got, want) {
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i]) && !(got[i] === 0 && want[i] === 0)) {
      return { ok: false, text: `[${i}] got ${got[i]}, want ${want[i]}` }
    }
  }
  return { ok: got.length === want.length, text: `bit-exact (${want.length} elements)` }
}

/** Checks the device result against the float64 reference and against the CPU backend. */
function compareBoth(op, what, run, want, opts) {
  const dev = on(DEV, run)
  if (dev.error) return record(op, what, false, `${devName} threw: ${dev.error}`)
  const ref = opts.exact ? bitsEqual(dev.out, want) : closeness(dev.out, want, opts.rtol, opts.atol, opts.scale)
  const cpu = on(CPU, run)
  let vsCpu = 'cpu: ' + (cpu.error ? `unavailable (${cpu.error.split('\n')[0]})` : '')
  let okCpu = true
  if (!cpu.error) {
    const c = opts.exact ? bitsEqual(dev.out, cpu.out) : closeness(dev.out, cpu.out, opts.rtol, opts.atol, opts.scale)
    okCpu = c.ok
    vsCpu += c.text
  }
  record(op, what, ref.ok && okCpu, `ref: ${ref.text}; ${vsCpu}`)
}

// ---- gemm ------------------------------------------------------------------------

function gemmRef(c, A, B, C0) {
  const { sa, sb, sc } = c
  const want = Float64Array.from(C0)
  const scale = new Float64Array(C0.length)
  for (let bi = 0; bi < c.batch; bi++) {
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let acc = 0, abs = 0
        for (let q = 0; q < c.k; q++) {
          const a = c.ta ? A[bi * sa + q * c.m + i] : A[bi * sa + i * c.k + q]
          const b = c.tb ? B[bi * sb + j * c.k + q] : B[bi * sb + q * c.n + j]
          acc += a * b
          abs += Math.abs(a * b)
        }
        const at = bi * sc + i * c.n + j
        want[at] = c.alpha * acc + (c.beta === 0 ? 0 : c.beta * C0[at])
        scale[at] = Math.abs(c.alpha) * abs + (c.beta === 0 ? 0 : Math.abs(c.beta * C0[at]))
      }
    }
  }
  return { want, scale }
}

function gemmInputs(c, seed) {
  const ext = (stride, size) => Math.max(1, (c.batch - 1) * stride + size)
  const A = random(ext(c.sa, c.m * c.k), seed)
  const B = random(ext(c.sb, c.k * c.n), seed + 1)
  const C0 = random(ext(c.sc, c.m * c.n), seed + 2)
  // beta == 0: C is write-only, so it starts as NaN everywhere in the matrices;
  // gaps between batch items hold a sentinel that must survive.
  for (let x = 0; x < C0.length; x++) {
    const inMatrix = x % c.sc < c.m * c.n
    if (!inMatrix) C0[x] = 7.5
    else if (c.beta === 0) C0[x] = NaN
  }
  return { A, B, C0 }
}

function runGemm(c, A, B, C0) {
  return (dev) => {
    const cb = buf(dev, C0)
    addon.gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, buf(dev, A), buf(dev, B), c.beta, cb, c.batch, c.sa, c.sb, c.sc)
    return cb.read()
  }
}

function gemmCase(m, n, k, ta, tb, extra = {}) {
  const c = { m, n, k, ta, tb, alpha: 1, beta: 0, batch: 1, gapA: 0, gapB: 0, gapC: 0, ...extra }
  c.sa = c.m * c.k + c.gapA
  c.sb = c.sharedB ? 0 : c.k * c.n + c.gapB
  c.sc = c.m * c.n + c.gapC
  return c
}

function gemmName(c) {
  return `${c.ta ? 'T' : 'N'}${c.tb ? 'T' : 'N'} ${c.m}x${c.n}x${c.k} a=${c.alpha} b=${c.beta}` +
    (c.batch > 1 ? ` batch ${c.batch}${c.sharedB ? ' sharedB' : ''}` : '')
}

let seed = 1000
const TRANS = [[false, false], [false, true], [true, false], [true, true]]
const small = quick ? [[37, 45, 29], [1, 7, 37]] : [[1, 1, 1], [37, 45, 29], [1, 1023, 7], [1023, 1, 7], [72, 37, 200], [13, 33, 1023]]
for (const [ta, tb] of TRANS) {
  for (const [m, n, k] of small) {
    for (const [alpha, beta] of [[1, 0], [-1.25, 0.5]]) {
      const c = gemmCase(m, n, k, ta, tb, { alpha, beta })
      const { A, B, C0 } = gemmInputs(c, seed++)
      const { want, scale } = gemmRef(c, A, B, C0)
      // fp32 without TF32: error relative to sum |a*b| is a few ulps; 1e-5 is the design's bound.
      compareBoth('gemm', gemmName(c), runGemm(c, A, B, C0), want, { rtol: 1e-5, atol: 1e-30, scale })
    }
  }
  const batched = [gemmCase(13, 29, 23, ta, tb, { batch: 4, gapA: 5, gapB: 3, gapC: 7 }),
    gemmCase(17, 64, 64, ta, tb, { batch: 5, gapC: 16, sharedB: true, beta: 0.5 })]
  for (const c of batched) {
    const { A, B, C0 } = gemmInputs(c, seed++)
    const { want, scale } = gemmRef(c, A, B, C0)
    compareBoth('gemm', gemmName(c), runGemm(c, A, B, C0), want, { rtol: 1e-5, atol: 1e-30, scale })
  }
}
for (const c of [gemmCase(5, 7, 0, false, false, { beta: 0 }), gemmCase(5, 7, 0, false, false, { beta: -2, batch: 3, gapC: 4 })]) {
  const { A, B, C0 } = gemmInputs(c, seed++)
  const { want } = gemmRef(c, A, B, C0)
  compareBoth('gemm', gemmName(c) + ' (k=0)', runGemm(c, A, B, C0), want, { exact: true })
}
{ // The attention layout: many small products.
  const c = gemmCase(16, 16, 8, false, true, { batch: 48, alpha: 0.125 })
  const { A, B, C0 } = gemmInputs(c, seed++)
  const { want, scale } = gemmRef(c, A, B, C0)
  compareBoth('gemm', gemmName(c), runGemm(c, A, B, C0), want, { rtol: 1e-5, atol: 1e-30, scale })
}

// BERT-base shapes (tokens 1024 = batch 8 x 128): too big for a float64 loop in
// JavaScript, so the reference is the CPU backend, and the error scale sum |a*b|
// is a CPU GEMM of |A| and |B|.
if (!quick) {
  for (const [m, n, k, ta, tb] of [[1024, 3072, 768, false, true], [1024, 768, 3072, false, false], [768, 3072, 1024, true, false]]) {
    const c = gemmCase(m, n, k, ta, tb)
    const { A, B, C0 } = gemmInputs(c, seed++)
    const cpu = on(CPU, runGemm(c, A, B, C0))
    const absScale = on(CPU, runGemm(c, A.map(Math.abs), B.map(Math.abs), new Float32Array(C0.length)))
    if (cpu.error || absScale.error) {
      record('gemm', gemmName(c), false, `cpu reference unavailable: ${cpu.error || absScale.error}`, true)
      continue
    }
    const dev = on(DEV, runGemm(c, A, B, C0))
    if (dev.error) { record('gemm', gemmName(c), false, `${devName} threw: ${dev.error}`); continue }
    const r = closeness(dev.out, cpu.out, 1e-5, 1e-30, absScale.out)
    let rel = 0
    for (let i = 0; i < cpu.out.length; i++) if (Math.abs(cpu.out[i]) > 1e-2) rel = Math.max(rel, Math.abs(dev.out[i] - cpu.out[i]) / Math.abs(cpu.out[i]))
    record('gemm', gemmName(c) + ' vs cpu', r.ok, `${r.text}; max rel (|c|>1e-2) ${rel.toExponential(2)}`)
  }
}

// ---- elementwise -------------------------------------------------------------------

const N = quick ? 10007 : 1000003
{
  const run = (dev) => { const x = poisoned(dev, N); addon.fill(x, N, -3.25); return x.read() }
  compareBoth('fill', `n=${N}`, run, new Float32Array(N).fill(-3.25), { exact: true })
}
for (const [alpha, beta] of [[1.5, 0], [-0.75, 1.25], [2, 1]]) {
  const x = random(N, seed++), y0 = beta === 0 ? new Float32Array(N).fill(NaN) : random(N, seed++)
  const want = new Float64Array(N), scale = new Float64Array(N)
  for (let i = 0; i < N; i++) {
    want[i] = alpha * x[i] + (beta === 0 ? 0 : beta * y0[i])
    scale[i] = Math.abs(alpha * x[i]) + (beta === 0 ? 0 : Math.abs(beta * y0[i]))
  }
  const run = (dev) => { const y = buf(dev, y0); addon.axpby(N, alpha, buf(dev, x), beta, y); return y.read() }
  // Two roundings at most (a fused multiply-add may skip one): 2 ulps of the terms.
  compareBoth('axpby', `n=${N} alpha=${alpha} beta=${beta}`, run, want, { rtol: 2.5e-7, atol: 1e-30, scale })
}
{
  const a = random(N, seed++), b = random(N, seed++)
  const want = a.map((v, i) => Math.fround(v * b[i]))
  const run = (dev) => { const out = poisoned(dev, N); addon.mul(N, buf(dev, a), buf(dev, b), out); return out.read() }
  compareBoth('mul', `n=${N}`, run, want, { exact: true })
}
for (const [rows, cols] of quick ? [[37, 72]] : [[37, 72], [1, 72], [2048, 768], [3000, 300], [5, 1]]) {
  const bias = random(cols, seed++), y0 = random(rows * cols, seed++)
  const want = y0.map((v, i) => Math.fround(v + bias[i % cols]))
  const run = (dev) => { const y = buf(dev, y0); addon.addBiasRows(rows, cols, buf(dev, bias), y); return y.read() }
  compareBoth('addBiasRows', `${rows}x${cols}`, run, want, { exact: true })
}
for (const [rows, cols] of quick ? [[37, 72], [300, 5]] : [[37, 72], [1, 72], [37, 1], [3000, 300], [2048, 3072], [8192, 2], [70000, 3]]) {
  const x = random(rows * cols, seed++), out0 = random(cols, seed++)
  const want = Float64Array.from(out0)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] += x[r * cols + c]
  const run = (dev) => { const out = buf(dev, out0); addon.sumRows(rows, cols, buf(dev, x), out); return out.read() }
  // Summed in double and rounded once on both backends.
  compareBoth('sumRows', `${rows}x${cols}`, run, want, { rtol: 1e-6, atol: 1e-6 })
}

// ---- activations -------------------------------------------------------------------

const KINDS = [['gelu', 0], ['gelu_new', 1], ['tanh', 2], ['relu', 3]]
{
  const x = random(N, seed++, -8, 8)
  x[0] = 0; x[1] = -0; x[2] = 30; x[3] = -30; x[4] = 1e-20
  const dy = random(N, seed++), dx0 = random(N, seed++)
  for (const [name, code] of KINDS) {
    // The CPU backend is the reference (same formulas; libm vs CUDA's math library differ by ulps).
    const fwd = (dev) => { const y = poisoned(dev, N); addon.activationForward(code, N, buf(dev, x), y); return y.read() }
    const cpuFwd = on(CPU, fwd)
    if (cpuFwd.error) record('activationForward', name, false, `cpu unavailable: ${cpuFwd.error}`, true)
    else compareBoth('activationForward', `${name} n=${N}`, fwd, cpuFwd.out, { rtol: 1e-5, atol: 1e-6 })
    const bwd = (dev) => { const dx = buf(dev, dx0); addon.activationBackward(code, N, buf(dev, x), buf(dev, dy), dx); return dx.read() }
    const cpuBwd = on(CPU, bwd)
    if (cpuBwd.error) record('activationBackward', name, false, `cpu unavailable: ${cpuBwd.error}`, true)
    else compareBoth('activationBackward', `${name} n=${N}`, bwd, cpuBwd.out, { rtol: 1e-5, atol: 1e-6 })
  }
}

// ---- dropout: the mask from an independent Philox4x32-10 port ------------------------

function mulhilo(a, b) {  // 32 x 32 -> 64 bits with doubles (each partial product < 2^49)
  const lo = Math.imul(a, b) >>> 0
  const t = a * (b & 0xffff), u = a * (b >>> 16)
  const hi = (Math.floor(u / 65536) + Math.floor(((u % 65536) * 65536 + t) / 4294967296)) >>> 0
  return [hi, lo]
}
function philox(c0, c1, c2, c3, k0, k1) {
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo(0xd2511f53, c0)
    const [hi1, lo1] = mulhilo(0xcd9e8d57, c2)
    ;[c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0]
    k0 = (k0 + 0x9e3779b9) >>> 0
    k1 = (k1 + 0xbb67ae85) >>> 0
  }
  return [c0, c1, c2, c3]
}
{
  const kat = philox(0, 0, 0, 0, 0, 0).map((w) => w.toString(16).padStart(8, '0')).join(' ')
  if (kat !== '6627e8d5 e169c58d bc57ac4c 9b00dbd8') throw new Error(`Philox port fails Random123's known answer: ${kat}`)
}
function keepMask(n, p, seed, offset) {
  const mask = new Uint8Array(n)
  const pf = Math.fround(p)
  const k0 = Number(seed & 0xffffffffn), k1 = Number((seed >> 32n) & 0xffffffffn)
  for (let g = 0; g * 4 < n; g++) {
    const counter = offset + BigInt(g)
    const v = philox(Number(counter & 0xffffffffn), Number((counter >> 32n) & 0xffffffffn), 0, 0, k0, k1)
    for (let lane = 0; lane < 4 && g * 4 + lane < n; lane++) mask[g * 4 + lane] = (v[lane] >>> 8) / 16777216 >= pf ? 1 : 0
  }
  return mask
}
{
  const n = quick ? 10003 : 100003
  const dseed = 0x0123456789abcdefn, doffset = 0xfffffff0n  // counters cross 2^32
  const x = random(n, seed++, -2, 2), dy = random(n, seed++), dx0 = random(n, seed++)
  for (const p of [0.1, 0.5, 0]) {
    const mask = keepMask(n, p, dseed, doffset)
    const scale = Math.fround(1 / (1 - Math.fround(p)))
    const want = x.map((v, i) => Math.fround(v * (mask[i] ? scale : 0)))
    const fwd = (dev) => { const y = poisoned(dev, n); addon.dropoutForward(n, p, dseed, doffset, buf(dev, x), y); return y.read() }
    compareBoth('dropoutForward', `n=${n} p=${p}`, fwd, want, { exact: true })
    const wantB = new Float64Array(n)
    for (let i = 0; i < n; i++) wantB[i] = dx0[i] + dy[i] * (mask[i] ? scale : 0)
    const bwd = (dev) => { const dx = buf(dev, dx0); addon.dropoutBackward(n, p, dseed, doffset, buf(dev, dy), dx); return dx.read() }
    compareBoth('dropoutBackward', `n=${n} p=${p}`, bwd, wantB, { rtol: 2.5e-7, atol: 1e-30, scale: wantB.map((v, i) => Math.abs(dx0[i]) + Math.abs(dy[i] * scale)) })
  }
}

// ---- error paths the process must survive --------------------------------------------

if (!rehearsal) {
  // Far beyond any GPU's memory: a clean OutOfMemory, then the backend still works.
  try {
    new addon.NativeBuffer(1, F32, 2.5e11)
    record('out of memory', '1 TB buffer', false, 'allocation unexpectedly succeeded')
  } catch (e) {
    const ok = e.code === 'ERR_BERTKIT_OOM' && /lower the batch size/.test(e.message)
    record('out of memory', '1 TB buffer', ok, `code=${e.code}: ${e.message}`)
  }
  const after = on(1, (dev) => { const y = poisoned(dev, 5); addon.fill(y, 5, 1); return y.read() })
  record('out of memory', 'backend works after it', !after.error && after.out.every((v) => v === 1), after.error || 'fill ok')
}

// ---- timing: one GEMM shape, CUDA events would be finer; synchronize() brackets it ---

if (!rehearsal && !quick) {
  for (const [m, n, k, ta, tb] of [[2048, 3072, 768, false, true], [2048, 768, 3072, false, true], [3072, 768, 2048, true, false]]) {
    try {
      const a = buf(1, random(m * k, 1)), b = buf(1, random(k * n, 2)), c = poisoned(1, m * n)
      const go = () => addon.gemm(ta, tb, m, n, k, 1, a, b, 0, c, 1, 0, 0, 0)
      for (let i = 0; i < 5; i++) go()
      addon.synchronize(1)
      const iters = 50
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < iters; i++) go()
      addon.synchronize(1)
      const s = Number(process.hrtime.bigint() - t0) / 1e9 / iters
      const tflops = (2 * m * n * k) / s / 1e12
      console.log(`TIME  gemm ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k} fp32: ${(s * 1e6).toFixed(1)} us, ${tflops.toFixed(1)} TFLOP/s`)
      results.push({ op: 'time gemm', case: `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${m}x${n}x${k}`, status: 'INFO', detail: `${(s * 1e6).toFixed(1)} us, ${tflops.toFixed(2)} TFLOP/s` })
    } finally {
      freeLive()
    }
  }
}

// ---- summary ---------------------------------------------------------------------

const stats = addon.memoryStats()
record('memory', 'no live buffers left', stats.liveBuffers === 0, `liveBuffers=${stats.liveBuffers}`)
const count = (s) => results.filter((r) => r.status === s).length
const line = `cuda-vs-cpu${rehearsal ? ' (REHEARSAL on cpu)' : ''}: ${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped`
if (jsonPath) {
  fs.writeFileSync(jsonPath, JSON.stringify({ rehearsal, device: rehearsal ? probe.reason : probe.description, results }, null, 1))
}
console.log(line)
process.exit(count('FAIL') > 0 ? 1 : rehearsal && !allowRehearsal ? 2 : 0)
