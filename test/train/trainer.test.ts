// The Trainer on a tiny BERT (the one_layer golden fixture) and synthetic
// data: learning happens, logs and checkpoints are written, a resumed run
// reproduces the uninterrupted run's losses exactly, bad input is refused.
import t from 'tap'
import { mkdtempSync, readdirSync, existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertForSequenceClassification, type Tensor } from '../../lib/index.js'
import { Dataset } from '../../lib/data/dataset.js'
import { Trainer } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { EarlyStoppingCallback } from '../../lib/train/callbacks.js'
import { accuracy } from '../../lib/train/metrics.js'
import { ONE_LAYER_BERT as fixture, padCollator as collator, syntheticDataset } from '../helpers/tiny_training.js'

async function run(outputDir: string, extra: Partial<ConstructorParameters<typeof TrainingArguments>[1]> = {}) {
  const model = await BertForSequenceClassification.fromPretrained(fixture, { numLabels: 2 })
  const args = new TrainingArguments(outputDir, {
    learningRate: 5e-3, perDeviceTrainBatchSize: 8, perDeviceEvalBatchSize: 16, numTrainEpochs: 3,
    loggingSteps: 1, saveStrategy: 'steps', saveSteps: 4, disableTqdm: true, seed: 3, ...extra,
  })
  const trainer = new Trainer({
    model, args, trainDataset: syntheticDataset(64, 1), evalDataset: syntheticDataset(32, 2), dataCollator: collator,
    computeMetrics: (p) => ({ accuracy: accuracy(p.labelIds!, p.predictedLabels) }),
  })
  return { model, trainer }
}

t.test('training learns, logs, checkpoints and rotates', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-trainer-'))
  const { model, trainer } = await run(dir, { saveTotalLimit: 2 })
  const before = await trainer.evaluate()
  const out = await trainer.train()
  const after = await trainer.evaluate()
  t.equal(out.globalStep, 24, '64 rows / batch 8 x 3 epochs')
  t.ok(out.epoch === 3, `epoch ${out.epoch}`)
  t.ok(after.evalLoss < before.evalLoss, `eval loss fell: ${before.evalLoss.toFixed(4)} → ${after.evalLoss.toFixed(4)}`)
  t.ok(after.evalAccuracy > 0.8, `eval accuracy ${after.evalAccuracy}`)
  t.ok(out.trainSamplesPerSecond > 0 && out.trainRuntime > 0)
  const losses = trainer.state.logHistory.filter((e) => 'loss' in e)
  t.equal(losses.length, 24, 'a loss entry per step (loggingSteps 1)')
  t.ok(losses.every((e) => 'gradNorm' in e && 'learningRate' in e))
  // Each entry logs the rate its step used, as transformers does: 5e-3 first, 5e-3 / 24 last.
  t.ok(Math.abs(losses[0].learningRate - 5e-3) < 1e-15 && Math.abs(losses[23].learningRate - 5e-3 / 24) < 1e-15, 'linear schedule, the rate each step used')
  t.same(readdirSync(dir).filter((d) => d.startsWith('checkpoint-')).sort(), ['checkpoint-20', 'checkpoint-24'], 'saveTotalLimit keeps the newest 2')
  t.ok(existsSync(join(dir, 'trainer_log.jsonl')) && existsSync(join(dir, 'training_curves.svg')))
  const state = JSON.parse(readFileSync(join(dir, 'checkpoint-24', 'trainer_state.json'), 'utf8'))
  t.equal(state.global_step, 24)
  // Exactly the fields of transformers' TrainerState (load_from_json passes every key to its constructor).
  t.same(Object.keys(state), ['best_global_step', 'best_metric', 'best_model_checkpoint', 'epoch', 'eval_steps', 'global_step', 'is_hyper_param_search',
    'is_local_process_zero', 'is_world_process_zero', 'log_history', 'logging_steps', 'max_steps', 'num_input_tokens_seen', 'num_train_epochs',
    'save_steps', 'stateful_callbacks', 'total_flos', 'train_batch_size', 'trial_name', 'trial_params'])
  t.same(Object.keys(state.log_history[1]).sort(), ['epoch', 'grad_norm', 'learning_rate', 'loss', 'step'], 'log_history keys as transformers writes them')
  t.same(Object.keys(state.log_history[0]).sort(), ['epoch', 'eval_accuracy', 'eval_loss', 'eval_runtime', 'eval_samples_per_second', 'eval_steps_per_second', 'step'])
  const final = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8'))
  t.equal(final.global_step, 24, 'trainer_state.json in the output dir too')
  t.match(final.log_history.find((e: Record<string, number>) => 'train_loss' in e), { train_loss: Number, train_runtime: Number, train_samples_per_second: Number, step: 24 })
  t.match(final.log_history.at(-1), { eval_loss: Number, step: 24 }, 'an evaluation after training refreshes it')
  const jsonl = readFileSync(join(dir, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(jsonl, final.log_history, 'trainer_log.jsonl streams the same entries')
  t.ok(existsSync(join(dir, 'report.html')), 'report.html')
  t.same(readdirSync(dir).filter((d) => d.startsWith('.tmp')), [], 'no temporary checkpoint directories left')
  const pred = await trainer.predict(syntheticDataset(8, 9))
  t.equal(pred.predictions.length, 16, 'predict returns logits [8, 2]')
  trainer.dispose()
  model.dispose()
  rmSync(dir, { recursive: true, force: true })
})

t.test('a resumed run reproduces the uninterrupted run (dropout on)', async (t) => {
  const full = mkdtempSync(join(os.tmpdir(), 'bertkit-full-'))
  const a = await run(full)
  await a.trainer.train()
  const fullLosses = a.trainer.state.logHistory.filter((e) => 'loss' in e).map((e) => e.loss)
  a.trainer.dispose()
  a.model.dispose()
  // A fresh model and trainer resume from the full run's checkpoint-12 (same schedule: same args).
  const part = mkdtempSync(join(os.tmpdir(), 'bertkit-part-'))
  const c = await run(part)
  await c.trainer.train({ resumeFromCheckpoint: join(full, 'checkpoint-12') })
  const resumed = c.trainer.state.logHistory.filter((e) => 'loss' in e).map((e) => e.loss)
  t.equal(resumed.length, 24)
  t.same(resumed.slice(12), fullLosses.slice(12), 'steps 13..24 give bit-identical losses')
  c.trainer.dispose()
  c.model.dispose()
  rmSync(full, { recursive: true, force: true })
  rmSync(part, { recursive: true, force: true })
})

t.test('gradient accumulation: 2 x batch 4 equals 1 x batch 8 (no dropout)', async (t) => {
  const results: number[][] = []
  for (const [bs, accum] of [[8, 1], [4, 2]]) {
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-accum-'))
    const model = await BertForSequenceClassification.fromPretrained(fixture, { config: { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } })
    const args = new TrainingArguments(dir, { learningRate: 1e-3, perDeviceTrainBatchSize: bs, gradientAccumulationSteps: accum, maxSteps: 3, loggingSteps: 1, saveStrategy: 'no', disableTqdm: true, groupByLength: false })
    // Same rows in the same order for both: batch 8 = two batches of 4.
    const trainer = new Trainer({ model, args, trainDataset: syntheticDataset(64, 5), dataCollator: collator })
    ;(trainer as unknown as { epochBatches: (ds: Dataset, e: number) => number[][] }).epochBatches = (ds: Dataset) => {
      const order = Array.from({ length: ds.length }, (_, i) => i)
      const out: number[][] = []
      for (let i = 0; i < order.length; i += bs) out.push(order.slice(i, i + bs))
      return out
    }
    await trainer.train()
    results.push(model.classifier.weight.toArray())
    trainer.dispose()
    model.dispose()
    rmSync(dir, { recursive: true, force: true })
  }
  const maxDiff = Math.max(...results[0].map((v, i) => Math.abs(v - results[1][i])))
  t.ok(maxDiff < 1e-5, `classifier weights agree to ${maxDiff.toExponential(2)}`)
})

t.test('early stopping, best model kept, class weights, bad arguments', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-best-'))
  const { model, trainer } = await run(dir, {
    evalStrategy: 'steps', evalSteps: 4, saveSteps: 4, saveTotalLimit: 1, loadBestModelAtEnd: true,
    metricForBestModel: 'accuracy', numTrainEpochs: 4, classWeights: [1, 2],
  })
  trainer.addCallback(new EarlyStoppingCallback(2))
  const out = await trainer.train()
  t.ok(out.globalStep <= 32)
  const best = trainer.state.bestModelCheckpoint
  t.ok(best && existsSync(best), `best checkpoint kept: ${best}`)
  trainer.dispose()
  model.dispose()
  rmSync(dir, { recursive: true, force: true })

  t.throws(() => new TrainingArguments('x', { learningRate: -1 }), /learningRate must be a non-negative number/)
  t.throws(() => new TrainingArguments('x', { lr: 1 } as never), /unknown field "lr"/)
  t.throws(() => new TrainingArguments('x', { learning_rate: 1 } as never), /did you mean "learningRate"/)
  t.throws(() => new TrainingArguments('x', { loadBestModelAtEnd: true }), /needs evalStrategy/)
  t.throws(() => new TrainingArguments('x', { lrSchedulerType: 'poly' as never }), /lrSchedulerType must be one of/)
  const m = await BertForSequenceClassification.fromPretrained(fixture)
  const tr = new Trainer({ model: m, args: new TrainingArguments(mkdtempSync(join(os.tmpdir(), 'bertkit-x-')), { disableTqdm: true }), trainDataset: Dataset.fromRows([]), dataCollator: collator })
  await t.rejects(tr.train(), /the train dataset is empty/)
  const noIds = new Trainer({ model: m, args: new TrainingArguments(mkdtempSync(join(os.tmpdir(), 'bertkit-y-')), { disableTqdm: true }), trainDataset: Dataset.fromRows([{ text: 'a', label: 0 }]), dataCollator: collator })
  await t.rejects(noIds.train(), /has no input_ids column/)
  t.throws(() => new Trainer({ model: m, args: new TrainingArguments('z', { fp16: true, device: 'cpu' }), dataCollator: collator }), /fp16 mixed precision needs the CUDA backend/)
  m.dispose()
  const unused: Tensor | null = null
  void unused
})

t.test('a run that stops inside an epoch still saves its end-of-epoch checkpoint (as transformers)', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-epochsave-'))
  const { model, trainer } = await run(dir, { saveStrategy: 'epoch', maxSteps: 3 })
  await trainer.train()
  t.ok(existsSync(join(dir, 'checkpoint-3', 'trainer_state.json')), 'checkpoint-3 written at the stop')
  const state = JSON.parse(readFileSync(join(dir, 'checkpoint-3', 'bertkit_state.json'), 'utf8'))
  t.same(state.data_position, { epoch: 0, batchesDone: 3 }, 'resumable from the middle of epoch 0')
  trainer.dispose()
  model.dispose()
  rmSync(dir, { recursive: true, force: true })
})
