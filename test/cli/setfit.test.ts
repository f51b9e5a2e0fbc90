// bertkit setfit: sample, train both phases, evaluate, save, print the
// results JSON; flags that cannot work are named.
import t from 'tap'
import { mkdtempSync, writeFileSync, rmSync, readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { main } from '../../lib/cli/main.js'
import { runSetfit, sampleDigest } from '../../lib/cli/setfit.js'
import { SetFitModel } from '../../lib/setfit/index.js'
import { Dataset } from '../../lib/data/dataset.js'

const tiny = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit', 'tiny_st')
const texts = ['a good movie', 'a bad movie', 'great fun', 'awful', 'i loved it', 'i hated it', 'so good', 'so bad', 'brilliant film', 'boring film', 'charming', 'tedious']

async function captured(argv: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')) }
  try {
    const code = await main(argv)
    return { code, out: lines.join('\n') }
  } finally {
    console.log = log
  }
}

t.test('bertkit setfit trains, evaluates, saves and reports', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-setfit-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const data = join(dir, 'data')
  const csv = (rows: string[]) => 'sentence,y\n' + rows.map((x, i) => `"${x}",${i % 2 === 0 ? 'pos' : 'neg'}`).join('\n') + '\n'
  rmSync(data, { recursive: true, force: true })
  const { mkdirSync } = await import('node:fs')
  mkdirSync(data)
  writeFileSync(join(data, 'train.csv'), csv(texts))
  writeFileSync(join(data, 'test.csv'), csv(texts.slice(0, 6)))
  const out = join(dir, 'model')
  const { code, out: stdout } = await captured(['setfit', '--model', tiny, '--dataset', data, '--text-column', 'sentence', '--label-column', 'y',
    '--num-samples', '3', '--seed', '5', '--batch-size', '4', '--output-dir', out, '--results', join(dir, 'r.json'), '--no-progress', '--device', 'cpu'])
  t.equal(code, 0)
  const r = JSON.parse(stdout)
  t.equal(r.train.trainSamples, 6, '3 per label')
  t.ok(r.train.globalStep > 0 && Number.isFinite(r.train.embeddingLoss), 'phase 1 ran')
  t.equal(r.eval.eval_samples, 6)
  t.ok(r.eval.accuracy >= 0 && r.eval.accuracy <= 1)
  t.match(r.train.trainSampleSha256, /^[0-9a-f]{64}$/)
  t.same(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')), r, '--results holds the same JSON')
  t.ok(existsSync(join(out, 'model_head.json')) && existsSync(join(out, 'modules.json')))
  const model = await SetFitModel.fromPretrained(out)
  t.same(model.labels, ['neg', 'pos'], 'string classes saved as labels')
  t.ok(['neg', 'pos'].includes(model.predict('so good') as string))
  model.dispose()
})

t.test('bertkit setfit --differentiable-head', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-setfit-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'train.jsonl'), texts.map((x, i) => JSON.stringify({ text: x, label: i % 3 })).join('\n') + '\n')
  const { code, out } = await captured(['setfit', '--model', tiny, '--dataset', join(dir, 'train.jsonl'), '--eval-split', 'none',
    '--num-samples', '0', '--max-steps', '2', '--num-epochs', '1,2', '--differentiable-head', '--output-dir', join(dir, 'model'), '--no-progress'])
  t.equal(code, 0)
  t.equal(JSON.parse(out).train.trainSamples, 12, '--num-samples 0: the whole split')
  const model = await SetFitModel.fromPretrained(join(dir, 'model'))
  t.equal(model.hasDifferentiableHead, true)
  t.equal(model.predictProba('so good').length, 3, 'a head as wide as the classes')
  model.dispose()
})

t.test('the sample digest is the one Python computes over [text, label] rows', async (t) => {
  const ds = Dataset.fromColumns({ text: ['a', 'é "x"'], label: [1, 0] })
  // hashlib.sha256(json.dumps([["a",1],["é \"x\"",0]], ensure_ascii=False, separators=(",",":")).encode()).hexdigest()
  t.equal(sampleDigest(ds), require('node:crypto').createHash('sha256').update('[["a",1],["é \\"x\\"",0]]').digest('hex'))
})

t.test('bad flags are named', async (t) => {
  await t.rejects(runSetfit(['--dataset', 'x']), /--model is required/)
  await t.rejects(runSetfit(['--model', tiny, '--lerning-rate', '1']), /unknown flag --lerning-rate for setfit/)
  await t.rejects(runSetfit(['--model', tiny, '--dataset', 'x', '--batch-size', '16,2,1']), /--batch-size: expected A or A,B, got "16,2,1"/)
  await t.rejects(runSetfit(['--model', tiny, '--dataset', 'x', '--sampling-strategy', 'most']), /--sampling-strategy: expected oversampling \| undersampling \| unique/)
  await t.rejects(runSetfit(['--model', tiny, '--dataset', 'x', '--num-epochs', 'one']), /--num-epochs: expected a number, got "one"/)
  await t.rejects(runSetfit(['--model', tiny, '--dataset', 'x', '--metric', 'auc']), /--metric: expected accuracy \| f1 \| precision \| recall/)
  await t.rejects(runSetfit(['--model', tiny, '--dataset', 'x', '--data-dir', '/tmp']), /--data-dir reads the raw rt-polarity files/)
  const { out } = await captured(['setfit', '--help'])
  t.match(out, /bertkit setfit — few-shot classification with SetFit/)
})
