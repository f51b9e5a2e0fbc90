// Live reference (npm run test:reference; needs python3 with torch and
// transformers): a fresh random config of every family each run (BERT,
// RoBERTa, DistilBERT, DeBERTa-v2), each with a random activation among the
// ACT2FN names bertkit computes and a random kind of labels (class ids,
// regression, multi-label probabilities, DeBERTa's soft labels): logits, loss
// and every gradient against transformers. test/oracles/families_reference_live.py
// is the Python side.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification, tensor, tidy, type Tensor } from '../../lib/index.js'

const root = join(__dirname, '..', '..', '..')
const python = process.env.PYTHON ?? 'python3'

interface Case {
  family: string
  activation: string
  kind: string
  input_ids: number[][]
  attention_mask: number[][]
  labels: number[] | number[][]
  labels_dtype: 'int32' | 'float32'
  logits: number[]
  loss: number
  grads: Record<string, number[]>
}

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let err = a.length === b.length ? 0 : Infinity, ref = 0
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]))
    ref = Math.max(ref, Math.abs(b[i]))
  }
  return err / Math.max(ref, 1e-30)
}

const probe = spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' })
if (probe.status !== 0) {
  t.test('families reference suite', { skip: `python3 with torch and transformers is not available: ${probe.stderr.trim().split('\n').pop()}` }, () => {})
} else {
  const seed = Number(process.env.REFERENCE_SEED ?? Date.now() % 100000)
  const rounds = Number(process.env.FAMILIES_REFERENCE_ROUNDS ?? 3)
  t.comment(`random configs from seed ${seed} (REFERENCE_SEED=${seed} reproduces this run)`)
  for (let round = 0; round < rounds; round++) {
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-families-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const r = spawnSync(python, ['test/oracles/families_reference_live.py', 'make', dir, String(seed + round)], { encoding: 'utf8', cwd: root })
    if (r.status !== 0) throw new Error(`families_reference_live.py failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
    for (const family of ['bert', 'roberta', 'distilbert', 'deberta-v2']) {
      const c = JSON.parse(readFileSync(join(dir, family, 'case.json'), 'utf8')) as Case
      t.test(`round ${round}: ${family}, ${c.activation}, ${c.kind}`, async (t) => {
        const model = await AutoModelForSequenceClassification.fromPretrained(join(dir, family))
        const shape = [c.input_ids.length, c.input_ids[0].length]
        const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape, dtype: 'int32' })
        const flatLabels = (c.labels as Array<number | number[]>).flat()
        const labels = c.labels_dtype === 'int32'
          ? tensor(Int32Array.from(flatLabels), { dtype: 'int32' })
          : tensor(Float32Array.from(flatLabels), { shape: Array.isArray(c.labels[0]) ? [c.labels.length, (c.labels[0] as number[]).length] : [c.labels.length] })
        const params = new Map<string, Tensor>(model.namedParameters())
        const got = tidy(() => {
          const out = model.forward({ inputIds: ids(c.input_ids), attentionMask: ids(c.attention_mask), labels } as never)
          out.loss!.backward()
          return { logits: out.logits.toFloat32Array(), loss: out.loss!.item() }
        })
        t.ok(maxRel(got.logits, c.logits) <= 1e-5, `logits (rel ${maxRel(got.logits, c.logits).toExponential(2)})`)
        t.ok(Math.abs(got.loss - c.loss) <= 1e-5 * Math.max(Math.abs(c.loss), 1e-3), `loss ${got.loss} vs ${c.loss}`)
        let worst = 0, where = ''
        for (const [name, g] of Object.entries(c.grads)) {
          const p = params.get(name)
          if (!p) {
            t.fail(`transformers has a gradient for ${name}, bertkit has no such parameter`)
            continue
          }
          // A gradient that is zero by construction has no scale of its own.
          if (Math.max(...g.map(Math.abs)) <= 1e-6) continue
          const rel = maxRel(p.grad ? p.grad.toFloat32Array() : new Float32Array(p.numel), g)
          if (rel > worst) [worst, where] = [rel, name]
        }
        t.ok(worst <= 1e-4, `every gradient within 1e-4 (worst ${worst.toExponential(2)}${where ? ` at ${where}` : ''})`)
        labels.dispose()
        model.dispose()
      })
    }
  }
}
