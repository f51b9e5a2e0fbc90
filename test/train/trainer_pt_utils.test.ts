// Weight decay groups as transformers' Trainer forms them (get_decay_parameter_names):
// compared name for name with what the real Trainer returns for every family's tiny
// model and for peft-wrapped ones (test/fixtures/generators/make_parity_fixtures.py), and checked in
// the optimizer the Trainer actually builds.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification, tensor } from '../../lib/index.js'
import { getPeftModel, LoraConfig, type LoraBias } from '../../lib/peft/index.js'
import { getDecayParameterNames, noDecayByName } from '../../lib/train/trainer_pt_utils.js'
import { Trainer, type DataCollator } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { Dataset } from '../../lib/data/dataset.js'
import type { AdamW } from '../../lib/optim/adamw.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')

interface Case {
  base: string
  lora_config: { r: number; target_modules: string[] | string; modules_to_save?: string[]; task_type?: 'SEQ_CLS'; bias?: LoraBias } | null
  named_parameters: string[]
  decay: string[]
}

const cases = JSON.parse(readFileSync(join(fixtures, 'parity', 'decay.json'), 'utf8')) as Record<string, Case | unknown>

async function build(c: Case) {
  const model = await AutoModelForSequenceClassification.fromPretrained(join(fixtures, c.base))
  if (!c.lora_config) return model
  const l = c.lora_config
  return getPeftModel(model, new LoraConfig({ r: l.r, targetModules: l.target_modules, modulesToSave: l.modules_to_save ?? null, taskType: l.task_type ?? null, bias: l.bias ?? 'none' }))
}

for (const [name, raw] of Object.entries(cases)) {
  if (name === 'versions') continue
  const c = raw as Case
  t.test(`${name}: the parameters transformers' Trainer decays`, async (t) => {
    const model = await build(c)
    t.same([...model.namedParameters()].map(([n]) => n), c.named_parameters, 'same parameter names and order as torch')
    t.same(getDecayParameterNames(model), c.decay, 'decayed: exactly get_decay_parameter_names')
    model.dispose()
  })
}

t.test('the name rule alone (transformers 5 patterns)', async (t) => {
  for (const n of ['x.bias', 'x.LayerNorm.weight', 'x.sa_layer_norm.weight', 'x.output_layer_norm.weight', 'norm.weight', 'a.norm.b', 'x.rmsnorm.weight']) t.ok(noDecayByName(n), n)
  for (const n of ['x.dense.weight', 'x.normal.weight', 'x.normalizer.weight', 'x.lora_A.default.weight']) t.notOk(noDecayByName(n), n)
})

t.test('the Trainer\'s AdamW groups: DistilBERT\'s sa_layer_norm / output_layer_norm are not decayed', async (t) => {
  const model = await AutoModelForSequenceClassification.fromPretrained(join(fixtures, 'distilbert', 'base'))
  const collate: DataCollator = (rows) => ({
    inputIds: tensor(Int32Array.from(rows.flatMap((r) => r.input_ids as number[])), { shape: [rows.length, 3], dtype: 'int32' }),
    labels: tensor(Int32Array.from(rows.map((r) => r.label as number)), { dtype: 'int32' }),
  })
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-decay-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const trainer = new Trainer({
    model, args: new TrainingArguments(dir, { maxSteps: 1, perDeviceTrainBatchSize: 2, weightDecay: 0.1, disableTqdm: true, saveStrategy: 'no', plotCurves: false }),
    trainDataset: Dataset.fromRows([{ input_ids: [1, 5, 2], label: 0 }, { input_ids: [1, 6, 2], label: 1 }]), dataCollator: collate,
  })
  await trainer.train()
  const groups = (trainer as unknown as { optimizer: AdamW }).optimizer.paramGroups
  const names = new Map([...model.namedParameters()].map(([n, p]) => [p, n]))
  const decayed = groups.filter((g) => g.weightDecay === 0.1).flatMap((g) => g.params.map((p) => names.get(p)!))
  const expected = (cases.distilbert as Case).decay
  t.same(decayed, expected, 'the decayed group is exactly transformers\'')
  t.notOk(decayed.some((n) => /layer_norm|LayerNorm|bias/.test(n)), 'no LayerNorm parameter and no bias decays')
  t.ok(groups.some((g) => g.weightDecay === 0 && g.params.some((p) => names.get(p) === 'distilbert.transformer.layer.0.sa_layer_norm.weight')), 'sa_layer_norm.weight is in the group without decay')
  trainer.dispose()
  model.dispose()
})
