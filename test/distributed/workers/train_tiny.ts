// One rank (or the single process) of the data-parallel Trainer tests
// (test/distributed/data_parallel.test.ts): a 1-layer BERT without dropout
// on synthetic rows, 20 optimizer steps, then evaluation and prediction.
// Rank 0 saves the weights to OUT_DIR/final and prints "RESULT {json}".
//   BATCH, ACCUM, SAMPLING (random | sequential), MAX_STEPS, OUT_DIR, SAVE_STEPS,
//   RESUME (a checkpoint dir), BUCKET_MB, CHECKPOINTING=1 (gradient checkpointing), PERTURB_RANK / FREEZE_RANK (that rank starts from other weights /
//   trains one parameter less), DROPOUT=1, PRINT_STEPS=1 ("PID rank pid", then "STEP rank step" lines),
//   DIE_RANK / DIE_STEP (that rank SIGKILLs itself at the end of that step)
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { BertForSequenceClassification } from '../../../lib/index.js'
import { Trainer } from '../../../lib/train/trainer.js'
import { TrainingArguments } from '../../../lib/train/training_args.js'
import { accuracy } from '../../../lib/train/metrics.js'
import { ONE_LAYER_BERT as fixture, padCollator as collator, syntheticDataset as synthetic } from '../../helpers/tiny_training.js'

async function main(): Promise<void> {
  const env = process.env
  const out = env.OUT_DIR!
  const dropout = env.DROPOUT === '1'
  const model = await BertForSequenceClassification.fromPretrained(fixture, {
    numLabels: 2, config: dropout ? {} : { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
  })
  // The key bias's gradient is zero by design (softmax ignores a per-query constant): what backward
  // computes for it is rounding noise, which AdamW scales up to full-size steps. No two summation
  // orders agree on noise, so it is frozen here; every other weight is compared.
  for (const [name, p] of model.namedParameters()) if (name.endsWith('attention.self.key.bias')) p.requiresGrad = false
  // A rank that starts from other weights, or trains other parameters than its peers.
  if (env.PERTURB_RANK !== undefined && env.PERTURB_RANK === (env.RANK ?? '0')) {
    for (const [name, p] of model.namedParameters()) if (name === 'classifier.weight') p.buffer.write(p.toFloat32Array().map((v) => v * 3 + 0.1))
  }
  if (env.FREEZE_RANK !== undefined && env.FREEZE_RANK === (env.RANK ?? '0')) {
    for (const [name, p] of model.namedParameters()) if (name === 'bert.pooler.dense.bias') p.requiresGrad = false
  }
  const args = new TrainingArguments(out, {
    learningRate: 2e-3, weightDecay: 0.01, warmupSteps: 2, perDeviceTrainBatchSize: Number(env.BATCH ?? 4),
    gradientAccumulationSteps: Number(env.ACCUM ?? 1), maxSteps: Number(env.MAX_STEPS ?? 20), loggingSteps: 1,
    saveStrategy: env.SAVE_STEPS ? 'steps' : 'no', saveSteps: Number(env.SAVE_STEPS ?? 500), disableTqdm: true, seed: 3,
    perDeviceEvalBatchSize: 5, trainSamplingStrategy: (env.SAMPLING ?? 'random') as 'random', plotCurves: false,
    ddpBucketCapMb: Number(env.BUCKET_MB ?? 25), gradientCheckpointing: env.CHECKPOINTING === '1',
  })
  const trainer = new Trainer({
    model, args, trainDataset: synthetic(64, 1), evalDataset: synthetic(33, 2), dataCollator: collator,
    computeMetrics: (p) => ({ accuracy: accuracy(p.labelIds!, p.predictedLabels) }),
  })
  if (env.PRINT_STEPS) {
    console.log(`PID ${env.RANK ?? 0} ${process.pid}`)
    trainer.addCallback({ onStepEnd: (_a, state) => console.log(`STEP ${env.RANK ?? 0} ${state.globalStep}`) })
  }
  if (env.DIE_RANK !== undefined) {
    trainer.addCallback({
      onStepEnd: (_a, state) => {
        if (state.globalStep === Number(env.DIE_STEP ?? 5) && Number(env.RANK) === Number(env.DIE_RANK)) process.kill(process.pid, 'SIGKILL')
      },
    })
  }
  const started = Date.now()
  let result: Record<string, unknown>
  try {
    const output = await trainer.train({ resumeFromCheckpoint: env.RESUME ?? null })
    const metrics = await trainer.evaluate()
    const pred = await trainer.predict(synthetic(7, 5))
    // A fingerprint of this rank's weights: every replica must hold the same bits.
    const h = createHash('sha256')
    for (const [, p] of model.namedParameters()) h.update(Buffer.from(p.toFloat32Array().buffer))
    result = {
      rank: Number(env.RANK ?? 0), globalStep: output.globalStep, trainLoss: output.trainLoss,
      losses: trainer.state.logHistory.filter((e) => 'loss' in e).map((e) => e.loss),
      gradNorms: trainer.state.logHistory.filter((e) => 'gradNorm' in e).map((e) => e.gradNorm),
      evalLoss: metrics.evalLoss, evalAccuracy: metrics.evalAccuracy, predictions: Array.from(pred.predictions),
      weights: h.digest('hex'), seconds: (Date.now() - started) / 1000,
    }
    if (trainer.isWorldProcessZero()) model.savePretrained(join(out, 'final'))
  } catch (e) {
    result = { rank: Number(env.RANK ?? 0), error: (e as Error).message, seconds: (Date.now() - started) / 1000 }
    process.exitCode = 3
  }
  console.log('RESULT ' + JSON.stringify(result))
  trainer.dispose()
  model.dispose()
}

main().catch((e) => {
  console.log('RESULT ' + JSON.stringify({ error: (e as Error).message }))
  process.exitCode = 2
})
