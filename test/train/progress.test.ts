// What a person sees while training: piped output (one line per logging step
// with the numbers, eval metrics as they arrive, no carriage returns), the
// terminal bars (a smoothed loss and an ETA from the first step, an eval
// bar), the summary table; and the Trainer driving it end to end.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Progress, Smoothed, formatDuration, summaryTable, metricsForDisplay } from '../../lib/train/progress.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { BertConfig } from '../../lib/models/bert/configuration_bert.js'
import { BertForSequenceClassification } from '../../lib/models/bert/modeling_bert.js'
import { Dataset } from '../../lib/data/dataset.js'
import { accuracy } from '../../lib/train/metrics.js'
import { tensor } from '../../lib/tensor/index.js'

/** cli-progress draws on a timer (8 frames a second here). */
const redraw = () => new Promise((r) => setTimeout(r, 300))

function sink(isTTY: boolean) {
  const chunks: string[] = []
  return {
    chunks,
    text: () => chunks.join(''),
    stream: {
      isTTY, columns: 160, rows: 40,
      write(s: string) {
        chunks.push(s)
        return true
      },
      cursorTo() { return true }, moveCursor() { return true }, clearLine() { return true }, clearScreenDown() { return true },
      on() { return this }, removeListener() { return this },
    },
  }
}

t.test('Smoothed and formatDuration', async (t) => {
  const s = new Smoothed(0.9)
  t.equal(s.value, null)
  s.add(2)
  t.equal(s.value, 2, 'the first value shows as itself (bias-corrected)')
  s.add(1)
  t.ok(Math.abs(s.value! - (0.9 * 0.1 * 2 + 0.1 * 1) / (1 - 0.81)) < 1e-12)
  t.equal(formatDuration(45.4), '45s')
  t.equal(formatDuration(185), '3m05s')
  t.equal(formatDuration(3720), '1h02m')
  t.equal(formatDuration(NaN), '--')
  t.same(metricsForDisplay({ evalLoss: 1, evalF1: 0.5, evalRuntime: 2, evalSamplesPerSecond: 3, epoch: 1 }), [['loss', 1], ['f1', 0.5]])
})

t.test('piped: one line per logging step with the numbers, eval lines, no carriage returns', async (t) => {
  let clock = 0
  const out = sink(false)
  const p = new Progress(true, out.stream, () => clock)
  p.startTraining(10, 0, 0)
  for (let step = 1; step <= 10; step++) {
    clock += 500
    p.step(step, step / 10, { loss: 1 - step / 20, lr: 1e-3 })
    if (step % 5 === 0) p.logged({ loss: 0.8, gradNorm: 1.25, learningRate: 1e-3, step, epoch: step / 10 })
  }
  const lines = out.text().split('\n').filter(Boolean)
  t.equal(lines.length, 2, 'a line per logging step')
  t.match(lines[0], /^train step 5\/10 \(epoch 0\.50\) \| loss 0\.8000 \| lr 1\.00e-3 \| grad_norm 1\.250 \| 2\.00 it\/s \| 3s \| eta 3s$/)
  t.notOk(out.text().includes('\r'), 'no carriage returns')
  p.startEval(3, 40, 'eval')
  p.evalBatch(3)
  clock += 1500
  p.endEval({ evalLoss: 0.5, evalAccuracy: 0.8, evalRuntime: 1.5, evalSamplesPerSecond: 26.6, epoch: 1 }, { step: 10, epoch: 1 })
  t.match(out.text().split('\n').filter(Boolean).pop(), /^eval step 10 \(epoch 1\.00\) \| loss 0\.5000 \| accuracy 0\.8000 \| 40 rows in 1\.5s$/)
  // Logging steps far apart: a line a minute still says where the run is, with the smoothed loss.
  clock += 61_000
  p.resumeTiming()
  p.step(11, 1.1, { loss: 0.3, lr: 1e-4 })
  t.match(out.text().split('\n').filter(Boolean).pop(), /^train step 11\/10 .*\| loss 0\.\d{4} \(smoothed\) \|/)
  p.endTraining([{ loss: 0.8, step: 5, epoch: 0.5 }, { evalLoss: 0.5, evalAccuracy: 0.8, step: 10, epoch: 1 }], { trainLoss: 0.7, runtime: 65, steps: 10 })
  t.ok(out.text().endsWith([
    '  step  epoch  train loss  eval loss  accuracy',
    '    10   1.00      0.8000     0.5000    0.8000',
    '  train loss 0.7000 over 10 steps in 1m05s (0.15 it/s)\n'].join('\n')), 'the summary table ends the output')
})

t.test('terminal: the bar shows a smoothed loss, lr, it/s and ETA from step 1; an eval bar; metrics above the bars', async (t) => {
  let clock = 0
  const out = sink(true)
  const p = new Progress(true, out.stream, () => clock)
  p.startTraining(100, 0, 0)
  await redraw()
  t.match(out.text(), /train \|.*\| 0\/100 \| epoch 0\.00 \| loss - \| lr - \| - it\/s \| 0s \| eta --/, 'before the first step: no NaN, no fake ETA')
  clock += 250
  p.step(1, 0.01, { loss: 0.6931, lr: 2e-5 })
  p.stop()
  t.match(out.text(), /train \|.*\| 1\/100 \| epoch 0\.01 \| loss 0\.6931 \| lr 2\.00e-5 \| 4\.00 it\/s \| 0s \| eta 25s/, 'step 1 already shows loss and ETA')
  const out2 = sink(true)
  const q = new Progress(true, out2.stream, () => clock)
  q.startTraining(100, 0, 0)
  q.startEval(67, 1066, 'eval')
  q.evalBatch(30)
  await redraw()
  t.match(out2.text(), /eval {2}\|.*\| (0|30)\/67 \| 1066 rows/, 'an eval bar')
  q.endEval({ evalLoss: 0.4, evalF1: 0.85 }, { step: 50, epoch: 0.5 })
  await redraw()
  t.match(out2.text(), /eval step 50 \(epoch 0\.50\) \| loss 0\.4000 \| f1 0\.8500 \| 1066 rows in/)
  q.stop()
  // After training (the CLI's final evaluation): the metrics line is printed, not lost with the closing bars.
  const out3 = sink(true)
  const e = new Progress(true, out3.stream, () => clock)
  e.startEval(67, 1066, 'eval')
  e.evalBatch(67)
  e.endEval({ evalLoss: 0.43, evalF1: 0.81 }, { step: 534, epoch: 1 })
  t.match(out3.text(), /eval step 534 \(epoch 1\.00\) \| loss 0\.4300 \| f1 0\.8100 \| 1066 rows in/)
  const off = sink(true)
  const r = new Progress(false, off.stream, () => clock)
  r.startTraining(10, 0, 0)
  r.step(1, 0.1, { loss: 1, lr: 1 })
  r.endEval({ evalLoss: 1 }, { step: 1, epoch: 0.1 })
  r.endTraining([], { trainLoss: 1, runtime: 1, steps: 1 })
  t.equal(off.text(), '', 'disableTqdm: nothing at all')
})

t.test('summary table: a row per evaluation, the train loss logged before it', async (t) => {
  const table = summaryTable([
    { loss: 0.69, step: 10, epoch: 0.5 }, { evalLoss: 0.6, evalF1: 0.7, evalRuntime: 1, step: 10, epoch: 0.5 },
    { loss: 0.4, step: 20, epoch: 1 }, { evalLoss: 0.5, evalF1: 0.8, evalRuntime: 1, step: 20, epoch: 1 },
  ], { trainLoss: 0.55, runtime: 30, steps: 20 })
  t.equal(table, [
    '  step  epoch  train loss  eval loss      f1',
    '    10   0.50      0.6900     0.6000  0.7000',
    '    20   1.00      0.4000     0.5000  0.8000',
    '  train loss 0.5500 over 20 steps in 30s (0.67 it/s)',
  ].join('\n'))
  t.equal(summaryTable([], { trainLoss: 0.5, runtime: 0, steps: 0 }), '  train loss 0.5000 over 0 steps in 0s')
})

t.test('the Trainer, piped: a line per logging step, eval metrics as they arrive, the summary', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-progress-'))
  const model = new BertForSequenceClassification(new BertConfig({ vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 16 }))
  const rows = Array.from({ length: 32 }, (_, i) => ({ input_ids: [1, 2 + (i % 5), 3], label: i % 2 }))
  const collator: DataCollator = (batch) => ({
    inputIds: tensor(Int32Array.from(batch.flatMap((r) => r.input_ids as number[])), { shape: [batch.length, 3], dtype: 'int32' }),
    labels: tensor(Int32Array.from(batch.map((r) => r.label as number)), { dtype: 'int32' }),
  })
  const args = new TrainingArguments(dir, { perDeviceTrainBatchSize: 4, numTrainEpochs: 1, loggingSteps: 0.25, evalStrategy: 'epoch', saveStrategy: 'no', plotCurves: false })
  const trainer = new Trainer({ model, args, trainDataset: Dataset.fromRows(rows), evalDataset: Dataset.fromRows(rows.slice(0, 8)), dataCollator: collator,
    computeMetrics: (p) => ({ accuracy: accuracy(p.labelIds!, p.predictedLabels) }) })
  const written: string[] = []
  const write = process.stderr.write
  process.stderr.write = ((s: string) => {
    written.push(String(s))
    return true
  }) as typeof process.stderr.write
  try {
    await trainer.train()
  } finally {
    process.stderr.write = write
  }
  const text = written.join('')
  const lines = text.split('\n').filter((l) => l.startsWith('train step'))
  t.same(lines.map((l) => /^train step (\d+)\/8 /.exec(l)?.[1]), ['2', '4', '6', '8'], 'loggingSteps 0.25 of 8 steps: a line every 2 steps')
  t.ok(lines.every((l) => /\| loss \d\.\d{4} \| lr \d\.\d{2}e-\d+ \| grad_norm [\d.]+ \| [\d.]+ it\/s \|/.test(l)), 'each with loss, lr, grad norm, it/s')
  t.match(text, /\neval step 8 \(epoch 1\.00\) \| loss \d\.\d{4} \| accuracy \d\.\d{4} \| 8 rows in/)
  t.match(text, /step {2}epoch {2}train loss {2}eval loss {2}accuracy\n/)
  t.notOk(text.includes('\r'))
  trainer.dispose()
  model.dispose()
  rmSync(dir, { recursive: true, force: true })
})
