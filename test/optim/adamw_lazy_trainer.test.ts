// AdamW's deferred embedding rows through the Trainer: checkpoints written
// with rows deferred are byte-identical to the dense run's, and a run resumed
// from one reproduces the uninterrupted run bit for bit.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertForSequenceClassification } from '../../lib/index.js'
import { Trainer } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { setRowSparseMinNumel } from '../../lib/tensor/row_sparse.js'
import { native } from '../../lib/native.js'
import { ONE_LAYER_BERT as fixture, padCollator as collator, syntheticDataset } from '../helpers/tiny_training.js'

/** Trains 24 steps (checkpoints every 4), lazy or dense; optionally resumes from a checkpoint. */
async function run(lazy: boolean, resumeFrom?: string) {
  const dir = mkdtempSync(join(os.tmpdir(), `bertkit-lazy-${lazy}-`))
  // The fixture's tables are small: every table takes the row-sparse path when lazy.
  const previousMin = setRowSparseMinNumel(lazy ? 1 : Infinity)
  const previousEnv = process.env.BERTKIT_LAZY_ROWS
  process.env.BERTKIT_LAZY_ROWS = lazy ? '1' : '0'
  const N = native()
  const adamwRows = N.adamwRows
  let calls = 0
  N.adamwRows = (...a) => { calls++; return adamwRows(...a) }
  try {
    const model = await BertForSequenceClassification.fromPretrained(fixture, { numLabels: 2 })
    const args = new TrainingArguments(dir, {
      learningRate: 5e-3, perDeviceTrainBatchSize: 8, numTrainEpochs: 3, loggingSteps: 1, saveStrategy: 'steps', saveSteps: 4,
      disableTqdm: true, seed: 3, weightDecay: 0.01, plotCurves: false,
    })
    const trainer = new Trainer({ model, args, trainDataset: syntheticDataset(64, 1), dataCollator: collator })
    await trainer.train(resumeFrom ? { resumeFromCheckpoint: resumeFrom } : {})
    const losses = trainer.state.logHistory.filter((e) => 'loss' in e).map((e) => e.loss)
    const weights = [...model.namedParameters()].map(([n, p]) => [n, Buffer.from(p.toFloat32Array().buffer)] as const)
    trainer.dispose()
    model.dispose()
    return { dir, losses, weights, calls }
  } finally {
    N.adamwRows = adamwRows
    setRowSparseMinNumel(previousMin)
    if (previousEnv === undefined) delete process.env.BERTKIT_LAZY_ROWS
    else process.env.BERTKIT_LAZY_ROWS = previousEnv
  }
}

t.test('checkpoints and resumption with deferred rows equal the dense run bit for bit', async (t) => {
  const lazy = await run(true)
  const dense = await run(false)
  t.ok(lazy.calls > 24, `rows were deferred (${lazy.calls} adamwRows calls)`)
  t.equal(dense.calls, 0)
  t.same(lazy.losses, dense.losses, 'every step\'s loss')
  t.same(lazy.weights, dense.weights, 'final weights')
  for (const ckpt of ['checkpoint-12', 'checkpoint-24']) {
    for (const file of ['model.safetensors', 'optimizer.safetensors']) {
      const a = readFileSync(join(lazy.dir, ckpt, file)), b = readFileSync(join(dense.dir, ckpt, file))
      t.ok(a.equals(b), `${ckpt}/${file}: byte-identical`)
    }
  }
  const resumed = await run(true, join(lazy.dir, 'checkpoint-12'))
  t.same(resumed.losses.slice(12), lazy.losses.slice(12), 'resumed from checkpoint-12: steps 13..24 bit-identical')
  t.same(resumed.weights, lazy.weights, 'and the same final weights')
  for (const r of [lazy, dense, resumed]) rmSync(r.dir, { recursive: true, force: true })
})
