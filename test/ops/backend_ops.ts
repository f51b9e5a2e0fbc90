// The backend parity harness, in the spirit of ggml's test-backend-ops: every
// op registers its cases once (test/ops/cases/<family>.ts: inputs, the call,
// and a float64 reference where one is cheap), and the same table drives
//   - `npm test` (backend_ops.test.ts): each case against its float64
//     reference, on every device this machine runs (the CPU everywhere);
//   - a GPU machine (scripts/gpu/gpu-check.sh runs this file): each case on CUDA
//     against the CPU backend and against the reference, device checks (out
//     of memory, TF32, fused against materialised attention) and timings:
//       BERTKIT_ADDON_PATH=…/bertkit_cuda.node node dist/test/ops/backend_ops.js \
//         [--quick] [--no-perf] [--json FILE] [--allow-rehearsal] [--rehearse-perf] [--only OP]
// Outputs an op overwrites start as NaN, so an element a kernel forgets to
// write shows up; gradients start from random values, so a kernel that
// overwrites instead of accumulating shows up. Without a usable GPU the
// command line rehearses: the "cuda" side runs on the CPU, which exercises the
// harness (not CUDA), says so, and exits 2 unless --allow-rehearsal is given.
import { writeFileSync } from 'node:fs'
import { native, DEVICE_CODE, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'

// ---- a case -----------------------------------------------------------------------

/**
 * quick: runs everywhere (npm test, --quick); full: on GPU runs without
 * --quick (sizes a JavaScript float64 loop would make npm test slow for);
 * big: BERT-base sizes on GPU runs without --quick, CUDA against the CPU only.
 */
export type CaseSize = 'quick' | 'full' | 'big'

/** What a case's float64 reference gives for one output: the values, and optionally the error scale per element. */
export type Expected = ArrayLike<number> | { values: ArrayLike<number>; scale: ArrayLike<number> }

export interface Tolerance {
  /** |got - want| <= atol + rtol * scale, scale = |want| unless the reference gives one. */
  rtol: number
  atol: number
}

/** The op call a case set up on one device, and the buffers whose contents are its result. */
export interface Run {
  call(): void
  outputs: Record<string, NativeBuffer>
}

export interface OpCase {
  /** The addon function under test, as exported (gemm, layernormBackward, ...). */
  op: string
  label: string
  size: CaseSize
  /** Makes the inputs on io's device (io frees them after the case) and returns the call. */
  setup(io: DeviceIO): Run
  /** float64 expectation of each output (same names as Run.outputs). */
  reference?: () => Record<string, Expected>
  /** Device against the reference ('bits': bit for bit), for every output or per output name. */
  tolerance?: Tolerance | 'bits' | Record<string, Tolerance | 'bits'>
  /**
   * Device against the CPU backend, per output: max |got - cpu| / max |cpu|
   * (NaN and infinities where the CPU has them); 0: equal values; 'bits': bit
   * for bit. Default 1e-5.
   */
  parity?: number | 'bits'
}

/** Work per call, for timings: floating-point operations and bytes moved. */
export interface PerfCase {
  label: string
  /** Makes inputs on io's device and returns the call to time. */
  setup(io: DeviceIO): () => void
  iterations?: number
  flop?: number
  bytes?: number
}

/** make() once, on first use: the inputs of cases that do not run are never drawn. */
export function lazy<T>(make: () => T): () => T {
  let made: { value: T } | null = null
  return () => (made ??= { value: make() }).value
}

// ---- buffers of one case on one device ---------------------------------------------

/** Makes buffers on one device and frees them all at once. */
export class DeviceIO {
  private made: NativeBuffer[] = []
  constructor(readonly device: number) {}

  private keep(b: NativeBuffer): NativeBuffer {
    this.made.push(b)
    return b
  }
  /** A float32 buffer holding `values`. */
  f32(values: ArrayLike<number>): NativeBuffer {
    const b = this.empty('float32', values.length)
    if (values.length) b.write(values instanceof Float32Array ? values : Float32Array.from(values))
    return b
  }
  i32(values: ArrayLike<number>): NativeBuffer {
    const b = this.empty('int32', values.length)
    if (values.length) b.write(values instanceof Int32Array ? values : Int32Array.from(values))
    return b
  }
  /** A float16 / bfloat16 buffer holding raw bit patterns. */
  half(dtype: 'float16' | 'bfloat16', bits: ArrayLike<number>): NativeBuffer {
    const b = this.empty(dtype, bits.length)
    if (bits.length) b.write(bits instanceof Uint16Array ? bits : Uint16Array.from(bits))
    return b
  }
  /** float32 NaN everywhere: what a kernel forgets to write stays NaN. */
  nan(n: number): NativeBuffer {
    return this.f32(new Float32Array(n).fill(NaN))
  }
  /** Uninitialised contents (for timings). */
  empty(dtype: keyof typeof DTYPE_CODE, n: number): NativeBuffer {
    return this.keep(new (native().NativeBuffer)(this.device, DTYPE_CODE[dtype], n))
  }
  /** A float32 buffer of n copies of value, written by the fill op (no host array). */
  filled(n: number, value: number): NativeBuffer {
    const b = this.empty('float32', n)
    native().fill(b, n, value)
    return b
  }
  freeAll(): void {
    for (const b of this.made) if (!b.freed) b.free()
    this.made = []
  }
}

// ---- running and comparing ------------------------------------------------------------

type Values = Float32Array | Int32Array | Uint16Array

export interface Verdict {
  ok: boolean
  text: string
}

/** Sets the case up on `device`, calls the op once and reads every output; a thrown Error becomes { error }. */
export function runCase(c: OpCase, device: number): { outputs: Record<string, Values> } | { error: string } {
  const io = new DeviceIO(device)
  try {
    const run = c.setup(io)
    run.call()
    const outputs: Record<string, Values> = {}
    for (const [name, b] of Object.entries(run.outputs)) outputs[name] = b.read()
    return { outputs }
  } catch (e) {
    return { error: (e as Error).message }
  } finally {
    io.freeAll()
  }
}

function bitsOf(v: ArrayLike<number>): Uint8Array {
  const typed = v as unknown as { buffer?: ArrayBuffer; byteOffset?: number; byteLength?: number }
  if (!typed.buffer) throw new Error('internal: bit comparison needs typed arrays')
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength)
}

/** Bit for bit; a reference of plain numbers is first rounded to the output's element type. */
function bitsEqual(got: Values, wantValues: ArrayLike<number>): Verdict {
  const Type = got.constructor as Float32ArrayConstructor | Int32ArrayConstructor | Uint16ArrayConstructor
  const want = wantValues instanceof Type ? wantValues : Type.from(wantValues as ArrayLike<number>)
  const a = bitsOf(got), b = bitsOf(want)
  if (a.length !== b.length) return { ok: false, text: `${a.length} bytes, want ${b.length}` }
  const size = got.BYTES_PER_ELEMENT
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      const at = Math.floor(i / size)
      return { ok: false, text: `[${at}] got ${got[at]}, want ${want[at]} (bits differ)` }
    }
  }
  return { ok: true, text: `bit-exact (${got.length})` }
}

// (A typed array has a values() method: the scale tells the two forms apart.)
const withScale = (e: Expected): e is { values: ArrayLike<number>; scale: ArrayLike<number> } => 'scale' in e
const valuesOf = (e: Expected): ArrayLike<number> => (withScale(e) ? e.values : e)

/** Against a float64 reference: |got - want| <= atol + rtol * scale for every element; NaN only where want is NaN. */
export function closeToReference(got: Values, expected: Expected, tol: Tolerance): Verdict {
  const want = valuesOf(expected)
  const scale = withScale(expected) ? expected.scale : null
  if (got.length !== want.length) return { ok: false, text: `length ${got.length}, want ${want.length}` }
  let worst = 0, at = -1, maxErr = 0
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i]
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) return { ok: false, text: `[${i}] got ${g}, want ${w}` }
      continue
    }
    if (g === w) continue  // equal infinities too
    const err = Math.abs(g - w)
    const ratio = err / (tol.atol + tol.rtol * (scale ? scale[i] : Math.abs(w)))
    if (!(ratio <= worst)) { worst = Number.isNaN(ratio) ? Infinity : ratio; at = i }
    maxErr = Math.max(maxErr, err)
  }
  const text = at < 0 ? `exact (${want.length})` :
    `max |err| ${maxErr.toExponential(2)}, worst ${worst.toFixed(3)} of the bound at [${at}] (got ${got[at]}, want ${want[at]})`
  return { ok: worst <= 1, text }
}

/** Against another backend's output: max |got - base| / max |base| <= tol; NaN and infinities where base has them. */
export function closeToBackend(got: Values, base: Values, tol: number): Verdict {
  if (got.length !== base.length) return { ok: false, text: `length ${got.length}, want ${base.length}` }
  let maxErr = 0, at = -1, scale = 0, differ = 0
  for (let i = 0; i < base.length; i++) {
    const g = got[i], w = base[i]
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) !== Number.isNaN(g)) return { ok: false, text: `[${i}] got ${g}, cpu ${w}` }
      continue
    }
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (g !== w) return { ok: false, text: `[${i}] got ${g}, cpu ${w}` }
      continue
    }
    if (g !== w) differ++
    scale = Math.max(scale, Math.abs(w))
    const err = Math.abs(g - w)
    if (err > maxErr) { maxErr = err; at = i }
  }
  const rel = maxErr / (scale > 0 ? scale : 1)
  const text = differ === 0 ? `equal (${base.length})` :
    `rel ${rel.toExponential(2)} (max |err| ${maxErr.toExponential(2)} at [${at}], ${differ}/${base.length} differ)`
  return { ok: rel <= tol, text }
}

function joinVerdicts(parts: Array<[string, Verdict]>): Verdict {
  return { ok: parts.every(([, v]) => v.ok), text: parts.map(([name, v]) => `${name}: ${v.text}`).join('; ') }
}

function isTolerance(x: object): x is Tolerance {
  return 'rtol' in x
}

/** The case on `device` against its float64 reference. */
export function checkReference(c: OpCase, device: number): Verdict {
  if (!c.reference) return { ok: false, text: 'internal: the case has no reference' }
  const r = runCase(c, device)
  if ('error' in r) return { ok: false, text: `threw: ${r.error}` }
  const expected = c.reference()
  const given = c.tolerance ?? 'bits'
  return joinVerdicts(Object.entries(expected).map(([name, want]): [string, Verdict] => {
    const got = r.outputs[name]
    const tol: Tolerance | 'bits' | undefined = given === 'bits' || isTolerance(given) ? given : given[name]
    if (!got || !tol) return [name, { ok: false, text: `internal: ${got ? 'no tolerance for it' : 'not among the outputs'}` }]
    return [name, tol === 'bits' ? bitsEqual(got, valuesOf(want)) : closeToReference(got, want, tol)]
  }))
}

/** The case on `device` against the same case on `baseline` (the CPU backend). */
export function checkParity(c: OpCase, device: number, baseline: number): Verdict {
  const got = runCase(c, device)
  if ('error' in got) return { ok: false, text: `threw: ${got.error}` }
  const base = runCase(c, baseline)
  if ('error' in base) return { ok: false, text: `the baseline threw: ${base.error}` }
  const tol = c.parity ?? 1e-5
  return joinVerdicts(Object.entries(base.outputs).map(([name, b]): [string, Verdict] =>
    [name, tol === 'bits' ? bitsEqual(got.outputs[name], b) : closeToBackend(got.outputs[name], b, tol)]))
}

/** Microseconds per call, after a warm-up, bracketed by synchronize(). */
export function timePerf(p: PerfCase, device: number, iterations = p.iterations ?? 20): number {
  const io = new DeviceIO(device)
  try {
    const go = p.setup(io)
    for (let i = 0; i < Math.min(3, iterations); i++) go()
    native().synchronize(device)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) go()
    native().synchronize(device)
    return Number(process.hrtime.bigint() - t0) / 1e3 / iterations
  } finally {
    io.freeAll()
  }
}

// ---- the GPU run ---------------------------------------------------------------------------

interface Row { op: string; case: string; status: 'PASS' | 'FAIL' | 'INFO'; detail: string }

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const has = (flag: string) => args.includes(flag)
  const valueOf = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : null)
  const quick = has('--quick')
  const jsonPath = valueOf('--json')
  const only = valueOf('--only')
  const started = Date.now()
  // Imported here: the cases import this module.
  const { ALL_CASES } = await import('./cases/index.js')
  const { PERF_CASES, deviceChecks } = await import('./backend_ops_gpu.js')

  const N = native()
  const CPU = DEVICE_CODE.cpu, CUDA = DEVICE_CODE.cuda
  const probe = N.probeDevice(CUDA)
  const rehearsal = !probe.ok
  const device = rehearsal ? CPU : CUDA
  console.log(`addon: ${process.env.BERTKIT_ADDON_PATH ?? '(default)'} (cudaCompiled=${N.cudaCompiled})`)
  console.log(`cpu:   ${N.probeDevice(CPU).description}`)
  console.log(rehearsal ? `REHEARSAL: no usable GPU (${probe.reason}); the cuda side runs on the CPU` : `cuda:  ${probe.description}`)

  const rows: Row[] = []
  const record = (op: string, what: string, v: Verdict | null, info?: string) => {
    const status = v === null ? 'INFO' : v.ok ? 'PASS' : 'FAIL'
    const detail = v === null ? info! : v.text
    rows.push({ op, case: what, status, detail })
    console.log(`${status.padEnd(4)}  ${op.padEnd(22)} ${what.padEnd(48)} ${detail}`)
  }

  const sizes: CaseSize[] = quick ? ['quick'] : ['quick', 'full', 'big']
  for (const c of ALL_CASES) {
    if (!sizes.includes(c.size) || (only && c.op !== only)) continue
    const parity = checkParity(c, device, CPU)
    if (c.reference) {
      const ref = checkReference(c, device)
      record(c.op, c.label, { ok: parity.ok && ref.ok, text: `cpu: ${parity.text} | ref: ${ref.text}` })
    } else {
      record(c.op, c.label, { ok: parity.ok, text: `cpu: ${parity.text}` })
    }
  }
  if (!only) {
    for (const check of deviceChecks({ device, rehearsal, quick })) record(check.op, check.label, check.verdict)
    if (!quick && !has('--no-perf') && (!rehearsal || has('--rehearse-perf'))) {
      for (const p of PERF_CASES({ rehearsal })) {
        try {
          const us = timePerf(p, device, rehearsal ? 1 : p.iterations)
          const rates = [p.flop ? `${(p.flop / us / 1e6).toFixed(1)} TFLOP/s` : '', p.bytes ? `${(p.bytes / us / 1e3).toFixed(0)} GB/s` : '']
            .filter(Boolean).join(', ')
          console.log(`TIME  ${p.label}: ${us.toFixed(1)} us${rates ? ` (${rates})` : ''}`)
          rows.push({ op: 'time', case: p.label, status: 'INFO', detail: `${us.toFixed(1)} us${rates ? `, ${rates}` : ''}` })
        } catch (e) {
          record('time', p.label, { ok: false, text: `threw: ${(e as Error).message}` })
        }
      }
      N.setAllowTf32(device, false)
    }
  }
  const live = N.memoryStats().liveBuffers
  record('memory', 'no live buffers left', { ok: live === 0, text: `liveBuffers=${live}` })

  const count = (s: Row['status']) => rows.filter((r) => r.status === s).length
  const line = `backend-ops${rehearsal ? ' (REHEARSAL on cpu)' : ''}: ${count('PASS')} passed, ${count('FAIL')} failed ` +
    `in ${((Date.now() - started) / 1000).toFixed(1)}s`
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ rehearsal, device: rehearsal ? probe.reason : probe.description, results: rows }, null, 1))
  console.log(line)
  process.exitCode = count('FAIL') > 0 ? 1 : rehearsal && !has('--allow-rehearsal') ? 2 : 0
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
}
