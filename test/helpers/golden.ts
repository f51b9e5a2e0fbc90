import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { tidy, type Tensor } from '../../lib/tensor/index.js'

// Comparison against golden tensors from transformers: per tensor,
// max |actual - expected| <= rtol * max |expected| + atol (an elementwise
// relative test would fail on values near zero even for float64-vs-float32 torch).
export function closePerTensor(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = 1e-7) {
  let maxRef = 0, maxErr = 0, at = -1
  for (let i = 0; i < expected.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(expected[i]))
    const err = Math.abs(actual[i] - expected[i])
    if (!(err <= maxErr)) {
      maxErr = Number.isNaN(err) ? Infinity : err
      at = i
    }
  }
  const ok = actual.length === expected.length && maxErr <= rtol * maxRef + atol
  return {
    ok,
    relative: maxErr / Math.max(maxRef, 1e-30),
    msg: `max |err| ${maxErr.toExponential(2)} at [${at}] (max |ref| ${maxRef.toExponential(2)}, allowed ${(rtol * maxRef + atol).toExponential(2)})`,
  }
}

/** What the golden-fixture checks need of a sequence-classification model. */
interface GoldenModel {
  eval(): unknown
  namedParameters(): Iterable<[string, Tensor]>
  loadingInfo?: { missingKeys: string[]; unexpectedKeys: string[] } | null
}

/** A model loaded from a fixture directory has every parameter, nothing left over, and transformers' names, order and shapes. */
export function checkLoadedLikeTransformers(t: tap.Test, dir: string, model: GoldenModel): string[] {
  const meta = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { parameter_names: string[]; parameter_shapes: Record<string, number[]> }
  t.same(model.loadingInfo!.missingKeys, [], 'every parameter came from the checkpoint')
  t.same(model.loadingInfo!.unexpectedKeys, [], 'nothing in the checkpoint is left over')
  const names = [...model.namedParameters()].map(([n]) => n)
  t.same(names, meta.parameter_names, 'names and order equal transformers\' named_parameters()')
  t.same(Object.fromEntries([...model.namedParameters()].map(([n, p]) => [n, [...p.shape]])), meta.parameter_shapes, 'shapes equal')
  return names
}

/**
 * Logits and loss (1e-5) and every parameter's gradient (1e-4) of `run` — the
 * model's forward on the fixture's inputs, called inside a scope — against the
 * fixture's expected.safetensors.
 */
export function checkAgainstGolden(t: tap.Test, label: string, dir: string, model: GoldenModel,
  run: () => { logits: Tensor; loss: Tensor | null }): void {
  const expected = readSafetensors(join(dir, 'expected.safetensors')).tensors
  model.eval()
  tidy(() => {
    const out = run()
    const logits = closePerTensor(out.logits.toFloat32Array(), expected.get('logits')!.data as Float32Array, 1e-5)
    t.ok(logits.ok, `logits: ${logits.msg}`)
    const loss = closePerTensor(out.loss!.toFloat32Array(), expected.get('loss')!.data as Float32Array, 1e-5)
    t.ok(loss.ok, `loss: ${loss.msg}`)
    t.comment(`${label}: logits relative error ${logits.relative.toExponential(2)}, loss ${loss.relative.toExponential(2)}`)
    out.loss!.backward()
  })
  const checked: Array<{ name: string; relative: number; maxRef: number }> = []
  let count = 0
  for (const [n, p] of model.namedParameters()) {
    count++
    const ref = expected.get(`grad.${n}`)
    if (!ref) {
      t.fail(`no expected gradient for ${n}`)
      continue
    }
    const got = p.grad ? p.grad.toFloat32Array() : new Float32Array(p.numel)
    const c = closePerTensor(got, ref.data as Float32Array, 1e-4)
    if (!c.ok) t.fail(`gradient of ${n}: ${c.msg}`)
    checked.push({ name: n, relative: c.relative, maxRef: (ref.data as Float32Array).reduce((m, v) => Math.max(m, Math.abs(v)), 0) })
  }
  // Key biases shift every score of a query row alike, which softmax cancels: their true
  // gradient is 0 and both sides hold rounding noise, so they are left out of the worst ratio.
  const largest = Math.max(...checked.map((c) => c.maxRef))
  const zero = checked.filter((c) => !(c.maxRef > 1e-6 * largest)).map((c) => c.name)
  const worst = checked.filter((c) => c.maxRef > 1e-6 * largest).reduce((w, c) => (c.relative > w.relative ? c : w), { name: '', relative: 0, maxRef: 0 })
  t.equal(checked.length, count, `all ${count} gradients within 1e-4; worst relative (non-zero gradients): ${worst.name} ${worst.relative.toExponential(2)}` +
    (zero.length ? `; ${zero.length} zero by design left out of that ratio: ${zero.join(', ')}` : ''))
}
