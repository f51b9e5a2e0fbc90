// Float64 helpers for tests: a seeded generator, host<->buffer copies, and
// closeness checks that report the worst element.
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'

/** Deterministic generator (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** n values uniform in [lo, hi), rounded to float32 so the reference sees what the kernel sees. */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r())
  return out
}

export function f32Buffer(device: number, values: ArrayLike<number>): NativeBuffer {
  const b = new (native().NativeBuffer)(device, DTYPE_CODE.float32, values.length)
  b.write(Float32Array.from(values))
  return b
}

export function i32Buffer(device: number, values: ArrayLike<number>): NativeBuffer {
  const b = new (native().NativeBuffer)(device, DTYPE_CODE.int32, values.length)
  b.write(Int32Array.from(values))
  return b
}

/** A float32 buffer filled with NaN, so any element an op forgets to write shows up. */
export function poisoned(device: number, n: number): NativeBuffer {
  return f32Buffer(device, new Float32Array(n).fill(NaN))
}

export function zeros(device: number, n: number): NativeBuffer {
  return f32Buffer(device, new Float32Array(n))
}

export function readF64(b: NativeBuffer): Float64Array {
  return Float64Array.from(b.read() as Float32Array)
}

export interface Closeness {
  ok: boolean
  worstIndex: number
  worstError: number
  message: string
}

/**
 * |actual - expected| <= atol + rtol * |expected| for every element.
 * Returns a message naming the worst element for the assertion text.
 */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): Closeness {
  if (actual.length !== expected.length) {
    return { ok: false, worstIndex: -1, worstError: Infinity, message: `length ${actual.length} != ${expected.length}` }
  }
  let worstIndex = -1
  let worstRatio = 0
  let worstError = 0
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]
    const e = expected[i]
    const err = Math.abs(a - e)
    const allowed = atol + rtol * Math.abs(e)
    const ratio = Number.isNaN(err) ? Infinity : err / allowed
    if (ratio > worstRatio || worstIndex < 0) {
      worstRatio = ratio
      worstIndex = i
      worstError = err
    }
  }
  const ok = worstRatio <= 1
  const message = worstIndex < 0 ? 'empty' :
    `worst at [${worstIndex}]: got ${actual[worstIndex]}, want ${expected[worstIndex]} (|err| ${worstError.toExponential(3)}, rtol ${rtol}, atol ${atol})`
  return { ok, worstIndex, worstError, message }
}

/**
 * Central finite differences of a scalar function of x, in float64 on the host.
 * For float32 kernels use h around 1e-2..1e-3 and compare with rtol ~1e-2.
 */
export function finiteDifference(f: (x: Float64Array) => number, x: Float64Array, h: number): Float64Array {
  const grad = new Float64Array(x.length)
  const probe = Float64Array.from(x)
  for (let i = 0; i < x.length; i++) {
    const orig = probe[i]
    probe[i] = orig + h
    const fp = f(probe)
    probe[i] = orig - h
    const fm = f(probe)
    probe[i] = orig
    grad[i] = (fp - fm) / (2 * h)
  }
  return grad
}

/** Frees every buffer given; tests call it so leaks show in memoryStats(). */
export function freeAll(...buffers: Array<NativeBuffer | null | undefined>): void {
  for (const b of buffers) if (b && !b.freed) b.free()
}
