// Live reference suite (npm run test:reference; needs python3 with torch and
// transformers): fresh random BERT configs every run, against transformers:
// logits, loss and every gradient; bertkit's checkpoint loaded by
// transformers; and 10 training steps whose losses must agree to 1e-4.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { PYTHON, REPO_ROOT, pythonJson } from '../helpers/python.js'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertForSequenceClassification, tensor, tidy, AdamW, clipGradNorm, type Tensor } from '../../lib/index.js'
import { lrMultiplier } from '../../lib/train/scheduler.js'

const python = PYTHON
const py = pythonJson

const probe = spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' })
if (probe.status !== 0) {
  t.test('reference suite', { skip: `python3 with torch and transformers is not available: ${probe.stderr.trim().split('\n').pop()}` }, () => {})
} else {
  const runSeed = Number(process.env.REFERENCE_SEED ?? Date.now() % 100000)
  t.comment(`random configs from seed ${runSeed} (REFERENCE_SEED=${runSeed} reproduces this run)`)

  type Batch = { input_ids: number[][]; attention_mask: number[][]; token_type_ids: number[][]; labels: number[] }
  const toInputs = (b: Batch) => {
    const [batch, seq] = [b.input_ids.length, b.input_ids[0].length]
    const ids = (x: number[][]) => tensor(Int32Array.from(x.flat()), { shape: [batch, seq], dtype: 'int32' })
    return { inputIds: ids(b.input_ids), attentionMask: ids(b.attention_mask), tokenTypeIds: ids(b.token_type_ids), labels: tensor(Int32Array.from(b.labels), { dtype: 'int32' }) }
  }
  const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let err = 0, ref = 0
    for (let i = 0; i < b.length; i++) {
      err = Math.max(err, Math.abs(a[i] - b[i]))
      ref = Math.max(ref, Math.abs(b[i]))
    }
    return err / Math.max(ref, 1e-30)
  }
  const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number])

  for (let c = 0; c < 3; c++) {
    t.test(`random config ${c}`, async (t) => {
      const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-ref-'))
      const shape = py(['test/oracles/reference_live.py', 'make', dir, String(runSeed + c)])
      t.comment(JSON.stringify(shape))
      const ref = py(['test/oracles/bert_reference.py', dir, join(dir, 'inputs.json')]) as { logits: number[][]; loss: number; grads: Record<string, unknown>; parameter_names: string[] }
      const model = await BertForSequenceClassification.fromPretrained(dir)
      model.eval()
      t.same([...model.namedParameters()].map(([n]) => n), ref.parameter_names, 'names and order')
      const batch = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Batch
      tidy(() => {
        const out = model.forward(toInputs(batch))
        t.ok(maxRel(out.logits.toFloat32Array(), flat(ref.logits)) <= 1e-5, `logits within 1e-5 (${maxRel(out.logits.toFloat32Array(), flat(ref.logits)).toExponential(2)})`)
        t.ok(Math.abs(out.loss!.item() - ref.loss) <= 1e-5 * Math.abs(ref.loss), `loss ${out.loss!.item()} vs ${ref.loss}`)
        out.loss!.backward()
      })
      let worst = 0
      const zero: string[] = []
      for (const [n, p] of model.namedParameters()) {
        const g = flat(ref.grads[n])
        const mine = p.grad ? p.grad.toFloat32Array() : new Float32Array(p.numel)
        const rel = maxRel(mine, g)
        // A gradient that is zero by construction (key bias) has no scale of its own: both
        // sides hold rounding noise there, so it is held to the same absolute bound instead.
        const scale = Math.max(...g.map(Math.abs))
        if (scale > 1e-6) worst = Math.max(worst, rel)
        else {
          zero.push(n)
          const ours = mine.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
          if (!(ours <= 1e-6)) t.fail(`${n}: transformers' gradient is 0 by design (max |g| ${scale.toExponential(2)}), bertkit's max |g| is ${ours.toExponential(2)}`)
        }
      }
      t.ok(worst <= 1e-4, `every non-zero gradient within 1e-4 (worst ${worst.toExponential(2)})` +
        (zero.length ? `; ${zero.length} zero by design (${zero.join(', ')}) below 1e-6 on both sides` : ''))

      // bertkit saves, transformers loads: the same logits.
      const saved = join(dir, 'saved')
      model.savePretrained(saved)
      const back = py(['test/oracles/bert_reference.py', saved, join(dir, 'inputs.json'), '--no-grads']) as { logits: number[][] }
      t.ok(maxRel(flat(back.logits), flat(ref.logits)) <= 1e-6, 'transformers loads bertkit\'s checkpoint with the same logits')
      model.dispose()

      // Ten training steps, same data order, AdamW + linear warmup/decay + clipping at 1.0.
      const steps = 10
      const theirs = (py(['test/oracles/reference_live.py', 'train', dir, join(dir, 'batches.json'), String(steps)]) as { losses: number[] }).losses
      const trainee = await BertForSequenceClassification.fromPretrained(dir)
      trainee.train()
      const decay: Tensor[] = [], noDecay: Tensor[] = []
      for (const [n, p] of trainee.namedParameters()) (n.endsWith('bias') || n.includes('LayerNorm') ? noDecay : decay).push(p)
      const opt = new AdamW([{ params: decay, weightDecay: 0.01 }, { params: noDecay, weightDecay: 0 }], { lr: 1e-3 })
      const batches = JSON.parse(readFileSync(join(dir, 'batches.json'), 'utf8')) as Batch[]
      const ours: number[] = []
      for (let s = 0; s < steps; s++) {
        ours.push(tidy(() => {
          const out = trainee.forward(toInputs(batches[s % batches.length]))
          out.loss!.backward()
          const clip = clipGradNorm(trainee.parameters(), 1.0)
          for (const g of opt.paramGroups) g.lr = 1e-3 * lrMultiplier('linear', s, 2, steps)
          opt.step({ gradScale: clip.coefficient })
          opt.zeroGrad()
          return out.loss!.item()
        }))
      }
      const diffs = ours.map((l, i) => Math.abs(l - theirs[i]) / Math.abs(theirs[i]))
      t.ok(Math.max(...diffs) <= 1e-4, `10 losses agree to 1e-4 (worst ${Math.max(...diffs).toExponential(2)}): ${ours.map((l) => l.toFixed(5)).join(' ')}`)
      opt.dispose()
      trainee.dispose()
      rmSync(dir, { recursive: true, force: true })
    })
  }
}
