import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification } from '../../lib/models/auto.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { tensor, tidy, type Tensor } from '../../lib/tensor/index.js'

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

/** max |a - b| relative to max |b| (plus a small absolute floor); Infinity when the lengths differ. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0, ref = 0
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Number.isNaN(a[i]) ? Infinity : Math.abs(a[i] - b[i]))
    ref = Math.max(ref, Math.abs(b[i]))
  }
  return a.length === b.length ? err / Math.max(ref, 1e-6) : Infinity
}

/** A golden fixture's inputs.json (test/fixtures/generators/*.py write it). */
export interface GoldenInputs {
  input_ids: number[][]
  attention_mask: number[][]
  token_type_ids?: number[][]
  labels: number[] | number[][]
}

export function readGoldenInputs(dir: string): GoldenInputs {
  return JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as GoldenInputs
}

/** A fixture's ids as int32 tensors [batch, seq]; token types null where the fixture has none. */
export function goldenIds(dir: string, raw: GoldenInputs = readGoldenInputs(dir)) {
  const shape = [raw.input_ids.length, raw.input_ids[0].length]
  const ids = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return {
    inputIds: ids(raw.input_ids),
    attentionMask: ids(raw.attention_mask),
    tokenTypeIds: raw.token_type_ids ? ids(raw.token_type_ids) : null,
  }
}

/**
 * A fixture's inputs as the batch a *ForSequenceClassification forward takes:
 * goldenIds and the labels typed by the problem type transformers picks
 * (class indices, or float targets for regression [batch] and multi-label
 * [batch, num_labels]).
 */
export function goldenBatch(dir: string, model: { config: { problem_type: string | null }; numLabels: number }) {
  const raw = readGoldenInputs(dir)
  const batch = raw.input_ids.length
  const kind = model.config.problem_type ?? (model.numLabels === 1 ? 'regression' : 'single_label_classification')
  const labels = kind === 'single_label_classification'
    ? tensor(Int32Array.from(raw.labels as number[]), { dtype: 'int32' })
    : tensor(Float32Array.from((raw.labels as number[] | number[][]).flat()), { shape: kind === 'regression' ? [batch] : [batch, model.numLabels] })
  return { ...goldenIds(dir, raw), labels }
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

/**
 * One tap test per fixture directory of `family` (e.g. "bert/odd"): the model
 * `load` reads from it has transformers' names, order and shapes, and its
 * logits, loss and gradients on the fixture's inputs match transformers'.
 */
export function testGoldenFixtures<M extends GoldenModel & { config: { problem_type: string | null }; numLabels: number; dispose(): void }>(
  family: string, fixtures: string, names: readonly string[], load: (dir: string) => Promise<M>,
  forward: (model: M, batch: ReturnType<typeof goldenBatch>) => { logits: Tensor; loss: Tensor | null }): void {
  for (const name of names) {
    t.test(`golden fixture ${family}/${name} matches transformers`, async (t) => {
      const dir = join(fixtures, name)
      const model = await load(dir)
      checkLoadedLikeTransformers(t, dir, model)
      checkAgainstGolden(t, `${family}/${name}`, dir, model, () => forward(model, goldenBatch(dir, model)))
      model.dispose()
    })
  }
}

type GoldenClassifier = { config: { problem_type: string | null }; numLabels: number; forward(batch: ReturnType<typeof goldenBatch>): { logits: Tensor } }

/**
 * AutoModelForSequenceClassification on the fixture `src` gives a `cls`;
 * that model, in eval mode, is saved into a temporary directory (removed at
 * teardown). Returns the model, the directory and the config.json written.
 */
export async function autoLoadAndSave<M extends { eval(): unknown; savePretrained(dir: string): void }>(t: tap.Test, src: string,
  cls: abstract new (...args: never[]) => M): Promise<{ model: M; dir: string; saved: Record<string, unknown> }> {
  const dir = mkdtempSync(join(os.tmpdir(), `bertkit-${cls.name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const loaded = await AutoModelForSequenceClassification.fromPretrained(src)
  t.ok(loaded instanceof cls, `model_type "${loaded.config.model_type}" gives ${cls.name}`)
  const model = loaded as unknown as M
  model.eval()
  model.savePretrained(dir)
  return { model, dir, saved: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown> }
}

/** `again` (the model saved and loaded back) computes bit-identical logits on the fixture src's inputs. */
export function checkReloadedLogits(t: tap.Test, src: string, model: GoldenClassifier, again: GoldenClassifier): void {
  tidy(() => {
    const a = model.forward(goldenBatch(src, model)).logits.toArray()
    const b = again.forward(goldenBatch(src, again)).logits.toArray()
    t.same(a, b, 'bit-identical logits after the round trip')
  })
}
