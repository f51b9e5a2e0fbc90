// Every transformers activation name bertkit computes, in every family's
// config field that takes one (hidden_act; DistilBERT's activation; DeBERTa's
// hidden_act and pooler_hidden_act): logits, loss and gradients of a tiny
// model against transformers' own (test/fixtures/generators/make_parity_fixtures.py).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AutoModelForSequenceClassification, tensor, tidy, type Tensor } from '../../lib/index.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { goldenIds, relErr } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')
const meta = JSON.parse(readFileSync(join(fixtures, 'parity', 'activations.json'), 'utf8')) as Record<string, unknown> & { activations: string[] }
const expected = readSafetensors(join(fixtures, 'parity', 'activations.safetensors')).tensors

function batchOf(dir: string, labels: number[]) {
  return { ...goldenIds(dir), labels: tensor(Int32Array.from(labels), { dtype: 'int32' }) }
}

for (const [family, raw] of Object.entries(meta)) {
  if (family === 'activations' || family === 'versions') continue
  const m = raw as { base: string; fields: string[]; labels: number[]; grads: string[] }
  t.test(`${family}: ${m.fields.join(' and ')} = each of transformers' activations`, async (t) => {
    const dir = join(fixtures, m.base)
    for (const act of meta.activations) {
      const model = await AutoModelForSequenceClassification.fromPretrained(dir, { config: Object.fromEntries(m.fields.map((f) => [f, act])) })
      const params = new Map<string, Tensor>(model.namedParameters())
      const got = tidy(() => {
        const out = model.forward(batchOf(dir, m.labels) as never)
        out.loss!.backward()
        return { logits: out.logits.toFloat32Array(), loss: out.loss!.toFloat32Array() }
      })
      const want = (k: string) => expected.get(`${family}/${act}/${k}`)!.data as Float32Array
      const logitErr = relErr(got.logits, want('logits'))
      const lossErr = relErr(got.loss, want('loss'))
      const gradErrs = m.grads.map((g) => relErr(params.get(g)!.grad!.toFloat32Array(), want(`grad.${g}`)))
      t.ok(logitErr <= 1e-5 && lossErr <= 1e-5, `${act}: logits (rel ${logitErr.toExponential(1)}) and loss (rel ${lossErr.toExponential(1)}) match transformers`)
      t.ok(gradErrs.every((e) => e <= 1e-4), `${act}: gradients of ${m.grads.join(', ')} match (rel ${gradErrs.map((e) => e.toExponential(1)).join(', ')})`)
      model.dispose()
    }
  })
}
