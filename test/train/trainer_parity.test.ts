// The Trainer against transformers' Trainer (test/fixtures/generators/make_trainer_fixture.py):
// the same tiny BERT, rows and arguments (20 steps, 5 warm-up steps, weight
// decay groups, clipping, gradient accumulation 2, rows in dataset order) give
// the same loss, gradient norm and learning rate at every step and the same
// final weights.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertForSequenceClassification } from '../../lib/index.js'
import { Dataset } from '../../lib/data/dataset.js'
import { DataCollatorWithPadding } from '../../lib/data/data_collator.js'
import { Trainer } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { closePerTensor } from '../helpers/golden.js'

const dir = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'trainer', 'bert_tiny')

interface Step { step: number; epoch: number; loss: number; grad_norm: number; learning_rate: number }
interface Expected {
  training_args: {
    learning_rate: number; per_device_train_batch_size: number; gradient_accumulation_steps: number; num_train_epochs: number
    warmup_steps: number; lr_scheduler_type: 'linear'; weight_decay: number; max_grad_norm: number; seed: number
    adam_beta1: number; adam_beta2: number; adam_epsilon: number
  }
  pad_token_id: number
  steps: Step[]
  train_loss: number
  global_step: number
  parameter_names: string[]
  decay_parameter_names: string[]
}

const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected
const rows = (JSON.parse(readFileSync(join(dir, 'data.json'), 'utf8')) as { rows: Array<{ input_ids: number[]; labels: number }> }).rows

function argsFor(outputDir: string): TrainingArguments {
  const a = expected.training_args
  return new TrainingArguments(outputDir, {
    learningRate: a.learning_rate, perDeviceTrainBatchSize: a.per_device_train_batch_size,
    gradientAccumulationSteps: a.gradient_accumulation_steps, numTrainEpochs: a.num_train_epochs,
    warmupSteps: a.warmup_steps, lrSchedulerType: a.lr_scheduler_type, weightDecay: a.weight_decay,
    maxGradNorm: a.max_grad_norm, seed: a.seed, adamBeta1: a.adam_beta1, adamBeta2: a.adam_beta2, adamEpsilon: a.adam_epsilon,
    trainSamplingStrategy: 'sequential', loggingSteps: 1, saveStrategy: 'no', disableTqdm: true, plotCurves: false,
  })
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30)

t.test('20 steps of the Trainer equal transformers\' Trainer: losses, gradient norms, learning rates, final weights', async (t) => {
  const out = mkdtempSync(join(os.tmpdir(), 'bertkit-parity-'))
  const model = await BertForSequenceClassification.fromPretrained(dir)
  t.same([...model.namedParameters()].map(([n]) => n), expected.parameter_names, 'the same parameters in the same order')
  const trainer = new Trainer({
    model, args: argsFor(out), trainDataset: Dataset.fromRows(rows),
    dataCollator: DataCollatorWithPadding({ tokenizer: expected.pad_token_id }),
  })
  const result = await trainer.train()
  t.equal(result.globalStep, expected.global_step, `${expected.global_step} optimizer steps`)
  const logged = trainer.state.logHistory.filter((e) => 'loss' in e && !('trainLoss' in e))
  t.equal(logged.length, expected.steps.length, 'one log entry per step')
  let worstLoss = 0, worstNorm = 0, worstLr = 0
  for (let i = 0; i < Math.min(logged.length, expected.steps.length); i++) {
    const got = logged[i], want = expected.steps[i]
    const dl = relative(got.loss, want.loss), dn = relative(got.gradNorm, want.grad_norm)
    const dlr = Math.abs(got.learningRate - want.learning_rate)
    if (got.step !== want.step) t.fail(`entry ${i}: step ${got.step}, transformers ${want.step}`)
    if (Math.abs(got.epoch - want.epoch) > 1e-4) t.fail(`step ${want.step}: epoch ${got.epoch}, transformers ${want.epoch}`)
    if (!(dl <= 1e-5)) t.fail(`step ${want.step}: loss ${got.loss}, transformers ${want.loss} (relative ${dl.toExponential(2)})`)
    if (!(dn <= 1e-5)) t.fail(`step ${want.step}: grad norm ${got.gradNorm}, transformers ${want.grad_norm} (relative ${dn.toExponential(2)})`)
    // The schedule is computed in double on both sides: equal up to the last bits.
    if (!(dlr <= 1e-15)) t.fail(`step ${want.step}: learning rate ${got.learningRate}, transformers ${want.learning_rate}`)
    worstLoss = Math.max(worstLoss, dl); worstNorm = Math.max(worstNorm, dn); worstLr = Math.max(worstLr, dlr)
  }
  t.ok(worstLoss <= 1e-5, `every step's loss within 1e-5 relative (worst ${worstLoss.toExponential(2)})`)
  t.ok(worstNorm <= 1e-5, `every step's gradient norm (before clipping) within 1e-5 relative (worst ${worstNorm.toExponential(2)})`)
  t.ok(worstLr <= 1e-15, `every step's learning rate equal (worst |difference| ${worstLr.toExponential(2)})`)
  t.ok(relative(result.trainLoss, expected.train_loss) <= 1e-5, `train loss ${result.trainLoss} vs ${expected.train_loss}`)
  t.ok(expected.steps.filter((s) => s.grad_norm > expected.training_args.max_grad_norm).length >= 10, 'clipping acted on most steps')

  // Final weights. Per tensor: max |error| <= 2e-5 * max |reference| + 1e-7 (measured here: 6e-6 at
  // worst, 4e-6 with the scalar GEMM; 20 Adam steps amplify float32 rounding a little).
  const final = readSafetensors(join(dir, 'final.safetensors')).tensors
  const initial = readSafetensors(join(dir, 'model.safetensors')).tensors
  // Key biases add the same amount to every score of a query row, which softmax cancels: their
  // true gradient is 0 and both libraries hold rounding noise (~1e-9) there, which Adam divides
  // by sqrt(v) + 1e-8 and so turns into small steps of random sign. They cannot be compared
  // element by element; they must only stay far below what a real gradient would do (about lr
  // per element per step, as Adam normalises it).
  const keyBias = /attention\.self\.key\.bias$/
  const sumLr = expected.steps.reduce((s, e) => s + e.learning_rate, 0)
  const maxMove = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0)
  let worst = { name: '', relative: 0 }
  let compared = 0
  for (const [name, p] of model.namedParameters()) {
    const want = final.get(name)!.data as Float32Array
    const got = p.toFloat32Array()
    if (keyBias.test(name)) {
      const ours = maxMove(got, initial.get(name)!.data as Float32Array), theirs = maxMove(want, initial.get(name)!.data as Float32Array)
      t.ok(ours <= 0.1 * sumLr && theirs <= 0.1 * sumLr,
        `${name} (gradient 0 by design): moved at most ${ours.toExponential(2)} here, ${theirs.toExponential(2)} in transformers, both <= 0.1 x the sum of the rates (${(0.1 * sumLr).toExponential(2)})`)
      continue
    }
    compared++
    const c = closePerTensor(got, want, 2e-5)
    if (!c.ok) t.fail(`final ${name}: ${c.msg}`)
    if (c.relative > worst.relative) worst = { name, relative: c.relative }
  }
  const keyBiases = expected.parameter_names.filter((n) => keyBias.test(n)).length
  t.equal(compared, expected.parameter_names.length - keyBiases, `every parameter but the ${keyBiases} key biases compared element by element`)
  t.pass(`${compared} final weights within 2e-5 of transformers'; worst relative: ${worst.name} ${worst.relative.toExponential(2)}`)
  // The check can fail: every parameter moved by far more than the tolerance, and a LayerNorm
  // weight put in the decayed group would have shrunk by about lr * weight_decay per step.
  const moved = expected.parameter_names.filter((n) => !keyBias.test(n)).filter((n) => {
    const a = initial.get(n)!.data as Float32Array, b = final.get(n)!.data as Float32Array
    return closePerTensor(a, b, 1e-3).ok
  })
  t.same(moved, [], 'transformers moved every compared parameter by more than 1e-3 of its size')
  trainer.dispose()
  model.dispose()
  rmSync(out, { recursive: true, force: true })
})

t.test('the fixture\'s decay groups are bertkit\'s: no decay on biases and LayerNorm parameters', async (t) => {
  // transformers' rule (LayerNorm modules by type, "bias" by name) as recorded by the generator.
  const noDecay = expected.parameter_names.filter((n) => !expected.decay_parameter_names.includes(n))
  t.ok(noDecay.every((n) => n.endsWith('.bias') || n.includes('LayerNorm')), `${noDecay.length} parameters without decay`)
  t.ok(expected.decay_parameter_names.every((n) => n.endsWith('.weight') && !n.includes('LayerNorm')))
})

t.test('trainSamplingStrategy is checked and sequential keeps the dataset order', async (t) => {
  t.throws(() => new TrainingArguments('x', { trainSamplingStrategy: 'shuffled' as never }), /trainSamplingStrategy must be one of random, sequential, group_by_length, got "shuffled"/)
  t.throws(() => new TrainingArguments('x', { trainSamplingStrategy: 'sequential', groupByLength: true }), /groupByLength and trainSamplingStrategy "sequential" cannot both be set/)
})

t.test('with AdamW\'s deferred embedding rows the run is bit-identical to the dense one, so within tolerance of transformers', async (t) => {
  // The fixture's tables are small (40 x 32): lower the row-sparse threshold so that every
  // embedding table (word, position, token type) takes the lazy path against torch's trajectory.
  const { setRowSparseMinNumel } = await import('../../lib/tensor/row_sparse.js')
  const { native } = await import('../../lib/native.js')
  const N = native()
  const trainOnce = async (lazy: boolean) => {
    const out = mkdtempSync(join(os.tmpdir(), 'bertkit-parity-lazy-'))
    const previousMin = setRowSparseMinNumel(lazy ? 1 : Infinity)
    const previousEnv = process.env.BERTKIT_LAZY_ROWS
    process.env.BERTKIT_LAZY_ROWS = lazy ? '1' : '0'
    const adamwRows = N.adamwRows
    let calls = 0
    N.adamwRows = (...a) => { calls++; return adamwRows(...a) }
    try {
      const model = await BertForSequenceClassification.fromPretrained(dir)
      const trainer = new Trainer({ model, args: argsFor(out), trainDataset: Dataset.fromRows(rows), dataCollator: DataCollatorWithPadding({ tokenizer: expected.pad_token_id }) })
      const result = await trainer.train()
      const weights = new Map([...model.namedParameters()].map(([n, p]) => [n, p.toFloat32Array()]))
      trainer.dispose()
      model.dispose()
      return { result, weights, calls }
    } finally {
      N.adamwRows = adamwRows
      setRowSparseMinNumel(previousMin)
      if (previousEnv === undefined) delete process.env.BERTKIT_LAZY_ROWS
      else process.env.BERTKIT_LAZY_ROWS = previousEnv
      rmSync(out, { recursive: true, force: true })
    }
  }
  const lazy = await trainOnce(true)
  const dense = await trainOnce(false)
  t.ok(lazy.calls >= 3 * expected.global_step, `the lazy run deferred rows of the three tables (${lazy.calls} adamwRows calls)`)
  t.equal(dense.calls, 0, 'the dense run deferred nothing')
  t.equal(lazy.result.trainLoss, dense.result.trainLoss, 'the same train loss')
  const differing = [...dense.weights].filter(([n, w]) => Buffer.compare(Buffer.from(w.buffer), Buffer.from(lazy.weights.get(n)!.buffer)) !== 0).map(([n]) => n)
  t.same(differing, [], 'every final weight bit-identical')
  const final = readSafetensors(join(dir, 'final.safetensors')).tensors
  for (const name of ['bert.embeddings.word_embeddings.weight', 'bert.embeddings.position_embeddings.weight', 'bert.embeddings.token_type_embeddings.weight']) {
    const c = closePerTensor(lazy.weights.get(name)!, final.get(name)!.data as Float32Array, 2e-5)
    t.ok(c.ok, `${name} (deferred rows) vs transformers: ${c.msg}`)
  }
})
