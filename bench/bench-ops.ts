// Op benchmark on this CPU: GEMM GFLOP/s at BERT-base shapes for bertkit's
// default GEMM path, the built-in SGEMM and (when compiled in) OpenBLAS through
// bertkit, beside numpy on the same machine in the same run; then the time of
// each other op at BERT-base shapes (batch 8 x sequence 128 = 1024 tokens).
//
// Usage: npm run bench:ops [-- --threads 2 --rounds 4 --budget 0.5 --no-numpy --no-write]
//
// The GEMM path is chosen once per process (BERTKIT_GEMM), so each path lives
// in its own child process (this file with --worker), and numpy in another
// (bench/bench_ops_numpy.py); all stay up for the whole run and take one
// measurement at a time from this process. Measurements are interleaved: for
// each round and each shape every side runs back to back, so a burst of other
// work on the machine hits the sides alike. With several rounds the table
// keeps each side's best round for each row (the one least disturbed) and the
// JSON keeps them all. Every number is a median of repetitions after a warm-up.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { ACTIVATION_CODE, DEVICE_CODE, DTYPE_CODE, native, type NativeBuffer } from '../lib/native.js'
import { args, REPO_ROOT, numberFlag } from './common.js'

const root = REPO_ROOT
const threads = numberFlag('threads', 2)
const rounds = numberFlag('rounds', 4)
const budgetSeconds = numberFlag('budget', 0.5)
const warmup = 2
const minReps = 5
const maxReps = 50

// ---- what is measured -------------------------------------------------------

interface GemmCase {
  id: string
  label: string
  transA: boolean
  transB: boolean
  m: number
  n: number
  k: number
  batch: number
}

// Linear layers store W as [out, in] (torch's layout): forward X·Wᵀ is NT,
// dX = dY·W is NN, dW = dYᵀ·X is TN.
const GEMM_CASES: GemmCase[] = [
  { id: 'ffn_up_nn', label: '1024x768 · 768x3072', transA: false, transB: false, m: 1024, n: 3072, k: 768, batch: 1 },
  { id: 'ffn_up_fwd', label: 'FFN up, forward X·Wᵀ (1024x768 · (3072x768)ᵀ)', transA: false, transB: true, m: 1024, n: 3072, k: 768, batch: 1 },
  { id: 'ffn_up_dx', label: 'FFN up, dX = dY·W (1024x3072 · 3072x768)', transA: false, transB: false, m: 1024, n: 768, k: 3072, batch: 1 },
  { id: 'ffn_up_dw', label: 'FFN up, dW = dYᵀ·X ((1024x3072)ᵀ · 1024x768)', transA: true, transB: false, m: 3072, n: 768, k: 1024, batch: 1 },
  { id: 'proj_nn', label: '1024x768 · 768x768', transA: false, transB: false, m: 1024, n: 768, k: 768, batch: 1 },
  { id: 'proj_fwd', label: 'attention projection, forward X·Wᵀ (1024x768 · (768x768)ᵀ)', transA: false, transB: true, m: 1024, n: 768, k: 768, batch: 1 },
  { id: 'proj_dw', label: 'attention projection, dW = dYᵀ·X ((1024x768)ᵀ · 1024x768)', transA: true, transB: false, m: 768, n: 768, k: 1024, batch: 1 },
  { id: 'ffn_down_fwd', label: 'FFN down, forward X·Wᵀ (1024x3072 · (768x3072)ᵀ)', transA: false, transB: true, m: 1024, n: 768, k: 3072, batch: 1 },
  { id: 'attn_scores', label: 'attention scores Q·Kᵀ, 16x12 heads (128x64 · 64x128)', transA: false, transB: true, m: 128, n: 128, k: 64, batch: 192 },
  { id: 'attn_context', label: 'attention context P·V, 16x12 heads (128x128 · 128x64)', transA: false, transB: false, m: 128, n: 64, k: 128, batch: 192 },
]

const TOKENS = 1024
const HIDDEN = 768
const FFN = 3072
const VOCAB = 28996
const PARAMS = HIDDEN * FFN

interface OpCase {
  id: string
  label: string
  shape: Record<string, number>
  /** The numpy function in bench_ops_numpy.py that does the same work, if any. */
  numpy?: string
  numpyNote?: string
  /** Allocates inputs and returns the call to time. */
  setup: (alloc: Alloc) => () => void
}

interface Alloc {
  f32: (n: number, lo?: number, hi?: number) => NativeBuffer
  i32: (values: Int32Array) => NativeBuffer
}

const gelu = ACTIVATION_CODE.gelu
const geluTanh = ACTIVATION_CODE.gelu_new

const OP_CASES: OpCase[] = [
  {
    id: 'layernorm_fwd', label: 'LayerNorm forward', shape: { rows: TOKENS, cols: HIDDEN }, numpy: 'layernorm_forward',
    setup: (a) => {
      const x = a.f32(TOKENS * HIDDEN), g = a.f32(HIDDEN, 1, 1), b = a.f32(HIDDEN, 0, 0), y = a.f32(TOKENS * HIDDEN)
      const mean = a.f32(TOKENS), rstd = a.f32(TOKENS)
      return () => native().layernormForward(TOKENS, HIDDEN, 1e-12, x, null, g, b, y, null, mean, rstd)
    },
  },
  {
    id: 'layernorm_residual_fwd', label: 'LayerNorm forward, fused residual add', shape: { rows: TOKENS, cols: HIDDEN },
    setup: (a) => {
      const x = a.f32(TOKENS * HIDDEN), r = a.f32(TOKENS * HIDDEN), g = a.f32(HIDDEN, 1, 1), b = a.f32(HIDDEN, 0, 0)
      const y = a.f32(TOKENS * HIDDEN), sum = a.f32(TOKENS * HIDDEN), mean = a.f32(TOKENS), rstd = a.f32(TOKENS)
      return () => native().layernormForward(TOKENS, HIDDEN, 1e-12, x, r, g, b, y, sum, mean, rstd)
    },
  },
  {
    id: 'layernorm_bwd', label: 'LayerNorm backward (dx, dgamma, dbeta)', shape: { rows: TOKENS, cols: HIDDEN },
    setup: (a) => {
      const x = a.f32(TOKENS * HIDDEN), g = a.f32(HIDDEN, 1, 1), mean = a.f32(TOKENS, 0, 0), rstd = a.f32(TOKENS, 1, 1)
      const dy = a.f32(TOKENS * HIDDEN), dx = a.f32(TOKENS * HIDDEN), dg = a.f32(HIDDEN), db = a.f32(HIDDEN)
      return () => native().layernormBackward(TOKENS, HIDDEN, x, g, mean, rstd, dy, dx, dg, db)
    },
  },
  {
    id: 'gelu_fwd', label: 'GELU (erf) forward', shape: { n: TOKENS * FFN },
    setup: (a) => {
      const x = a.f32(TOKENS * FFN), y = a.f32(TOKENS * FFN)
      return () => native().activationForward(gelu, TOKENS * FFN, x, y)
    },
  },
  {
    id: 'gelu_bwd', label: 'GELU (erf) backward', shape: { n: TOKENS * FFN },
    setup: (a) => {
      const x = a.f32(TOKENS * FFN), dy = a.f32(TOKENS * FFN), dx = a.f32(TOKENS * FFN)
      return () => native().activationBackward(gelu, TOKENS * FFN, x, dy, dx)
    },
  },
  {
    id: 'gelu_tanh_fwd', label: 'GELU (tanh approximation) forward', shape: { n: TOKENS * FFN }, numpy: 'gelu_tanh_forward',
    setup: (a) => {
      const x = a.f32(TOKENS * FFN), y = a.f32(TOKENS * FFN)
      return () => native().activationForward(geluTanh, TOKENS * FFN, x, y)
    },
  },
  {
    id: 'dropout_fwd', label: 'dropout forward, p = 0.1', shape: { n: TOKENS * HIDDEN },
    setup: (a) => {
      const x = a.f32(TOKENS * HIDDEN), y = a.f32(TOKENS * HIDDEN)
      return () => native().dropoutForward(TOKENS * HIDDEN, 0.1, 42, 0, x, y)
    },
  },
  {
    id: 'dropout_bwd', label: 'dropout backward, p = 0.1', shape: { n: TOKENS * HIDDEN },
    setup: (a) => {
      const dy = a.f32(TOKENS * HIDDEN), dx = a.f32(TOKENS * HIDDEN)
      return () => native().dropoutBackward(TOKENS * HIDDEN, 0.1, 42, 0, dy, dx)
    },
  },
  {
    id: 'attention_fwd', label: 'attention forward (scores, mask, softmax, ·V)', numpy: 'attention_forward',
    numpyNote: 'numpy: no dropout',
    shape: { batch: 8, seq: 128, heads: 12, headDim: 64 },
    setup: (a) => {
      const [b, s, h, d] = [8, 128, 12, 64]
      const q = a.f32(b * s * h * d), k = a.f32(b * s * h * d), v = a.f32(b * s * h * d)
      const mask = a.i32(new Int32Array(b * s).fill(1)), probs = a.f32(b * h * s * s), out = a.f32(b * s * h * d)
      return () => native().attentionForward(b, s, h, d, 1 / Math.sqrt(d), 0.1, 42, 0, q, k, v, mask, probs, out)
    },
  },
  {
    id: 'attention_bwd', label: 'attention backward (dq, dk, dv)', shape: { batch: 8, seq: 128, heads: 12, headDim: 64 },
    setup: (a) => {
      const [b, s, h, d] = [8, 128, 12, 64]
      const q = a.f32(b * s * h * d), k = a.f32(b * s * h * d), v = a.f32(b * s * h * d)
      const probs = a.f32(b * h * s * s, 0, 1 / s), dout = a.f32(b * s * h * d)
      const dq = a.f32(b * s * h * d), dk = a.f32(b * s * h * d), dv = a.f32(b * s * h * d)
      return () => native().attentionBackward(b, s, h, d, 1 / Math.sqrt(d), 0.1, 42, 0, q, k, v, probs, dout, dq, dk, dv)
    },
  },
  {
    id: 'embedding_fwd', label: 'embedding gather', shape: { n: TOKENS, dim: HIDDEN, vocab: VOCAB },
    setup: (a) => {
      const ids = a.i32(Int32Array.from({ length: TOKENS }, (_, i) => (i * 7919) % VOCAB))
      const table = a.f32(VOCAB * HIDDEN), out = a.f32(TOKENS * HIDDEN)
      return () => native().embeddingForward(TOKENS, HIDDEN, VOCAB, ids, table, out)
    },
  },
  {
    id: 'embedding_bwd', label: 'embedding scatter-add backward', shape: { n: TOKENS, dim: HIDDEN, vocab: VOCAB },
    setup: (a) => {
      const ids = a.i32(Int32Array.from({ length: TOKENS }, (_, i) => (i * 7919) % VOCAB))
      const dout = a.f32(TOKENS * HIDDEN), dtable = a.f32(VOCAB * HIDDEN, 0, 0)
      return () => native().embeddingBackward(TOKENS, HIDDEN, VOCAB, ids, dout, dtable, -1)
    },
  },
  {
    id: 'cross_entropy_fwd', label: 'cross-entropy forward', shape: { rows: 16, classes: 2 },
    setup: (a) => {
      const logits = a.f32(32), labels = a.i32(Int32Array.from({ length: 16 }, (_, i) => i % 2)), loss = a.f32(1)
      return () => native().crossEntropyForward(16, 2, logits, labels, -100, null, loss)
    },
  },
  {
    id: 'cross_entropy_bwd', label: 'cross-entropy backward', shape: { rows: 16, classes: 2 },
    setup: (a) => {
      const logits = a.f32(32), labels = a.i32(Int32Array.from({ length: 16 }, (_, i) => i % 2))
      const dloss = a.f32(1, 1, 1), dlogits = a.f32(32)
      return () => native().crossEntropyBackward(16, 2, logits, labels, -100, null, dloss, dlogits)
    },
  },
  {
    id: 'adamw', label: 'AdamW step (one 3072x768 weight)', shape: { n: PARAMS }, numpy: 'adamw_step',
    setup: (a) => {
      const g = a.f32(PARAMS), p = a.f32(PARAMS), m = a.f32(PARAMS, 0, 0), v = a.f32(PARAMS, 0, 0)
      let step = 0
      return () => native().adamwStep(PARAMS, 2e-5, 0.9, 0.999, 1e-8, 0.01, ++step, null, g, p, m, v)
    },
  },
  {
    id: 'add_bias_rows', label: 'bias add over rows', shape: { rows: TOKENS, cols: FFN }, numpy: 'add_bias_rows',
    setup: (a) => {
      const bias = a.f32(FFN), y = a.f32(TOKENS * FFN)
      return () => native().addBiasRows(TOKENS, FFN, bias, y)
    },
  },
  {
    id: 'sum_rows', label: 'sum over rows (bias gradient)', shape: { rows: TOKENS, cols: FFN }, numpy: 'sum_rows',
    setup: (a) => {
      const x = a.f32(TOKENS * FFN), out = a.f32(FFN, 0, 0)
      return () => native().sumRows(TOKENS, FFN, x, out)
    },
  },
  {
    id: 'axpby', label: 'axpby (y = a·x + b·y)', shape: { n: PARAMS },
    setup: (a) => {
      const x = a.f32(PARAMS), y = a.f32(PARAMS)
      return () => native().axpby(PARAMS, 0.5, x, 0.5, y)
    },
  },
  {
    id: 'sum_squares', label: 'sum of squares (gradient norm)', shape: { n: PARAMS },
    setup: (a) => {
      const x = a.f32(PARAMS), out = a.f32(1, 0, 0)
      return () => native().sumSquares(PARAMS, x, out)
    },
  },
]

// ---- timing -----------------------------------------------------------------

interface Timing {
  median_s: number
  min_s: number
  reps: number
}

function measure(fn: () => void, reps: number): number[] {
  const times: number[] = []
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint()
    fn()
    native().synchronize(DEVICE_CODE.cpu)
    times.push(Number(process.hrtime.bigint() - t0) / 1e9)
  }
  return times.sort((a, b) => a - b)
}

function timeIt(fn: () => void): Timing {
  measure(fn, warmup)
  const probe = measure(fn, 1)[0]
  const reps = Math.round(Math.max(minReps, Math.min(maxReps, budgetSeconds / Math.max(probe, 1e-9))))
  const times = measure(fn, reps)
  return { median_s: times[Math.floor(times.length / 2)], min_s: times[0], reps }
}

/** Uniform values in [lo, hi) from a fixed generator, so every run sees the same data. */
function values(n: number, lo: number, hi: number, seed: number): Float32Array {
  const out = new Float32Array(n)
  let s = seed >>> 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = lo + (hi - lo) * (s / 4294967296)
  }
  return out
}

function withBuffers<T>(body: (alloc: Alloc) => T): T {
  const made: NativeBuffer[] = []
  let seed = 1
  const alloc: Alloc = {
    f32: (n, lo = -1, hi = 1) => {
      const b = new (native().NativeBuffer)(DEVICE_CODE.cpu, DTYPE_CODE.float32, n)
      made.push(b)
      b.write(values(n, lo, hi, seed++))
      return b
    },
    i32: (v) => {
      const b = new (native().NativeBuffer)(DEVICE_CODE.cpu, DTYPE_CODE.int32, v.length)
      made.push(b)
      b.write(v)
      return b
    },
  }
  try {
    return body(alloc)
  } finally {
    for (const b of made) if (!b.freed) b.free()
  }
}

// ---- worker: one GEMM path in this process -------------------------------------

type Request = { cmd: 'info' } | { cmd: 'gemm'; id: string } | { cmd: 'op'; id: string }

interface GemmTiming extends Timing {
  id: string
  gflops: number
}

interface OpTiming {
  id: string
  timing: Timing | null
  status: string
}

function flops(c: GemmCase): number {
  return 2 * c.m * c.n * c.k * c.batch
}

function gemmTiming(c: GemmCase): GemmTiming {
  const timing = withBuffers((a) => {
    const A = a.f32(c.m * c.k * c.batch), B = a.f32(c.k * c.n * c.batch), C = a.f32(c.m * c.n * c.batch)
    return timeIt(() => native().gemm(c.transA, c.transB, c.m, c.n, c.k, 1, A, B, 0, C, c.batch, c.m * c.k, c.k * c.n, c.m * c.n))
  })
  return { ...timing, id: c.id, gflops: flops(c) / timing.median_s / 1e9 }
}

function opTiming(op: OpCase): OpTiming {
  try {
    return { id: op.id, timing: withBuffers((a) => timeIt(op.setup(a))), status: 'ok' }
  } catch (err) {
    const message = (err as Error).message
    return { id: op.id, timing: null, status: /not implemented/i.test(message) ? 'n/a' : `error: ${message.split('\n')[0]}` }
  }
}

function serveWorker(): void {
  native().setNumThreads(threads)
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    const req = JSON.parse(line) as Request
    let reply: unknown
    if (req.cmd === 'info') reply = { gemmName: native().cpuGemm, threads: native().getNumThreads() }
    else if (req.cmd === 'gemm') reply = gemmTiming(GEMM_CASES.find((c) => c.id === req.id)!)
    else reply = opTiming(OP_CASES.find((o) => o.id === req.id)!)
    process.stdout.write(JSON.stringify(reply) + '\n')
  })
}

// ---- parent: every side, interleaved ---------------------------------------------

/** A child that answers one JSON line per JSON line it is sent. */
class Peer {
  private readonly child: ChildProcessWithoutNullStreams
  private readonly waiting: Array<(line: string) => void> = []
  private stderr = ''
  private exited: string | null = null

  constructor(readonly name: string, cmd: string, cmdArgs: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, cmdArgs, { env })
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiting.shift()?.(line))
    this.child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString() })
    this.child.on('exit', (code, signal) => {
      this.exited = `${name} exited (${signal ?? code}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`
      for (const w of this.waiting.splice(0)) w('')
    })
    this.child.on('error', (err) => {
      this.exited = `${name} could not start: ${err.message}`
      for (const w of this.waiting.splice(0)) w('')
    })
  }

  ask<T>(req: unknown): Promise<T> {
    if (this.exited) return Promise.reject(new Error(this.exited))
    return new Promise((resolve, reject) => {
      this.waiting.push((line) => {
        if (!line) reject(new Error(this.exited ?? `${this.name}: no answer`))
        else resolve(JSON.parse(line) as T)
      })
      this.child.stdin.write(JSON.stringify(req) + '\n')
    })
  }

  close(): void {
    this.child.stdin.end()
  }
}

function bertkitPeer(gemm: string | null): Peer {
  const env: NodeJS.ProcessEnv = { ...process.env, BERTKIT_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) }
  if (gemm) env.BERTKIT_GEMM = gemm
  else delete env.BERTKIT_GEMM
  const workerArgs = [__filename, '--worker', '--threads', String(threads), '--budget', String(budgetSeconds)]
  return new Peer(`bertkit (BERTKIT_GEMM=${gemm ?? 'unset'})`, process.execPath, workerArgs, env)
}

function numpyPeer(): Peer {
  // The OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE this machine may set protect old
  // OpenBLAS builds but hold back numpy's current one: the baseline runs
  // without them (in this child only), and reports the kernel it then used.
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.OPENBLAS_CORETYPE
  delete env.OPENBLAS_L2_SIZE
  for (const v of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[v] = String(threads)
  const python = process.env.PYTHON ?? 'python3'
  return new Peer('numpy', python, [join(root, 'bench', 'bench_ops_numpy.py'), '--serve'], env)
}

function machine(): Record<string, string> {
  const cpus = os.cpus()
  let flags = ''
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8')
    const line = info.split('\n').find((l) => l.startsWith('flags')) ?? ''
    const has = (f: string) => new RegExp(`\\b${f}\\b`).test(line)
    flags = ['avx2', 'fma', 'avx512f'].filter(has).join(' ')
  } catch {
    flags = 'unknown'
  }
  const openblasEnv = Object.entries(process.env)
    .filter(([k]) => k === 'OPENBLAS_CORETYPE' || k === 'OPENBLAS_L2_SIZE')
    .map(([k, v]) => `${k}=${v}`).join(' ')
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: String(cpus.length),
    flags,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    openblasEnv: openblasEnv || '(none)',
  }
}

// OpenBLAS's threads keep spinning for a while (up to ~0.1 s) after a call
// before they sleep; a side measured right after numpy or OpenBLAS would share
// the cores with them. A pause before each measurement lets them go to sleep.
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 300))
}

function loadAverage(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ')
}

type Side = 'default' | 'builtin' | 'openblas' | 'numpy'

interface NumpyInfo {
  numpy?: string
  blas?: string
  blas_version?: string
  kernel?: string
  threads?: number
}

function fmt(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits)
}

function pct(ours: number | undefined, theirs: number | undefined): string {
  return ours === undefined || theirs === undefined ? '—' : `${((100 * ours) / theirs).toFixed(0)} %`
}

async function main(): Promise<void> {
  if (args.includes('--worker')) {
    serveWorker()
    return
  }
  const started = new Date()
  const loadBefore = loadAverage()
  const peers = new Map<Side, Peer>()
  peers.set('default', bertkitPeer(null))
  peers.set('builtin', bertkitPeer('builtin'))
  const names = new Map<Side, string>()
  for (const [side, peer] of peers) names.set(side, (await peer.ask<{ gemmName: string }>({ cmd: 'info' })).gemmName)
  const openblas = bertkitPeer('openblas')
  const obName = (await openblas.ask<{ gemmName: string }>({ cmd: 'info' })).gemmName
  if (obName.startsWith('OpenBLAS')) {
    peers.set('openblas', openblas)
    names.set('openblas', obName)
  } else {
    openblas.close()
  }
  let numpyInfo: NumpyInfo | null = null
  let numpyError: string | null = null
  if (!args.includes('--no-numpy')) {
    const np = numpyPeer()
    try {
      numpyInfo = await np.ask<NumpyInfo>({ cmd: 'info' })
      peers.set('numpy', np)
    } catch (err) {
      numpyError = (err as Error).message
    }
  }

  // gemm[side][case id] = one timing per round; ops likewise for bertkit and numpy.
  const gemm = new Map<Side, Map<string, GemmTiming[]>>()
  const ops = new Map<'default' | 'numpy', Map<string, OpTiming[]>>([['default', new Map()], ['numpy', new Map()]])
  const push = <T>(m: Map<string, T[]>, id: string, x: T) => m.set(id, [...(m.get(id) ?? []), x])
  for (let r = 0; r < rounds; r++) {
    const sides = [...peers.keys()]
    for (const c of GEMM_CASES) {
      process.stderr.write(`round ${r + 1}/${rounds}: ${c.id}\n`)
      // Rotate who goes first and reverse the order every other round, so no
      // side always runs right after the same one.
      const order = sides.map((_, i) => sides[(i + r) % sides.length])
      if (r % 2 === 1) order.reverse()
      for (const side of order) {
        await settle()
        const timing = side === 'numpy'
          ? await peers.get(side)!.ask<GemmTiming>({ cmd: 'gemm', case: c, warmup, budgetSeconds, minReps, maxReps })
          : await peers.get(side)!.ask<GemmTiming>({ cmd: 'gemm', id: c.id })
        if (!gemm.has(side)) gemm.set(side, new Map())
        push(gemm.get(side)!, c.id, timing)
      }
    }
    for (const o of OP_CASES) {
      process.stderr.write(`round ${r + 1}/${rounds}: ${o.id}\n`)
      await settle()
      push(ops.get('default')!, o.id, await peers.get('default')!.ask<OpTiming>({ cmd: 'op', id: o.id }))
      if (o.numpy && peers.has('numpy')) {
        await settle()
        const t = await peers.get('numpy')!.ask<Timing>({ cmd: 'op', op: { id: o.id, numpy: o.numpy, shape: o.shape }, warmup, budgetSeconds, minReps, maxReps })
        push(ops.get('numpy')!, o.id, { id: o.id, timing: t, status: 'ok' })
      }
    }
  }
  for (const peer of peers.values()) peer.close()
  const loadAfter = loadAverage()

  const bestGemm = (side: Side, id: string): number | undefined => {
    const all = gemm.get(side)?.get(id) ?? []
    return all.length ? Math.max(...all.map((g) => g.gflops)) : undefined
  }
  const bestOp = (side: 'default' | 'numpy', id: string): OpTiming | undefined => {
    const all = ops.get(side)?.get(id) ?? []
    const timed = all.filter((o) => o.timing !== null)
    if (!timed.length) return all[0]
    return timed.reduce((a, b) => (b.timing!.median_s < a.timing!.median_s ? b : a))
  }

  const m = machine()
  const npLabel = numpyInfo
    ? `numpy ${numpyInfo.numpy} (${numpyInfo.blas ?? 'BLAS'} ${numpyInfo.blas_version ?? ''}, ${numpyInfo.kernel ?? '?'} kernels, ${numpyInfo.threads ?? '?'} threads)`
    : `numpy unavailable${numpyError ? `: ${numpyError}` : ''}`

  const lines: string[] = []
  lines.push('# CPU ops: bertkit vs numpy on this machine', '')
  lines.push(`Machine: ${m.cpu}, ${m.cores} cores (${m.flags}), ${m.memory}, ${m.os}, Node ${m.node}.`)
  lines.push(`Date: ${started.toISOString()}. Command: \`npm run bench:ops${args.length ? ' -- ' + args.join(' ') : ''}\`. ` +
    `Load average (1, 5, 15 min) before: ${loadBefore}, after: ${loadAfter}.`)
  lines.push(`Threads: ${threads} on every side (BERTKIT_NUM_THREADS, OPENBLAS_NUM_THREADS). ` +
    `Each number: median of ${minReps}-${maxReps} repetitions (about ${budgetSeconds} s) after ${warmup} warm-up calls. ` +
    `${rounds} round(s); in each, every shape runs on every side back to back (0.3 s pause before each, varying order); ` +
    'the table keeps each side\'s best round (all rounds are in ops-cpu.json).')
  lines.push(`Environment: ${m.openblasEnv}. bertkit runs with it; the numpy baseline runs without OPENBLAS_CORETYPE / ` +
    'OPENBLAS_L2_SIZE, so it gets the kernels its own OpenBLAS picks for this CPU.', '')
  lines.push(`- bertkit default path: **${names.get('default')}**`)
  lines.push(`- bertkit built-in SGEMM (BERTKIT_GEMM=builtin): **${names.get('builtin')}**`)
  lines.push(`- OpenBLAS through bertkit (BERTKIT_GEMM=openblas): **${names.get('openblas') ?? 'not compiled in'}**`)
  lines.push(`- baseline: **${npLabel}**`, '')
  if (names.get('default') === names.get('builtin') || names.get('default')?.startsWith(`${names.get('builtin')} (`)) {
    lines.push('The default path is the built-in SGEMM here: those two columns time the same code in two processes, ' +
      'so their difference shows the run-to-run noise.', '')
  }
  lines.push('## GEMM, fp32 (GFLOP/s, higher is better)', '')
  lines.push('| product | m x n x k (batch), op | bertkit default | % of numpy | built-in | % of numpy | OpenBLAS via bertkit | % of numpy | numpy |')
  lines.push('|---|---|---|---|---|---|---|---|---|')
  for (const c of GEMM_CASES) {
    const d = bestGemm('default', c.id), b = bestGemm('builtin', c.id)
    const o = bestGemm('openblas', c.id), n = bestGemm('numpy', c.id)
    const op = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`
    lines.push(`| ${c.label} | ${c.m} x ${c.n} x ${c.k}${c.batch > 1 ? ` (${c.batch})` : ''}, ${op} | ${fmt(d)} | ${pct(d, n)} | ` +
      `${fmt(b)} | ${pct(b, n)} | ${fmt(o)} | ${pct(o, n)} | ${fmt(n)} |`)
  }
  lines.push('', '## Other ops (ms per call, median; lower is better)', '')
  lines.push('BERT-base shapes, 1024 tokens (batch 8 x sequence 128), bertkit\'s default build. ' +
    '"n/a": not implemented in this build. numpy runs its elementwise work on one thread.', '')
  lines.push('| op | shape | bertkit | numpy |')
  lines.push('|---|---|---|---|')
  for (const o of OP_CASES) {
    const ours = bestOp('default', o.id), theirs = bestOp('numpy', o.id)
    const oursText = ours?.timing ? fmt(ours.timing.median_s * 1e3, 3) : (ours?.status ?? '—')
    const npText = theirs?.timing ? `${fmt(theirs.timing.median_s * 1e3, 3)}${o.numpyNote ? ` (${o.numpyNote})` : ''}` : '—'
    const shape = Object.entries(o.shape).map(([k, v]) => `${k} ${v}`).join(', ')
    lines.push(`| ${o.label} | ${shape} | ${oursText} | ${npText} |`)
  }
  const markdown = lines.join('\n') + '\n'
  process.stdout.write(markdown)

  if (!args.includes('--no-write')) {
    const dir = join(root, 'benchmarks')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'ops-cpu.md'), markdown)
    const json = {
      date: started.toISOString(), machine: m, loadBefore, loadAfter, threads, rounds, budgetSeconds, warmup, minReps, maxReps,
      paths: Object.fromEntries(names), numpy: numpyInfo, numpyError,
      gemmCases: GEMM_CASES, opCases: OP_CASES.map(({ setup: _setup, ...rest }) => rest),
      gemm: Object.fromEntries([...gemm].map(([side, byId]) => [side, Object.fromEntries(byId)])),
      ops: Object.fromEntries([...ops].map(([side, byId]) => [side, Object.fromEntries(byId)])),
    }
    writeFileSync(join(dir, 'ops-cpu.json'), JSON.stringify(json, null, 2) + '\n')
    process.stderr.write(`wrote ${join('benchmarks', 'ops-cpu.md')} and ${join('benchmarks', 'ops-cpu.json')}\n`)
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-ops: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
