// trainer_state.json written by bertkit loads with transformers'
// TrainerState.load_from_json (output dir and every checkpoint), and has the
// keys transformers' own Trainer writes: the top level and each kind of
// log_history entry, compared with a run of transformers' Trainer of the same
// shape (4 steps, logging every step, evaluation and checkpoints every 2,
// best model by accuracy), whose total_flos bertkit's count must equal.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { BertConfig } from '../../lib/models/bert/configuration_bert.js'
import { BertForSequenceClassification } from '../../lib/models/bert/modeling_bert.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { Dataset } from '../../lib/data/dataset.js'
import { accuracy } from '../../lib/train/metrics.js'
import { tensor } from '../../lib/tensor/index.js'

const root = join(__dirname, '..', '..', '..')
const python = process.env.PYTHON ?? 'python3'
const script = join(root, 'test', 'oracles', 'check_trainer_state_interop.py')

function py(args: string[]): unknown {
  const r = spawnSync(python, [script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, cwd: root })
  if (r.status !== 0) throw new Error(`${python} ${script} ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

const probe = spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' })
if (probe.status !== 0) {
  t.test('trainer_state.json interop', { skip: `python3 with torch and transformers is not available: ${probe.stderr.trim().split('\n').pop()}` }, () => {})
} else {
  t.test('trainer_state.json: transformers loads it and writes the same keys', async (t) => {
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-state-'))
    const hfDir = mkdtempSync(join(os.tmpdir(), 'bertkit-state-hf-'))
    const model = new BertForSequenceClassification(new BertConfig({ vocab_size: 30, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 16 }))
    const rows = (n: number) => Dataset.fromRows(Array.from({ length: n }, (_, i) => ({ input_ids: [1, 2 + (i % 5), 3, 4, 5, 6], label: i % 2 })))
    const collator: DataCollator = (batch) => ({
      inputIds: tensor(Int32Array.from(batch.flatMap((r) => r.input_ids as number[])), { shape: [batch.length, 6], dtype: 'int32' }),
      labels: tensor(Int32Array.from(batch.map((r) => r.label as number)), { dtype: 'int32' }),
    })
    const args = new TrainingArguments(dir, {
      maxSteps: 4, perDeviceTrainBatchSize: 4, perDeviceEvalBatchSize: 4, loggingSteps: 1, evalStrategy: 'steps', evalSteps: 2,
      saveStrategy: 'steps', saveSteps: 2, metricForBestModel: 'accuracy', loadBestModelAtEnd: true, learningRate: 1e-3, disableTqdm: true, plotCurves: false,
    })
    const trainer = new Trainer({ model, args, trainDataset: rows(16), evalDataset: rows(8), dataCollator: collator, computeMetrics: (p) => ({ accuracy: accuracy(p.labelIds!, p.predictedLabels) }) })
    await trainer.train()
    const files = [join(dir, 'trainer_state.json'), ...readdirSync(dir).filter((d) => d.startsWith('checkpoint-')).sort().map((d) => join(dir, d, 'trainer_state.json'))]
    t.equal(files.length, 3, 'the output dir and checkpoints 2 and 4')
    const loaded = py(['load', ...files]) as Array<Record<string, unknown> & { log_history: Array<Record<string, number>> }>
    for (const [i, file] of files.entries()) {
      const ours = JSON.parse(readFileSync(file, 'utf8'))
      const got = loaded[i]
      t.equal(got.global_step, ours.global_step, `${file}: global_step read back`)
      t.equal(got.best_metric, ours.best_metric, 'best_metric')
      t.equal(got.best_global_step, ours.best_global_step, 'best_global_step')
      t.equal(got.best_model_checkpoint, ours.best_model_checkpoint, 'best_model_checkpoint')
      t.same(got.log_history, ours.log_history, 'log_history read back entry for entry')
    }
    t.equal(loaded[0].global_step, 4)
    t.match(String(loaded[0].best_model_checkpoint), /checkpoint-(2|4)$/)

    const hf = py(['hf', hfDir]) as { top: string[]; entries: Record<string, string[]>; total_flos: number; non_embedding_parameters: number }
    const ours = JSON.parse(readFileSync(join(dir, 'checkpoint-4', 'trainer_state.json'), 'utf8'))
    t.same(Object.keys(ours).sort(), hf.top, 'the top-level keys of transformers\' trainer_state.json')
    const final = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')).log_history as Array<Record<string, number>>
    const kindOf = (e: Record<string, number>) => ('loss' in e ? 'train' : 'eval_loss' in e ? 'eval' : 'train_loss' in e ? 'final' : 'other')
    const kinds: Record<string, string[]> = {}
    for (const e of final) kinds[kindOf(e)] ??= Object.keys(e).sort()
    t.same(kinds, hf.entries, 'each kind of log_history entry has transformers\' keys')
    const finalEntry = final.find((e) => 'train_loss' in e)!
    t.equal(finalEntry.total_flos, hf.total_flos, `total_flos counted as transformers counts it (${hf.total_flos}, ${hf.non_embedding_parameters} non-embedding parameters)`)
    trainer.dispose()
    model.dispose()
    rmSync(dir, { recursive: true, force: true })
    rmSync(hfDir, { recursive: true, force: true })
  })
}
