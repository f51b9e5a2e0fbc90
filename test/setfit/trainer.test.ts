// setfit's Trainer against Python setfit (test/fixtures/generators/make_setfit_fixtures.py,
// dropout 0 so both compute the same function): phase 1 gives the same loss,
// learning rate and gradient norm at every step and the same body after it;
// phase 2 the same LogisticRegression; a multi-label run and SetFitHead
// training likewise. Then saving, loading and the errors.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { Dataset } from '../../lib/data/dataset.js'
import { SetFitModel, SetFitHead, Trainer, SetFitTrainer, TrainingArguments } from '../../lib/setfit/index.js'
import { LogisticRegression, MultiLabelLogisticRegression } from '../../lib/sklearn/linear_model.js'
import { closePerTensor } from '../helpers/golden.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit')
const tiny = join(fixtures, 'tiny_st')
const f = JSON.parse(readFileSync(join(fixtures, 'trainer.json'), 'utf8'))
const heads = JSON.parse(readFileSync(join(fixtures, 'setfit_head.json'), 'utf8'))

function close(t: tap.Test, label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = 1e-7): void {
  const c = closePerTensor(actual, expected, rtol, atol)
  t.ok(c.ok, `${label}: ${c.msg}`)
}

t.test('phase 1 and the LogisticRegression head equal setfit step for step', async (t) => {
  const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu' })
  t.teardown(() => model.dispose())
  const args = new TrainingArguments({ numEpochs: f.args.num_epochs, batchSize: f.args.batch_size, loggingSteps: f.args.logging_steps, showProgressBar: false })
  const trainer = new Trainer({ model, args, trainDataset: Dataset.fromColumns({ text: f.texts, label: f.labels }) })
  const out = trainer.train()
  t.equal(out.globalStep, f.losses.length, 'as many steps (2 epochs of ceil(pairs / 4))')
  close(t, 'loss of every step', trainer.logHistory.map((l) => l.embedding_loss!), f.losses, 1e-5, 1e-6)
  close(t, 'learning rate of every step (warm-up, then linear decay)', trainer.logHistory.map((l) => l.learning_rate!), f.learning_rates, 1e-9, 0)
  close(t, 'gradient norm of every step (before clipping to 1)', trainer.logHistory.map((l) => l.grad_norm!), f.grad_norms, 1e-4)
  const final = readSafetensors(join(fixtures, 'trainer_final.safetensors')).tensors
  let checked = 0
  for (const [name, p] of model.modelBody.transformer.auto_model.namedParameters()) {
    const e = final.get(name)!.data as Float32Array
    if (name.endsWith('attention.self.key.bias')) {
      // Softmax ignores a shift shared by all keys, so this gradient is zero but for rounding, and
      // AdamW turns rounding noise into steps of about lr: both libraries move it by noise only.
      const moved = Math.max(...Array.from(p.toFloat32Array(), (v, i) => Math.abs(v - e[i])))
      t.ok(moved < 30 * 2e-5 * 1.5, `${name} (zero-by-design gradient): within ${moved.toExponential(2)} of setfit's, below steps · lr`)
      continue
    }
    close(t, name, p.toFloat32Array(), e, 1e-4)
    checked++
  }
  t.ok(checked > 30, `${checked} tensors compared`)
  const head = model.modelHead as LogisticRegression
  t.equal(head.nIter_, f.n_iter, 'lbfgs iterations')
  close(t, 'head coefficients', head.coef_![0], f.coef[0], 1e-4)
  close(t, 'head intercept', head.intercept_!, f.intercept, 1e-4, 1e-6)
  close(t, 'predict_proba', model.predictProba(f.probe).flat(), f.proba.flat(), 1e-5, 1e-6)
})

t.test('multi-label: one-vs-rest head, pairs sharing a label, num_iterations', async (t) => {
  const m = f.multilabel
  const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu', multiTargetStrategy: 'one-vs-rest' })
  t.teardown(() => model.dispose())
  const args = new TrainingArguments({ numEpochs: m.args.num_epochs, batchSize: m.args.batch_size, numIterations: m.args.num_iterations,
    l2Weight: m.args.l2_weight, seed: m.args.seed, loggingSteps: 1, showProgressBar: false })
  const trainer = new Trainer({ model, args, trainDataset: Dataset.fromColumns({ text: m.texts, label: m.labels }) })
  trainer.train()
  close(t, 'loss of every step', trainer.logHistory.map((l) => l.embedding_loss!), m.losses, 1e-5, 1e-6)
  close(t, 'gradient norms', trainer.logHistory.map((l) => l.grad_norm!), m.grad_norms, 1e-4, 1e-9)
  t.ok(model.modelHead instanceof MultiLabelLogisticRegression)
  close(t, 'predict_proba (per label)', model.predictProba(f.probe).flat(), m.proba.flat(), 1e-5, 1e-6)
  t.same(model.predict(f.probe), m.predict, 'predict: a 0/1 vector per text')
})

for (const run of heads.runs) {
  t.test(`SetFitHead trained by SetFitModel.fit (end_to_end ${run.end_to_end}, ${run.num_epochs} epochs) equals setfit's`, async (t) => {
    const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu', useDifferentiableHead: true, headParams: { outFeatures: 2 } })
    t.teardown(() => model.dispose())
    const head = model.modelHead as SetFitHead
    head.loadStateDict(new Map([['linear.weight', Float32Array.from(run.init.weight.flat())], ['linear.bias', Float32Array.from(run.init.bias)]]))
    model.fit(heads.texts, heads.labels, {
      numEpochs: run.num_epochs, batchSize: run.batch_size, bodyLearningRate: run.body_learning_rate, headLearningRate: run.head_learning_rate,
      l2Weight: run.l2_weight, endToEnd: run.end_to_end, showProgressBar: false, shuffle: false,
    })
    close(t, 'head weight', head.linear.weight.toFloat32Array(), run.final.weight.flat(), 1e-4)
    close(t, 'head bias', head.linear.bias!.toFloat32Array(), run.final.bias, 1e-4, 1e-6)
    close(t, 'predict_proba', model.predictProba(heads.probe).flat(), run.proba.flat(), 1e-5, 1e-6)
    t.ok(model.modelBody.parameters().every((p) => p.requiresGrad), 'the body is trainable again afterwards')
  })
}

async function trained(options: Parameters<typeof SetFitModel.fromPretrained>[1] = {}, labels: unknown[] = f.labels): Promise<SetFitModel> {
  const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu', ...options })
  const args = new TrainingArguments({ maxSteps: 2, batchSize: 4, numEpochs: [1, 2], showProgressBar: false })
  new Trainer({ model, args, trainDataset: Dataset.fromColumns({ text: f.texts, label: labels }) }).train()
  return model
}

t.test('savePretrained / fromPretrained: the body as sentence-transformers files, the head as model_head.json', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-setfit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cases: Array<[string, SetFitModel]> = [
    ['logistic', await trained()],
    ['string labels', await trained({}, f.labels.map((l: number) => (l ? 'positive' : 'negative')))],
    ['one-vs-rest', await trained({ multiTargetStrategy: 'one-vs-rest' }, f.labels.map((l: number) => [l, 1 - l, 0]))],
    ['SetFitHead', await trained({ useDifferentiableHead: true, headParams: { outFeatures: 2 } })],
  ]
  for (const [name, model] of cases) {
    const out = join(dir, name)
    model.savePretrained(out)
    for (const file of ['modules.json', 'model.safetensors', 'config.json', 'tokenizer.json', 'config_setfit.json', 'model_head.json', '1_Pooling/config.json']) {
      t.ok(existsSync(join(out, file)), `${name}: ${file}`)
    }
    t.notOk(existsSync(join(out, 'model_head.pkl')), 'no pickle')
    const back = await SetFitModel.fromPretrained(out, { device: 'cpu' })
    t.same(back.predictProba(f.probe), model.predictProba(f.probe), `${name}: the same probabilities after reloading`)
    t.same(back.predict(f.probe), model.predict(f.probe), `${name}: the same predictions`)
    t.equal(back.multiTargetStrategy, model.multiTargetStrategy)
    back.dispose()
    model.dispose()
  }
  const labels = JSON.parse(readFileSync(join(dir, 'string labels', 'config_setfit.json'), 'utf8'))
  t.same(labels, { normalize_embeddings: false, labels: ['negative', 'positive'] }, 'string classes become the labels, as setfit')
})

t.test('a Python-trained model with model_head.pkl is refused with the conversion to run', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-setfit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu' })
  model.modelBody.save(dir)
  model.dispose()
  writeFileSync(join(dir, 'model_head.pkl'), Buffer.from([0x80, 0x04, 0x95]))
  const err = await SetFitModel.fromPretrained(dir).then(() => null, (e: Error) => e)
  t.ok(err, 'refused')
  t.match(err!.message, /model_head\.pkl: the head of this SetFit model is a Python pickle, which bertkit does not load/)
  t.match(err!.message, /python3 -c "import joblib,json,sys; d=sys\.argv\[1\]; h=joblib\.load\(d\+'\/model_head\.pkl'\)/, 'gives the one-line conversion')
  t.match(err!.message, /scripts\/tools\/setfit_head\.py to-json/, 'and the helper for other heads')
  writeFileSync(join(dir, 'model_head.json'), JSON.stringify({ head_type: 'SVC' }))
  await t.rejects(SetFitModel.fromPretrained(dir), /head_type "SVC" is not one of LogisticRegression, OneVsRestClassifier, MultiOutputClassifier, SetFitHead/)
  writeFileSync(join(dir, 'model_head.json'), '{"head_type": "LogisticRegression", ')
  await t.rejects(SetFitModel.fromPretrained(dir), /model_head\.json: not valid JSON/)
  writeFileSync(join(dir, 'model_head.json'), JSON.stringify({ head_type: 'SetFitHead', params: { in_features: 32, out_features: 2, temperature: 1, eps: 1e-5, bias: true, multitarget: false }, weight: [[1]], bias: [0, 0] }))
  await t.rejects(SetFitModel.fromPretrained(dir), /"weight" must be 2 rows of 32 numbers/)
})

t.test('arguments, datasets and labels that cannot work are named', async (t) => {
  t.throws(() => new TrainingArguments({ batchSize: [16, 0] }), /batchSize\[1\] must be a positive integer/)
  t.throws(() => new TrainingArguments({ warmupProportion: 1.5 }), /warmup_proportion must be greater than or equal to 0.0 and less than or equal to 1.0! But it was: 1.5/)
  t.throws(() => new TrainingArguments({ samplingStrategy: 'random' as 'unique' }), /samplingStrategy must be one of oversampling, undersampling, unique/)
  t.throws(() => new TrainingArguments({ bodyLearningRate: [1e-5] as unknown as number }), /bodyLearningRate must be a number or a pair of numbers/)
  t.throws(() => new TrainingArguments({ learningRate: 1 } as unknown as object), /unknown argument "learningRate"/)
  t.throws(() => new TrainingArguments({ loss: 'SupConLoss' as 'CosineSimilarityLoss' }), /loss "SupConLoss" is not implemented/)
  const a = new TrainingArguments({ batchSize: 8, numEpochs: [2, 3], bodyLearningRate: 3e-5 })
  t.same([a.embeddingBatchSize, a.classifierBatchSize, a.embeddingNumEpochs, a.classifierNumEpochs, a.bodyEmbeddingLearningRate, a.bodyClassifierLearningRate], [8, 8, 2, 3, 3e-5, 3e-5])
  t.equal(a.update({ seed: 3 }).seed, 3)
  const model = await SetFitModel.fromPretrained(tiny, { device: 'cpu' })
  t.teardown(() => model.dispose())
  t.throws(() => new Trainer({ model, trainDataset: Dataset.fromColumns({ sentence: ['a'], label: [0] }) }), /expected the training dataset to have the columns \["label", "text"\], but only the columns \["label","sentence"\] were found/)
  const mapped = new Trainer({ model, trainDataset: Dataset.fromColumns({ sentence: ['a', 'b'], y: [0, 1] }), columnMapping: { sentence: 'text', y: 'label' } })
  t.same(mapped.trainDataset!.columnNames.sort(), ['label', 'text'])
  t.throws(() => new Trainer({ model, trainDataset: Dataset.fromColumns({ text: ['a'], label: [0] }), columnMapping: { sentence: 'text' } }), /The column mapping expected the columns \["sentence"\]/)
  t.throws(() => new Trainer({ model }).evaluate(), /no evaluation dataset provided/)
  t.throws(() => new Trainer({ model }).train(), /training requires a trainDataset/)
  const bad = new Trainer({ model, trainDataset: Dataset.fromColumns({ text: ['a', 'b'], label: [0, { x: 1 }] }) })
  t.throws(() => bad.train(), /training dataset row 1: "label" is \{"x":1\}/)
  t.throws(() => new Trainer({ model, trainDataset: Dataset.fromColumns({ text: ['a', 'b'], label: [1, 1] }) }).train(), /no negative pair/)
  await t.rejects(SetFitModel.fromPretrained(tiny, { multiTargetStrategy: 'classifier-chain' as 'one-vs-rest' }), /"classifier-chain" is not supported by bertkit/)
  t.throws(() => model.predict([1 as unknown as string]), /inputs\[0\] is number, not a string/)
  t.throws(() => model.predict(['a']), /not fitted yet; call fit first/)
})

t.test('evaluate: accuracy by default, other metrics by name or function, string labels encoded', async (t) => {
  const model = await trained({}, f.labels.map((l: number) => (l ? 'pos' : 'neg')))
  t.teardown(() => model.dispose())
  const evalDataset = Dataset.fromColumns({ text: f.texts, label: f.labels.map((l: number) => (l ? 'pos' : 'neg')) })
  const preds = model.predict(f.texts as string[]) as string[]
  const acc = preds.filter((p, i) => p === evalDataset.column('label')[i]).length / f.texts.length
  t.same(new Trainer({ model, evalDataset }).evaluate(), { accuracy: acc })
  t.ok('f1' in new SetFitTrainer({ model, evalDataset, metric: 'f1' }).evaluate())
  t.same(new Trainer({ model, evalDataset, metric: (p, y) => ({ n: p.length + y.length }) }).evaluate(), { n: 20 })
})
