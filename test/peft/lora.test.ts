// LoRA against fixtures written by the real peft (test/fixtures/generators/make_lora_fixtures.py):
// parameter names / flags / counts, adapters peft saved give peft's logits and
// gradients, adapters bertkit saves carry peft's keys, shapes and config;
// merge / unmerge; only adapters train; bad input leaves the model untouched.
import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, readdirSync, existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification, BertForSequenceClassification, BertConfig, AdamW, tensor, tidy, noGrad, type Tensor } from '../../lib/index.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { withDeferredInit } from '../../lib/nn/init.js'
import {
  LoraConfig, getPeftModel, PeftModel, LoraLinear, ModulesToSaveWrapper, loraConfigFromSpec, AutoPeftModelForSequenceClassification,
  type LoraConfigInit,
} from '../../lib/peft/index.js'
import { Trainer } from '../../lib/train/trainer.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { ONE_LAYER_BERT as baseDir, padCollator as collator, syntheticDataset } from '../helpers/tiny_training.js'

const root = join(__dirname, '..', '..', '..')
const fixtures = join(root, 'test', 'fixtures', 'lora')
const variants = readdirSync(fixtures).filter((d) => existsSync(join(fixtures, d, 'expected.json'))).sort()

interface Expected {
  base: string
  lora_config: Record<string, unknown>
  named_parameters: Array<[string, number[], boolean]>
  print_trainable_parameters: string
  peft_class: string
  max_abs_logit_change: number
}

const meta = (name: string) => JSON.parse(readFileSync(join(fixtures, name, 'expected.json'), 'utf8')) as Expected
const expectedTensors = (name: string) => readSafetensors(join(fixtures, name, 'expected.safetensors')).tensors

/** peft's LoraConfig keyword arguments → bertkit's LoraConfig. */
function configFrom(kwargs: Record<string, unknown>): LoraConfig {
  const init: LoraConfigInit = {
    r: kwargs.r as number, loraAlpha: kwargs.lora_alpha as number, loraDropout: kwargs.lora_dropout as number,
    targetModules: kwargs.target_modules as string[] | string, modulesToSave: (kwargs.modules_to_save as string[] | undefined) ?? null,
    excludeModules: (kwargs.exclude_modules as string[] | string | undefined) ?? null,
    bias: kwargs.bias as LoraConfigInit['bias'], useRslora: (kwargs.use_rslora as boolean | undefined) ?? false,
    taskType: (kwargs.task_type as 'SEQ_CLS' | undefined) ?? null,
  }
  return new LoraConfig(init)
}

/** max |a - b| <= rtol * max |ref| + atol. */
function close(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = 1e-7) {
  let maxRef = 0, maxErr = 0
  for (let i = 0; i < expected.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(expected[i]))
    const err = Math.abs(actual[i] - expected[i])
    maxErr = Number.isNaN(err) ? Infinity : Math.max(maxErr, err)
  }
  const ok = actual.length === expected.length && maxErr <= rtol * maxRef + atol
  return { ok, maxErr, msg: `max |err| ${maxErr.toExponential(2)} (max |ref| ${maxRef.toExponential(2)})` }
}

function batch(dir = baseDir) {
  const raw = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Record<string, number[][] | number[]>
  const ids = raw.input_ids as number[][]
  const shape = [ids.length, ids[0].length]
  const t32 = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return {
    inputIds: t32(ids), attentionMask: t32(raw.attention_mask as number[][]), tokenTypeIds: raw.token_type_ids ? t32(raw.token_type_ids as number[][]) : null,
    labels: tensor(Int32Array.from(raw.labels as number[]), { dtype: 'int32' }),
  }
}

function logitsOf(model: { forward(i: ReturnType<typeof batch>): { logits: Tensor } }, withLabels = false, dir = baseDir): Float32Array {
  return noGrad(() => tidy(() => {
    const b = batch(dir)
    const { labels, ...rest } = b
    return model.forward(withLabels ? b : { ...rest, labels: null } as never).logits.toFloat32Array()
  }))
}

const base = () => BertForSequenceClassification.fromPretrained(baseDir)
/** The variant's base model (BERT, RoBERTa, DistilBERT or DeBERTa-v3), as its fixture names it. */
const baseOf = (name: string) => AutoModelForSequenceClassification.fromPretrained(join(root, meta(name).base))
const inputsDir = (name: string) => join(root, meta(name).base)

function snapshot(model: { namedParameters(): Iterable<[string, Tensor]> }): Map<string, { values: Float32Array; requiresGrad: boolean }> {
  return new Map([...model.namedParameters()].map(([n, p]) => [n, { values: p.toFloat32Array(), requiresGrad: p.requiresGrad }]))
}

function sameSnapshot(t: { same(a: unknown, b: unknown, m: string): unknown; equal(a: unknown, b: unknown, m: string): unknown }, a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>, what: string): void {
  t.same([...a.keys()], [...b.keys()], `${what}: same parameter names and order`)
  let differ = 0
  for (const [n, v] of a) {
    const w = b.get(n)
    if (!w || w.requiresGrad !== v.requiresGrad || w.values.some((x, i) => x !== v.values[i])) differ++
  }
  t.equal(differ, 0, `${what}: every value and requiresGrad flag unchanged`)
}

for (const name of variants) {
  t.test(`${name}: a fresh getPeftModel has peft's parameters, flags and summary`, async (t) => {
    const m = meta(name)
    const model = getPeftModel(await baseOf(name), configFrom(m.lora_config), { seed: 0 })
    t.equal(model.constructor.name, m.peft_class)
    const got = [...model.namedParameters()].map(([n, p]) => [n, [...p.shape], p.requiresGrad])
    t.same(got, m.named_parameters, 'names, order, shapes and requires_grad equal peft\'s named_parameters()')
    t.equal(model.trainableParametersLine(), m.print_trainable_parameters, 'print_trainable_parameters line')
    // A starts kaiming-uniform in ±1/sqrt(in), B at zero: the adapted model equals the base at first.
    for (const [path, l] of model.loraModules) {
      const a = l.lora_A.get('default').weight.toFloat32Array()
      const bound = 1 / Math.sqrt(l.inFeatures)
      if (!a.every((v) => Math.abs(v) <= bound) || a.every((v) => v === 0)) t.fail(`${path}: A is not uniform in ±${bound}`)
      if (!l.lora_B.get('default').weight.toFloat32Array().every((v) => v === 0)) t.fail(`${path}: B is not zero`)
    }
    const expected = expectedTensors(name)
    const c = close(logitsOf(model.eval(), false, inputsDir(name)), expected.get('base_logits')!.data as Float32Array, 1e-5)
    t.ok(c.ok, `untrained adapter gives the base logits: ${c.msg}`)
    model.dispose()
  })

  t.test(`${name}: bertkit loads peft's adapter and computes peft's logits and gradients`, async (t) => {
    const expected = expectedTensors(name)
    const model = PeftModel.fromPretrained(await baseOf(name), join(fixtures, name))
    t.ok([...model.namedParameters()].every(([, p]) => !p.requiresGrad), 'isTrainable false (peft\'s default) freezes everything')
    model.eval()
    const logits = close(logitsOf(model, false, inputsDir(name)), expected.get('logits')!.data as Float32Array, 1e-5)
    t.ok(logits.ok, `logits: ${logits.msg}`)
    t.ok(meta(name).max_abs_logit_change > 0.1, 'the fixture adapter moves the logits away from the base')
    model.merge()
    const merged = close(logitsOf(model, false, inputsDir(name)), expected.get('merged_logits')!.data as Float32Array, 1e-5)
    t.ok(merged.ok, `merged logits: ${merged.msg}`)
    model.dispose()

    const trainable = PeftModel.fromPretrained(await baseOf(name), join(fixtures, name), { isTrainable: true })
    trainable.eval()
    const m = meta(name)
    t.same([...trainable.namedParameters()].map(([n, p]) => [n, p.requiresGrad]), m.named_parameters.map(([n, , g]) => [n, g]),
      'isTrainable true: peft\'s requires_grad flags')
    tidy(() => {
      const out = trainable.forward(batch(inputsDir(name)))
      const loss = close(out.loss!.toFloat32Array(), expected.get('loss')!.data as Float32Array, 1e-5)
      t.ok(loss.ok, `loss: ${loss.msg}`)
      out.loss!.backward()
    })
    let checked = 0
    for (const [n, p] of trainable.namedParameters()) {
      const ref = expected.get(`grad.${n}`)
      if (!p.requiresGrad) {
        if (p.grad) t.fail(`${n} is frozen but has a gradient`)
        if (ref) t.fail(`peft has a gradient for ${n}, bertkit's flag says frozen`)
        continue
      }
      if (!ref || !p.grad) {
        t.fail(`no gradient for ${n} (${ref ? 'bertkit' : 'fixture'})`)
        continue
      }
      const c = close(p.grad.toFloat32Array(), ref.data as Float32Array, 1e-4)
      if (!c.ok) t.fail(`gradient of ${n}: ${c.msg}`)
      checked++
    }
    t.equal(checked, m.named_parameters.filter(([, , g]) => g).length, `all ${checked} trainable gradients within 1e-4 of peft's`)
    trainable.dispose()
  })

  t.test(`${name}: bertkit saves the files peft saves`, async (t) => {
    const m = meta(name)
    const config = configFrom(m.lora_config)
    config.baseModelNameOrPath = m.base
    const model = getPeftModel(await baseOf(name), config, { seed: 5 })
    const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-save-'))
    model.savePretrained(dir)
    t.same(readdirSync(dir).sort(), ['adapter_config.json', 'adapter_model.safetensors'], 'the two adapter files, no temporaries')
    const ours = readSafetensors(join(dir, 'adapter_model.safetensors'))
    const theirs = readSafetensors(join(fixtures, name, 'adapter_model.safetensors'))
    const shapes = (c: typeof ours) => Object.fromEntries([...c.tensors].map(([k, v]) => [k, v.shape]))
    t.same(shapes(ours), shapes(theirs), 'same keys and shapes as peft\'s adapter_model.safetensors')
    t.same(ours.metadata, theirs.metadata, 'metadata {format: pt}')
    const ourConfig = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>
    const theirConfig = JSON.parse(readFileSync(join(fixtures, name, 'adapter_config.json'), 'utf8')) as Record<string, unknown>
    const normal = (c: Record<string, unknown>) => ({ ...c, target_modules: Array.isArray(c.target_modules) ? [...c.target_modules].sort() : c.target_modules })
    t.same(normal(ourConfig), normal(theirConfig), 'adapter_config.json equals peft\'s (target_modules as a set)')
    t.same(Object.keys(ourConfig), Object.keys(theirConfig), 'same fields in the same (sorted) order')
    // And the round trip through bertkit's own loader.
    const again = PeftModel.fromPretrained(await baseOf(name), dir)
    const a = logitsOf(model.eval(), false, inputsDir(name)), b = logitsOf(again.eval(), false, inputsDir(name))
    t.same(Array.from(a), Array.from(b), 'bertkit reloads its own adapter bit for bit')
    model.dispose()
    again.dispose()
  })
}

t.test('A is drawn from the seed', async (t) => {
  const config = new LoraConfig({ r: 4, targetModules: ['query'] })
  const draw = async (seed: number) => {
    const m = getPeftModel(await base(), config, { seed })
    const a = m.loraModules.get('bert.encoder.layer.0.attention.self.query')!.lora_A.get('default').weight.toArray()
    m.dispose()
    return a
  }
  const [a1, a2, b1] = [await draw(1), await draw(1), await draw(2)]
  t.same(a1, a2, 'same seed, same A')
  t.notSame(a1, b1, 'another seed, another A')
  const bound = 1 / Math.sqrt(32)
  t.ok(Math.max(...a1.map(Math.abs)) > 0.8 * bound, 'uniform over the whole ±1/sqrt(in) range')
})

t.test('merge / unmerge / mergeAndUnload', async (t) => {
  const model = PeftModel.fromPretrained(await base(), join(fixtures, 'qv_classifier'))
  model.eval()
  const before = snapshot(model)
  const adapted = logitsOf(model)
  const query = model.loraModules.get('bert.encoder.layer.0.attention.self.query')!
  t.ok(query instanceof LoraLinear)
  const w0 = query.weight.toFloat32Array()
  const delta = noGrad(() => query.deltaWeight())
  model.merge()
  t.ok(model.merged)
  const w1 = query.weight.toFloat32Array()
  const d = delta.toFloat32Array()
  const folded = close(w1, w0.map((v, i) => v + d[i]), 1e-6)
  t.ok(folded.ok, `W + scaling·B·A folded into the weight: ${folded.msg}`)
  const mergedLogits = close(logitsOf(model), adapted, 1e-5)
  t.ok(mergedLogits.ok, `merged forward equals the adapter's: ${mergedLogits.msg}`)
  model.merge()
  t.same(Array.from(query.weight.toFloat32Array()), Array.from(w1), 'merging twice folds once')
  model.unmerge()
  const back = close(query.weight.toFloat32Array(), w0, 0, 1e-6)
  t.ok(back.ok, `unmerge restores W up to rounding: ${back.msg}`)
  t.comment(`rounding left by merge + unmerge: ${back.maxErr.toExponential(2)}`)
  const unmerged = close(logitsOf(model), adapted, 1e-5)
  t.ok(unmerged.ok, `unmerged forward equals the adapter's again: ${unmerged.msg}`)
  t.same([...snapshot(model).keys()], [...before.keys()])
  delta.dispose()

  const plain = model.mergeAndUnload()
  t.ok(plain instanceof BertForSequenceClassification)
  const baseNames = [...(await base()).namedParameters()].map(([n]) => n)
  t.same([...plain.namedParameters()].map(([n]) => n), baseNames, 'mergeAndUnload gives back transformers\' names')
  t.notOk([...plain.namedModules()].some(([, m]) => m instanceof LoraLinear || m instanceof ModulesToSaveWrapper), 'no wrappers left')
  const c = close(logitsOf(plain.eval()), adapted, 1e-5)
  t.ok(c.ok, `the merged plain model computes the adapter's logits: ${c.msg}`)
  t.throws(() => model.forward(batch() as never), /unloaded/, 'the PeftModel is spent after unloading')
  model.dispose()
  t.same(Array.from(logitsOf(plain)), Array.from(logitsOf(plain)), 'disposing the spent PeftModel leaves the returned model usable')
  plain.dispose()
})

t.test('only adapters and saved modules get gradients and optimizer state', async (t) => {
  const model = getPeftModel(await base(), new LoraConfig({ r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ['query', 'value'], modulesToSave: ['classifier'] }), { seed: 1 })
  model.train()
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad)
  t.same(trainable.map(([n]) => n.replace('base_model.model.', '')), [
    'bert.encoder.layer.0.attention.self.query.lora_A.default.weight', 'bert.encoder.layer.0.attention.self.query.lora_B.default.weight',
    'bert.encoder.layer.0.attention.self.value.lora_A.default.weight', 'bert.encoder.layer.0.attention.self.value.lora_B.default.weight',
    'classifier.modules_to_save.default.weight', 'classifier.modules_to_save.default.bias',
  ])
  const optimizer = new AdamW(trainable.map(([, p]) => p), { lr: 1e-2 })
  tidy(() => {
    model.forward(batch()).loss!.backward()
    optimizer.step()
  })
  for (const [n, p] of model.namedParameters()) {
    if (p.requiresGrad !== (p.grad !== null)) t.fail(`${n}: requiresGrad ${p.requiresGrad} but grad ${p.grad ? 'present' : 'absent'}`)
    if (p.requiresGrad !== (optimizer.stateOf(p) !== undefined)) t.fail(`${n}: optimizer state does not follow requiresGrad`)
  }
  t.pass(`gradients and optimizer state exist for exactly the ${trainable.length} trainable tensors`)
  optimizer.dispose()
  model.dispose()
})

t.test('the Trainer trains a PEFT model and saves the adapter format', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-trainer-'))
  const plain = await base()
  const frozenBefore = snapshot(plain)
  const model = getPeftModel(plain, new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['query', 'value'], taskType: 'SEQ_CLS' }), { seed: 2 })
  const args = new TrainingArguments(dir, {
    learningRate: 2e-2, perDeviceTrainBatchSize: 8, numTrainEpochs: 3, loggingSteps: 4, saveStrategy: 'steps', saveSteps: 12,
    disableTqdm: true, seed: 3, plotCurves: false,
  })
  const trainer = new Trainer({ model, args, trainDataset: syntheticDataset(64, 1, { text: false }), evalDataset: syntheticDataset(32, 2, { text: false }), dataCollator: collator })
  const before = await trainer.evaluate()
  await trainer.train()
  const after = await trainer.evaluate()
  t.ok(after.evalLoss < before.evalLoss, `eval loss fell: ${before.evalLoss.toFixed(4)} → ${after.evalLoss.toFixed(4)}`)
  // Base weights did not move (the original classifier included); adapters did.
  let moved = 0, unchanged = 0
  for (const [n, p] of model.namedParameters()) {
    const key = n.replace('base_model.model.', '').replace('.base_layer.', '.').replace('classifier.original_module.', 'classifier.')
    const was = frozenBefore.get(key)
    if (was && !p.requiresGrad) {
      if (p.toFloat32Array().some((v, i) => v !== was.values[i])) t.fail(`frozen ${n} changed`)
      else unchanged++
    }
    if (p.requiresGrad && n.includes('lora_B') && p.toFloat32Array().some((v) => v !== 0)) moved++
  }
  t.equal(unchanged, frozenBefore.size, `all ${frozenBefore.size} base tensors (the original classifier too) are bit-identical after training`)
  t.equal(moved, 2, 'both B matrices left zero')
  const ckpt = join(dir, 'checkpoint-12')
  t.ok(existsSync(join(ckpt, 'adapter_model.safetensors')) && existsSync(join(ckpt, 'adapter_config.json')), 'checkpoints hold the adapter')
  t.notOk(existsSync(join(ckpt, 'model.safetensors')), 'and not the full model')
  const opt = readSafetensors(join(ckpt, 'optimizer.safetensors')).tensors
  t.equal(opt.size, 2 * 6, 'optimizer state: exp_avg and exp_avg_sq of the 6 trainable tensors only')
  t.ok([...opt.keys()].every((k) => /lora_[AB]\.default|modules_to_save\.default/.test(k)))
  const out = join(dir, 'final')
  trainer.saveModel(out)
  const reloaded = PeftModel.fromPretrained(await base(), out)
  const a = logitsOf(model.eval()), b = logitsOf(reloaded.eval())
  t.same(Array.from(b), Array.from(a), 'the saved adapter reproduces the trained model')
  // The Trainer's own restore path (loadStateDict, strict) takes the adapter keys.
  const fresh = getPeftModel(await base(), new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['query', 'value'], taskType: 'SEQ_CLS' }), { seed: 9 })
  const st = readSafetensors(join(out, 'adapter_model.safetensors')).tensors
  fresh.loadStateDict(new Map([...st].map(([k, v]) => [k, v.data as Float32Array])), { strict: true })
  t.same(Array.from(logitsOf(fresh.eval())), Array.from(a), 'loadStateDict with adapter keys restores it too')
  // Resuming a LoRA run from its checkpoint: a fresh PEFT model continues to the same adapter.
  const resumedModel = getPeftModel(await base(), new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['query', 'value'], taskType: 'SEQ_CLS' }), { seed: 5 })
  const resumed = new Trainer({ model: resumedModel, args: new TrainingArguments(join(dir, 'resumed'), { ...args, outputDir: join(dir, 'resumed') } as never), trainDataset: syntheticDataset(64, 1, { text: false }), dataCollator: collator })
  await resumed.train({ resumeFromCheckpoint: ckpt })
  t.equal(resumed.state.globalStep, 24)
  t.same(Array.from(logitsOf(resumedModel.eval())), Array.from(a), 'resumed from checkpoint-12: the same final adapter')
  resumed.dispose()
  resumedModel.dispose()
  trainer.dispose()
  for (const m of [model, reloaded, fresh]) m.dispose()
})

t.test('bad input: an adapter for another base model', async (t) => {
  // three_labels: hidden 48, two layers. Its adapter cannot fit one_layer (hidden 32).
  const other = await BertForSequenceClassification.fromPretrained(join(root, 'test', 'fixtures', 'bert', 'three_labels'))
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-other-'))
  const otherPeft = getPeftModel(other, new LoraConfig({ r: 4, targetModules: ['query', 'value'], modulesToSave: ['classifier'] }), { seed: 3 })
  otherPeft.savePretrained(dir)
  otherPeft.dispose()

  const model = (await base()).eval()
  const before = snapshot(model)
  const logits = logitsOf(model)
  t.throws(() => PeftModel.fromPretrained(model, dir),
    /adapter_model\.safetensors: tensor "base_model\.model\.bert\.encoder\.layer\.0\.attention\.self\.query\.lora_A\.weight" has shape \[4, 48\], the model expects \[4, 32\].*another base model/)
  sameSnapshot(t, before, snapshot(model), 'after the failed load')
  t.notOk([...model.namedModules()].some(([, m]) => m instanceof LoraLinear || m instanceof ModulesToSaveWrapper), 'no LoRA layer left behind')
  t.same(Array.from(logitsOf(model)), Array.from(logits), 'the model computes what it did before')

  // Same shapes, but keys for layers this model does not have.
  const twoLayers = withDeferredInit(() => new BertForSequenceClassification(new BertConfig({ ...JSON.parse(readFileSync(join(baseDir, 'config.json'), 'utf8')), num_hidden_layers: 2 }))).value
  for (const p of twoLayers.parameters()) p.buffer.write(new Float32Array(p.numel))
  const dir2 = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-deeper-'))
  getPeftModel(twoLayers, new LoraConfig({ r: 4, targetModules: ['query', 'value'] }), { seed: 3 }).savePretrained(dir2)
  twoLayers.dispose()
  t.throws(() => PeftModel.fromPretrained(model, dir2), /4 tensor\(s\) have no place in this model: base_model\.model\.bert\.encoder\.layer\.1\.attention\.self\.query\.lora_A\.weight/)
  sameSnapshot(t, before, snapshot(model), 'after the second failed load')

  // A missing tensor (a file cut short).
  const dir3 = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-cut-'))
  copyFileSync(join(fixtures, 'qv_classifier', 'adapter_config.json'), join(dir3, 'adapter_config.json'))
  const { writeSafetensors } = await import('../../lib/hub/safetensors.js')
  const full = readSafetensors(join(fixtures, 'qv_classifier', 'adapter_model.safetensors')).tensors
  writeSafetensors(join(dir3, 'adapter_model.safetensors'), [...full].filter(([k]) => !k.endsWith('classifier.bias')).map(([k, v]) => [k, { dtype: 'F32', shape: v.shape, data: v.data as Float32Array }] as const))
  t.throws(() => PeftModel.fromPretrained(model, dir3), /lacks 1 tensor\(s\) this config needs: base_model\.model\.classifier\.bias/)
  sameSnapshot(t, before, snapshot(model), 'after the third failed load')
  model.dispose()
})

t.test('bad input: target modules, model types, unsupported adapter options', async (t) => {
  const model = await base()
  const before = snapshot(model)
  t.throws(() => getPeftModel(model, new LoraConfig({ targetModules: ['q_proj', 'v_proj'] })),
    /targetModules \["q_proj","v_proj"\] matched no Linear layer of BertForSequenceClassification; its Linear layers are: bert\.encoder\.layer\.\*\.attention\.self\.query, bert\.encoder\.layer\.\*\.attention\.self\.key, bert\.encoder\.layer\.\*\.attention\.self\.value, bert\.encoder\.layer\.\*\.attention\.output\.dense, bert\.encoder\.layer\.\*\.intermediate\.dense, bert\.encoder\.layer\.\*\.output\.dense, bert\.pooler\.dense, classifier$/)
  t.throws(() => getPeftModel(model, new LoraConfig({ targetModules: ['LayerNorm'] })), /matches "bert\.embeddings\.LayerNorm" \(LayerNorm\), but LoRA wraps Linear layers only/)
  t.throws(() => getPeftModel(model, new LoraConfig({ targetModules: ['query'], modulesToSave: ['clasifier'] })), /modulesToSave \["clasifier"\] matched no module/)
  t.throws(() => new LoraConfig({ r: 0 }), /r must be a positive integer/)
  t.throws(() => new LoraConfig({ targetModules: '(' }), /not a valid regular expression/)
  sameSnapshot(t, before, snapshot(model), 'after the refused configs')
  // Default targets come from model_type, as in peft.
  const bert = getPeftModel(model, new LoraConfig({ r: 2 }))
  t.same([...bert.loraModules.keys()], ['bert.encoder.layer.0.attention.self.query', 'bert.encoder.layer.0.attention.self.value'], 'bert: query and value by default')
  t.throws(() => getPeftModel(bert.base_model.model, new LoraConfig({ r: 2 })), /already holds LoRA layers/)
  bert.dispose()

  const mystery = withDeferredInit(() => new BertForSequenceClassification(new BertConfig({ model_type: 'mystery', vocab_size: 10, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 8 }))).value
  t.throws(() => getPeftModel(mystery, new LoraConfig()), /no default targetModules for model_type "mystery" \(known: bert, .*\); set targetModules/)
  mystery.dispose()

  // An adapter whose base has a model_type bertkit does not know.
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-type-'))
  const baseCopy = join(dir, 'base')
  mkdirSync(baseCopy)
  const cfg = JSON.parse(readFileSync(join(baseDir, 'config.json'), 'utf8'))
  writeFileSync(join(baseCopy, 'config.json'), JSON.stringify({ ...cfg, model_type: 'gpt2' }))
  copyFileSync(join(baseDir, 'model.safetensors'), join(baseCopy, 'model.safetensors'))
  const adapter = join(dir, 'adapter')
  mkdirSync(adapter)
  const adapterConfig = JSON.parse(readFileSync(join(fixtures, 'qv_classifier', 'adapter_config.json'), 'utf8'))
  writeFileSync(join(adapter, 'adapter_config.json'), JSON.stringify({ ...adapterConfig, base_model_name_or_path: baseCopy }))
  copyFileSync(join(fixtures, 'qv_classifier', 'adapter_model.safetensors'), join(adapter, 'adapter_model.safetensors'))
  await t.rejects(AutoPeftModelForSequenceClassification.fromPretrained(adapter), /unknown model_type "gpt2"; supported: bert/)

  // Options that change the math and that bertkit does not implement are refused, not ignored.
  const plain = await base()
  for (const [field, value, pattern] of [
    ['use_dora', true, /not supported by bertkit: use_dora=true/],
    ['rank_pattern', { query: 8 }, /rank_pattern=\{"query":8\}/],
    ['layers_to_transform', [0], /layers_to_transform=\[0\]/],
    ['peft_type', 'IA3', /peft_type "IA3" is not supported \(bertkit loads LORA adapters\)/],
    ['use_rslora', 'yes', /adapter_config\.json: use_rslora must be true or false, got "yes"/],
    ['r', 1e9, /adapter_config\.json: r must be at most 65536/],
    ['r', '4', /adapter_config\.json: r must be a positive integer, got "4"/],
    ['lora_dropout', '0.1', /adapter_config\.json: lora_dropout must be in \[0, 1\)/],
    ['modules_to_save', 'classifier', /adapter_config\.json: modules_to_save must be a list of module names/],
  ] as const) {
    writeFileSync(join(adapter, 'adapter_config.json'), JSON.stringify({ ...adapterConfig, [field]: value }))
    t.throws(() => PeftModel.fromPretrained(plain, adapter), pattern, `${field} refused`)
  }
  t.notOk([...plain.namedModules()].some(([, m]) => m instanceof LoraLinear), 'nothing injected by the refused loads')
  plain.dispose()
  model.dispose()
})

t.test('modules_to_save as peft matches it: by the end of the module path, any module type, refused where peft fails', async (t) => {
  const distil = join(root, 'test', 'fixtures', 'distilbert', 'base')
  const roberta = join(root, 'test', 'fixtures', 'roberta', 'base')
  const load = (dir: string) => AutoModelForSequenceClassification.fromPretrained(dir)

  // "classifier" (what SEQ_CLS adds) also wraps DistilBERT's pre_classifier, which then trains.
  const seqCls = getPeftModel(await load(distil), new LoraConfig({ targetModules: ['q_lin'], taskType: 'SEQ_CLS' }))
  t.same([...seqCls.modulesToSaveWrappers.keys()], ['pre_classifier', 'classifier'], 'pre_classifier and classifier are saved')
  t.ok([...seqCls.namedParameters()].filter(([n]) => n.includes('pre_classifier.modules_to_save')).every(([, p]) => p.requiresGrad), 'and pre_classifier trains')
  t.ok([...seqCls.adapterStateDict().keys()].includes('base_model.model.pre_classifier.weight'), 'its weights are in the adapter file, as peft expects on load')
  seqCls.dispose()

  // RoBERTa's head is a module of its own (dense, dropout, out_proj): copied whole; its fields read through the wrapper.
  const head = getPeftModel(await load(roberta), new LoraConfig({ targetModules: ['query'], taskType: 'SEQ_CLS' }))
  const wrapper = head.modulesToSaveWrappers.get('classifier')!
  const copy = wrapper.active as unknown as { dense: { weight: Tensor }; dropout: { p: number } }
  const original = wrapper.original_module as unknown as { dense: { weight: Tensor } }
  t.not(copy.dense.weight, original.dense.weight, 'the copy has tensors of its own')
  t.same(Array.from(copy.dense.weight.toFloat32Array()), Array.from(original.dense.weight.toFloat32Array()), 'holding the same values at first')
  t.equal((wrapper as unknown as { dense: unknown }).dense, copy.dense, 'a field the wrapper lacks reads the active copy (peft\'s __getattr__)')
  t.equal((wrapper as unknown as { dropout: { p: number } }).dropout.p, copy.dropout.p)
  head.dispose()

  // What peft refuses, or saves in a form its own PeftModel.from_pretrained cannot read back (KeyError), bertkit refuses.
  const refused: Array<[string, LoraConfigInit, RegExp]> = [
    [distil, { targetModules: 'all-linear', taskType: 'SEQ_CLS' }, /modulesToSave "classifier" matches "pre_classifier", which is a LoRA layer .*peft refuses this/],
    [baseDir, { targetModules: ['query'], modulesToSave: ['default'] }, /modulesToSave "default" matches "bert\.encoder\.layer\.0\.attention\.self\.query\.lora_dropout\.default", inside a LoRA layer/],
    [baseDir, { targetModules: ['query'], modulesToSave: ['dropout'] }, /matches ".*query\.lora_dropout", inside a LoRA layer/],
    [baseDir, { targetModules: ['query'], modulesToSave: ['layer'] }, /targetModules \["query"\] matched no Linear layer of BertForSequenceClassification once excludeModules and modulesToSave left out bert\.encoder\.layer\.\*\.attention\.self\.query/],
    [baseDir, { targetModules: ['query'], modulesToSave: ['embeddings'] }, /matches "bert\.embeddings\.word_embeddings", inside "bert\.embeddings", which is saved whole already .*cannot load the adapter it saves/],
    [roberta, { targetModules: ['query'], modulesToSave: ['out_proj'], taskType: 'SEQ_CLS' }, /matches "classifier\.out_proj", inside "classifier"/],
    [baseDir, { targetModules: ['query'], modulesToSave: ['ttention'] }, /matches "bert\.encoder\.layer\.0\.attention", which holds the LoRA layer/],
  ]
  for (const [dir, init, error] of refused) {
    const model = await load(dir)
    const before = snapshot(model)
    t.throws(() => getPeftModel(model, new LoraConfig(init)), error, JSON.stringify(init))
    sameSnapshot(t, before, snapshot(model), `${JSON.stringify(init)}: the model is left as it was`)
    model.dispose()
  }

  // A nested module without parameters changes nothing in peft either: accepted.
  const quiet = getPeftModel(await load(roberta), new LoraConfig({ targetModules: ['query'], modulesToSave: ['classifier', 'classifier.dropout'] }))
  t.same([...quiet.modulesToSaveWrappers.keys()], ['classifier'])
  quiet.dispose()

  // A name that matches nothing: an error for a new config; an adapter file from peft (which ignores it) still loads.
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-unmatched-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) copyFileSync(join(fixtures, 'qv_classifier', f), join(dir, f))
  const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, modules_to_save: ['classifier', 'no_such_module'] }))
  const stderr: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => { stderr.push(String(chunk)); return true }) as typeof process.stderr.write
  let loaded: PeftModel | null = null
  try {
    loaded = PeftModel.fromPretrained(await base(), dir)
  } finally {
    process.stderr.write = write
  }
  t.ok(stderr.some((l) => /modulesToSave \["no_such_module"\] matched no module .*ignored, as peft does/.test(l)), 'a warning names it')
  const c = close(logitsOf(loaded!.eval()), expectedTensors('qv_classifier').get('logits')!.data as Float32Array, 1e-5)
  t.ok(c.ok, `and the adapter gives peft's logits: ${c.msg}`)
  loaded!.dispose()
})

t.test('Module.deepCopy: a copy with its own tensors, same values, flags and modes', async (t) => {
  const model = await base()
  model.bert.encoder.layer.items[0].attention.self.query.bias!.requiresGrad = false
  const copy = model.bert.encoder.deepCopy()
  const a = [...model.bert.encoder.namedParameters()], b = [...copy.namedParameters()]
  t.same(b.map(([n, p]) => [n, p.requiresGrad]), a.map(([n, p]) => [n, p.requiresGrad]), 'same names, order and requiresGrad')
  t.ok(b.every(([, p], i) => p !== a[i][1] && p.toFloat32Array().every((v, j) => v === a[i][1].toFloat32Array()[j])), 'new tensors, equal values')
  t.equal(copy.layer.items[0].attention.self.query.weight, b[0][1], 'fields point at the copied tensors')
  t.equal(copy.training, model.bert.encoder.training, 'training mode kept')
  noGrad(() => b[0][1].buffer.write(new Float32Array(b[0][1].numel)))
  t.notOk(a[0][1].toFloat32Array().every((v) => v === 0), 'writing the copy leaves the original alone')
  copy.dispose()
  model.dispose()
})

t.test('AutoPeftModelForSequenceClassification loads the base named by the adapter', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-auto-'))
  const adapterConfig = JSON.parse(readFileSync(join(fixtures, 'qv_classifier', 'adapter_config.json'), 'utf8'))
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...adapterConfig, base_model_name_or_path: baseDir }))
  copyFileSync(join(fixtures, 'qv_classifier', 'adapter_model.safetensors'), join(dir, 'adapter_model.safetensors'))
  const model = await AutoPeftModelForSequenceClassification.fromPretrained(dir)
  const c = close(logitsOf(model.eval()), expectedTensors('qv_classifier').get('logits')!.data as Float32Array, 1e-5)
  t.ok(c.ok, `logits: ${c.msg}`)
  model.dispose()

  // A 3-label adapter over a base without a head whose config.json says 2 labels (a pre-trained
  // encoder's usual state): the label count comes from the adapter's saved classifier.
  const headless = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-headless-'))
  copyFileSync(join(baseDir, 'config.json'), join(headless, 'config.json'))
  const { writeSafetensors } = await import('../../lib/hub/safetensors.js')
  writeSafetensors(join(headless, 'model.safetensors'), [...readSafetensors(join(baseDir, 'model.safetensors')).tensors]
    .filter(([k]) => !k.startsWith('classifier.')).map(([k, v]) => [k, { dtype: 'F32', shape: v.shape, data: v.data as Float32Array }] as const))
  const three = getPeftModel(await BertForSequenceClassification.fromPretrained(headless, { numLabels: 3, seed: 4 }),
    new LoraConfig({ r: 2, targetModules: ['value'], taskType: 'SEQ_CLS', baseModelNameOrPath: headless, initLoraWeights: false }), { seed: 4 })
  const dir3 = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-auto3-'))
  three.savePretrained(dir3)
  const loaded = await AutoPeftModelForSequenceClassification.fromPretrained(dir3)
  t.equal(loaded.numLabels, 3)
  t.same(Array.from(logitsOf(loaded.eval())), Array.from(logitsOf(three.eval())), 'same logits as the saved model')
  three.dispose()
  loaded.dispose()
})

t.test('a SEQ_CLS adapter whose config does not list the classifier still loads it', async (t) => {
  const name = 'seq_cls_all_linear_bias_all'
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-lora-oldseqcls-'))
  const adapterConfig = JSON.parse(readFileSync(join(fixtures, name, 'adapter_config.json'), 'utf8'))
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...adapterConfig, modules_to_save: null }))
  copyFileSync(join(fixtures, name, 'adapter_model.safetensors'), join(dir, 'adapter_model.safetensors'))
  const model = PeftModel.fromPretrained(await base(), dir)
  const c = close(logitsOf(model.eval()), expectedTensors(name).get('logits')!.data as Float32Array, 1e-5)
  t.ok(c.ok, `logits: ${c.msg}`)
  model.dispose()
})

t.test('--lora specs', async (t) => {
  const c = loraConfigFromSpec('r=8,alpha=16,dropout=0.1,targets=query,value,save=classifier')
  t.same([c.r, c.loraAlpha, c.loraDropout, c.targetModules, c.modulesToSave], [8, 16, 0.1, ['query', 'value'], ['classifier']])
  t.equal(loraConfigFromSpec('targets=all-linear').targetModules, 'all-linear')
  t.equal(loraConfigFromSpec('r=4,bias=lora_only,rslora=true').scaling, 8 / 2, 'rsLoRA: alpha / sqrt(r)')
  t.throws(() => loraConfigFromSpec('r=8,query'), /--lora: cannot read "query"/)
  t.throws(() => loraConfigFromSpec('rank=8'), /--lora: unknown key "rank"/)
  t.throws(() => loraConfigFromSpec('r=eight'), /--lora: r must be a number, got "eight"/)
  t.throws(() => loraConfigFromSpec('dropout=1.5'), /--lora: loraDropout must be in \[0, 1\)/)
})
