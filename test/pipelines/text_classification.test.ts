// The text-classification pipeline against transformers' own pipeline
// (test/fixtures/generators/make_pipeline_fixtures.py ran transformers on the same tiny
// models and inputs): labels equal, scores to 1e-5, the result shapes of
// every topK / functionToApply / pair / batching / truncation case equal;
// and bad input refused by name.
import t from 'tap'
import { mkdtempSync, readFileSync, copyFileSync, rmSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { pipeline, TextClassificationPipeline, AutoModelForSequenceClassification, AutoTokenizer, defaultClassificationFunction } from '../../lib/index.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'pipeline')

interface Case {
  init: Record<string, unknown>
  inputs: unknown
  call: Record<string, unknown>
  output?: unknown
  error?: string
}

const expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8')) as { models: Record<string, Case[]> }

const camel = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), v]))

function inputsOf(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(inputsOf)
  if (x !== null && typeof x === 'object') {
    const { text, text_pair: pair } = x as { text: string; text_pair: string }
    return { text, textPair: pair }
  }
  return x
}

/** Same nesting, same labels, scores within 1e-5 (absolute; scores are probabilities or small logits). */
function compare(actual: unknown, want: unknown, path: string): string | null {
  if (Array.isArray(want)) {
    if (!Array.isArray(actual)) return `${path}: expected an array, got ${JSON.stringify(actual)}`
    if (actual.length !== want.length) return `${path}: expected ${want.length} entries, got ${actual.length}`
    for (let i = 0; i < want.length; i++) {
      const e = compare(actual[i], want[i], `${path}[${i}]`)
      if (e) return e
    }
    return null
  }
  const w = want as { label: string; score: number }
  const a = actual as { label: string; score: number }
  if (!a || typeof a !== 'object' || Array.isArray(a)) return `${path}: expected {label, score}, got ${JSON.stringify(actual)}`
  if (Object.keys(a).sort().join() !== 'label,score') return `${path}: keys ${Object.keys(a).join(', ')}`
  if (a.label !== w.label) return `${path}: label ${a.label}, transformers ${w.label}`
  if (!(Math.abs(a.score - w.score) <= 1e-5)) return `${path}: score ${a.score}, transformers ${w.score}`
  return null
}

for (const [name, cases] of Object.entries(expected.models)) {
  t.test(`${name}: every case as transformers' pipeline`, async (t) => {
    const dir = join(fixtures, name)
    let worst = 0
    for (const [i, c] of cases.entries()) {
      const classifier = await pipeline('text-classification', dir, { device: 'cpu', ...camel(c.init) })
      try {
        const out = await classifier(inputsOf(c.inputs) as string, camel(c.call))
        t.notOk(c.error, `case ${i}: transformers raised ${c.error}`)
        const err = compare(out, c.output, `case ${i} ${JSON.stringify(c.init)} ${JSON.stringify(c.call)}`)
        t.equal(err, null, err ?? `case ${i} (${JSON.stringify(c.call)}) matches`)
        const flat = (x: unknown): number[] => Array.isArray(x) ? x.flatMap(flat) : [(x as { score: number }).score]
        const got = flat(out), want = flat(c.output)
        for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k] - want[k]))
      } finally {
        classifier.dispose()
      }
    }
    t.comment(`${name}: largest score difference from transformers ${worst.toExponential(2)}`)
  })
}

t.test('the score function follows problem_type and num_labels as transformers does', async (t) => {
  t.equal(defaultClassificationFunction({ problem_type: null, num_labels: 3 }), 'softmax')
  t.equal(defaultClassificationFunction({ problem_type: null, num_labels: 1 }), 'sigmoid')
  t.equal(defaultClassificationFunction({ problem_type: 'regression', num_labels: 1 }), 'none')
  t.equal(defaultClassificationFunction({ problem_type: 'multi_label_classification', num_labels: 4 }), 'sigmoid')
  t.equal(defaultClassificationFunction({ problem_type: 'single_label_classification', num_labels: 1 }), 'sigmoid')
})

t.test('a loaded model and tokenizer; the model is put in eval mode and stays the caller\'s', async (t) => {
  const dir = join(fixtures, 'bert_labels')
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
  model.train()
  const tokenizer = await AutoTokenizer.fromPretrained(dir)
  const classifier = await pipeline('sentiment-analysis', model, { tokenizer })
  t.ok(classifier instanceof TextClassificationPipeline, 'the callable is a TextClassificationPipeline')
  t.equal(model.training, false, 'eval mode: dropout is off')
  const a = await classifier('a great film .')
  const b = await classifier('a great film .')
  t.same(a, b, 'two calls on the same input agree (no dropout)')
  t.same(await classifier('a great film .', { topK: undefined }), a, 'topK: undefined counts as not given')
  t.equal(compare(a, expected.models.bert_labels[0].output, 'a'), null, 'same label and score as transformers')
  classifier.dispose()
  t.ok([...model.namedParameters()].every(([, p]) => !p.disposed), 'the caller\'s model is not freed')
  model.dispose()
})

t.test('bad input is refused by name', async (t) => {
  const dir = join(fixtures, 'bert_labels')
  await t.rejects(pipeline('text-generation', dir), /unknown task "text-generation".*text-classification/, 'unknown task')
  await t.rejects(pipeline('text-classification', dir, { top_k: 2 } as never), /unknown option "top_k" \(did you mean "topK"\?\)/, 'snake_case option')
  await t.rejects(pipeline('text-classification', dir, { topK: 0 }), /topK must be a positive integer or null/, 'topK 0')
  await t.rejects(pipeline('text-classification', dir, { functionToApply: 'relu' as never }), /functionToApply must be one of softmax, sigmoid, none/)
  const noTokenizer = mkdtempSync(join(os.tmpdir(), 'bertkit-pipe-'))
  try {
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(dir, f), join(noTokenizer, f))
    await t.rejects(pipeline('text-classification', noTokenizer), new RegExp(`no tokenizer for "${noTokenizer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}".*processingClass`), 'a model folder without a tokenizer')
  } finally {
    rmSync(noTokenizer, { recursive: true, force: true })
  }
  const model = await AutoModelForSequenceClassification.fromPretrained(dir, { device: 'cpu' })
  await t.rejects(pipeline('text-classification', model), /needs \{ tokenizer \}/, 'a loaded model without a tokenizer')
  model.dispose()
  const classifier = await pipeline('text-classification', dir, { device: 'cpu' })
  await t.rejects(classifier(['fine', 3] as never), /input 1: expected a string or \{ text, textPair \}, got number/)
  await t.rejects(classifier([['a', 'b']] as never), /input 0: .*to classify a text pair, pass \{ text: "…", textPair: "…" \}/)
  await t.rejects(classifier({ text: 'a', pair: 'b' } as never), /unexpected key\(s\) pair/)
  const long = Array(80).fill('film').join(' ')
  await t.rejects(classifier(long), /exceeds max_position_embeddings 64.*\{ truncation: true \}/, 'too long without truncation')
  t.equal(((await classifier(long, { truncation: true })) as Array<{ label: string }>).length, 1, 'truncation: true classifies it')
  t.same(await classifier([]), [], 'an empty batch gives an empty list')
  classifier.dispose()
  await t.rejects(classifier('a'), /used after dispose/)
  t.ok(readdirSync(dir).includes('tokenizer.json'))
})
