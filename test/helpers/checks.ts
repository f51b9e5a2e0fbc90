// What the op tests share besides the references: buffers freed when a test
// ends, and closeness assertions that keep the worst error per label.
import type { NativeBuffer } from '../../lib/native.js'
import { compare, freeAll } from './reference.js'

/**
 * Buffers freed when the test ends, whatever happens inside it:
 * `const buf = track(t); buf(f32Buffer(...))`; buf.freeNow() frees them
 * earlier (before a check that no buffer is left alive).
 */
export function track(t: tap.Test) {
  const made: NativeBuffer[] = []
  const freeNow = () => {
    freeAll(...made)
    made.length = 0
  }
  t.teardown(freeNow)
  const keep = <B extends NativeBuffer>(b: B): B => {
    made.push(b)
    return b
  }
  return Object.assign(keep, { freeNow })
}

/**
 * close(t, label, got, want, rtol, atol) asserts closeness (compare()) and
 * keeps the worst absolute / relative error per label; report(t) writes them
 * as comments and starts over.
 */
export function errorSummary() {
  const worst = new Map<string, { abs: number; rel: number }>()
  function close(t: tap.Test, label: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number) {
    const c = compare(got, want, rtol, atol)
    t.ok(c.ok, `${label}: ${c.message}`)
    const w = worst.get(label) ?? { abs: 0, rel: 0 }
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(got[i] - want[i])
      w.abs = Math.max(w.abs, err)
      if (Math.abs(want[i]) > 1e-3) w.rel = Math.max(w.rel, err / Math.abs(want[i]))
    }
    worst.set(label, w)
  }
  function report(t: tap.Test) {
    for (const [label, w] of worst) t.comment(`max error ${label}: abs ${w.abs.toExponential(2)}, rel ${w.rel.toExponential(2)}`)
    worst.clear()
  }
  return { close, report }
}
