// Live peft reference (npm run test:reference; needs python3 with torch,
// transformers and peft): random LoRA configs on every family's tiny model
// (target_modules as names, regexes or all-linear; exclude_modules;
// modules_to_save; bias none / all / lora_only; SEQ_CLS or not), carried both
// ways: peft's adapter loaded by bertkit gives peft's logits, bertkit's adapter
// loaded by peft (PeftModel.from_pretrained) gives bertkit's; parameter names,
// flags and the trainable-parameters line agree; a config peft refuses, bertkit
// refuses too. test/oracles/peft_reference_live.py is the Python side.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { PYTHON, REPO_ROOT, pythonJson } from '../helpers/python.js'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { AutoModelForSequenceClassification, noGrad, tensor, tidy } from '../../lib/index.js'
import { getPeftModel, LoraConfig, PeftModel, type LoraBias } from '../../lib/peft/index.js'

const root = REPO_ROOT
const python = PYTHON
const py = pythonJson

interface Case {
  index: number
  family: string
  base: string
  config: { r: number; lora_alpha: number; target_modules: string[] | string; bias: LoraBias; use_rslora: boolean; modules_to_save?: string[]; task_type?: 'SEQ_CLS'; exclude_modules?: string[] }
  peft_error?: string
}
interface Outputs { logits: number[]; logits64: number[]; named: Array<[string, number[], boolean]>; line: string }

/**
 * bertkit's float32 logits against the float64 ones: within 1e-5 relative, or
 * within 4x torch's own float32 error where random adapter weights make the
 * model ill-conditioned (torch strays 5e-6 there too).
 */
function accurate(t: { ok(v: boolean, m: string): void }, what: string, ours: ArrayLike<number>, torch32: ArrayLike<number>, exact: ArrayLike<number>): void {
  const mine = maxDiff(ours, exact), theirs = maxDiff(torch32, exact)
  const tol = Math.max(1e-5, 4 * theirs)
  t.ok(mine <= tol, `${what}: relative error vs float64 ${mine.toExponential(2)} (torch float32: ${theirs.toExponential(2)}; bertkit vs torch ${maxDiff(ours, torch32).toExponential(2)})`)
}

function configOf(c: Case['config']): LoraConfig {
  return new LoraConfig({
    r: c.r, loraAlpha: c.lora_alpha, targetModules: c.target_modules, bias: c.bias, useRslora: c.use_rslora,
    modulesToSave: c.modules_to_save ?? null, taskType: c.task_type ?? null, excludeModules: c.exclude_modules ?? null,
  })
}

function batch(base: string) {
  const raw = JSON.parse(readFileSync(join(root, base, 'inputs.json'), 'utf8')) as Record<string, number[][]>
  const shape = [raw.input_ids.length, raw.input_ids[0].length]
  const ids = (rows: number[][]) => tensor(Int32Array.from(rows.flat()), { shape, dtype: 'int32' })
  return { inputIds: ids(raw.input_ids), attentionMask: ids(raw.attention_mask), tokenTypeIds: raw.token_type_ids ? ids(raw.token_type_ids) : null }
}

/** max |a - b| relative to max |b|: logits of these random adapters reach tens. */
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = a.length === b.length ? 0 : Infinity, ref = 0
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]))
    ref = Math.max(ref, Math.abs(b[i]))
  }
  return d / Math.max(ref, 1)
}

const probe = spawnSync(python, ['-c', 'import torch, transformers, peft'], { encoding: 'utf8' })
if (probe.status !== 0) {
  t.test('peft reference suite', { skip: `python3 with torch, transformers and peft is not available: ${probe.stderr.trim().split('\n').pop()}` }, () => {})
} else {
  const seed = Number(process.env.REFERENCE_SEED ?? Date.now() % 100000)
  const count = Number(process.env.PEFT_REFERENCE_CASES ?? 24)
  t.comment(`random LoRA configs from seed ${seed} (REFERENCE_SEED=${seed} reproduces this run)`)
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-peft-ref-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { cases } = py(['test/oracles/peft_reference_live.py', 'make', dir, String(seed), String(count)]) as { cases: Case[] }
  const ours = new Map<number, Outputs>()

  for (const c of cases) {
    t.test(`case ${c.index}: ${c.family} ${JSON.stringify(c.config)}`, async (t) => {
      const caseDir = join(dir, String(c.index))
      mkdirSync(caseDir, { recursive: true })
      writeFileSync(join(caseDir, 'case.json'), JSON.stringify(c))
      if (c.peft_error) {
        const model = await AutoModelForSequenceClassification.fromPretrained(join(root, c.base))
        t.throws(() => getPeftModel(model, configOf(c.config)), `peft refuses (${c.peft_error}); bertkit refuses too`)
        model.dispose()
        return
      }
      // peft → bertkit
      const theirs = JSON.parse(readFileSync(join(caseDir, 'peft.json'), 'utf8')) as Outputs
      const loaded = PeftModel.fromPretrained(await AutoModelForSequenceClassification.fromPretrained(join(root, c.base)), join(caseDir, 'peft'))
      const got = noGrad(() => tidy(() => loaded.forward(batch(c.base) as never).logits.toFloat32Array()))
      accurate(t, 'peft\'s adapter in bertkit: logits', got, theirs.logits, theirs.logits64)
      loaded.dispose()
      // bertkit → peft: the same config made by bertkit, its trainable tensors moved, saved.
      const model = getPeftModel(await AutoModelForSequenceClassification.fromPretrained(join(root, c.base)), configOf(c.config), { seed: c.index })
      t.same([...model.namedParameters()].map(([n, p]) => [n, [...p.shape], p.requiresGrad]), theirs.named, 'names, shapes and requires_grad equal peft\'s')
      t.equal(model.trainableParametersLine(), theirs.line, 'print_trainable_parameters line')
      let k = 1
      noGrad(() => {
        for (const [, p] of model.namedParameters()) {
          if (!p.requiresGrad) continue
          const v = p.toFloat32Array().map((x, i) => x + 0.1 * Math.sin(++k * 12.9898 + i * 78.233))
          p.buffer.write(v)
          p.version++
        }
      })
      model.eval()
      const mine = noGrad(() => tidy(() => model.forward(batch(c.base) as never).logits.toFloat32Array()))
      ours.set(c.index, { logits: Array.from(mine), logits64: [], named: [], line: '' })
      model.savePretrained(join(caseDir, 'bertkit'))
      model.dispose()
    })
  }

  t.test('bertkit\'s adapters, loaded by peft', async (t) => {
    const loaded = py(['test/oracles/peft_reference_live.py', 'load', dir, String(count)]) as Record<string, Outputs & { error?: string }>
    for (const c of cases) {
      if (c.peft_error) continue
      const mine = ours.get(c.index)
      const theirs = loaded[String(c.index)]
      if (!mine || !theirs) {
        t.fail(`case ${c.index}: ${mine ? 'peft did not load it' : 'bertkit did not save it'}`)
        continue
      }
      if (theirs.error) {
        t.fail(`case ${c.index}: PeftModel.from_pretrained failed: ${theirs.error}`)
        continue
      }
      accurate(t, `case ${c.index} (${c.family}): bertkit's adapter, bertkit's logits vs peft's`, mine.logits, theirs.logits, theirs.logits64)
      const expected = JSON.parse(readFileSync(join(dir, String(c.index), 'peft.json'), 'utf8')) as Outputs
      t.same(theirs.named, expected.named, `case ${c.index}: peft's names and flags for bertkit's adapter equal those of its own`)
    }
    t.ok(existsSync(dir))
  })
}
