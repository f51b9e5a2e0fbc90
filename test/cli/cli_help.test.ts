// The CLI for people: per-command help generated from one flag table (every
// training argument with a description and its default), --version,
// did-you-mean for typos, strict flags on every command, errors that name the
// flag, the freezing flags that read right (and their older spellings), and a
// warning when nothing will be evaluated.
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { main, applyFreeze, applyFreezeFlags } from '../../lib/cli/main.js'
import { allFlags, closest, commandHelp, flagsOf, TRAINING_ARGUMENT_HELP, COMMANDS } from '../../lib/cli/flags.js'
import { packageVersion } from '../../lib/cli/doctor.js'
import { TrainingArguments } from '../../lib/train/training_args.js'
import { BertConfig, BertForSequenceClassification } from '../../lib/index.js'
import { withDeferredInit } from '../../lib/nn/init.js'
import { saveTinyCliModel } from '../helpers/tiny_training.js'

const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-cli-help-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

async function capture(argv: string[]): Promise<{ code: number | null; out: string; err: string; error: Error | null }> {
  const out: string[] = [], err: string[] = []
  const log = console.log
  const write = process.stderr.write
  console.log = (...a: unknown[]) => void out.push(a.join(' ') + '\n')
  process.stderr.write = ((s: string) => err.push(String(s)) > 0) as typeof process.stderr.write
  try {
    return { code: await main(argv), out: out.join(''), err: err.join(''), error: null }
  } catch (e) {
    return { code: null, out: out.join(''), err: err.join(''), error: e as Error }
  } finally {
    console.log = log
    process.stderr.write = write
  }
}

t.test('every training argument has a description and shows its default', async (t) => {
  const fields = Object.keys(new TrainingArguments())
  t.same(fields.filter((f) => !TRAINING_ARGUMENT_HELP[f]), [], 'no field without a line of help')
  t.same(Object.keys(TRAINING_ARGUMENT_HELP).filter((f) => !fields.includes(f)), [], 'no help for a field that does not exist')
  const help = (await capture(['train', '--help'])).out
  t.match(help, /--learning-rate X +the initial learning rate of AdamW \[default: 0\.00005\]/)
  t.match(help, /--logging-steps N\|FRACTION +.*\[default: 0\.01 \(TrainingArguments' default: 500\)\]/)
  t.match(help, /--gradient-checkpointing +recompute each encoder layer/)
  t.match(help, /--freeze-up-to-index N +freeze parameter tensors 0\.\.N/)
  for (const f of flagsOf('train')) t.ok(help.includes(`--${f.name}`), `train --help lists --${f.name}`)
  t.ok(allFlags().every((f) => f.help.length > 0), 'every flag of the table has a description')
})

t.test('each command has its own help', async (t) => {
  const helps = new Map<string, string>()
  for (const c of ['train', 'eval', 'predict', 'bench', 'doctor']) {
    const r = await capture([c, '--help'])
    t.equal(r.code, 0, `${c} --help exits 0`)
    t.match(r.out, new RegExp(`^Usage: bertkit ${c} `), c)
    helps.set(c, r.out)
  }
  t.equal((await capture(['cache', 'verify', '--help'])).out.trim(), commandHelp('cache verify'))
  t.equal((await capture(['help', 'predict'])).out, helps.get('predict'))
  t.equal(new Set(helps.values()).size, 5, 'five different texts')
  t.notOk(helps.get('predict')!.includes('--learning-rate'), 'predict does not list training arguments')
  const overview = await capture(['--help'])
  for (const c of COMMANDS) t.ok(overview.out.includes(`bertkit ${c}`), `--help names ${c}`)
  t.equal((await capture(['--version'])).out.trim(), packageVersion())
  t.equal((await capture([])).code, 2, 'no command: the overview and exit status 2')
})

t.test('typos: did-you-mean, on every command; errors name the flag', async (t) => {
  t.equal(closest('learning-rat', ['learning-rate', 'seed']), 'learning-rate')
  t.equal(closest('zzzz', ['learning-rate', 'seed']), null)
  const cases: Array<[string[], RegExp]> = [
    [['train', '--learning-rat', '1'], /unknown flag --learning-rat for bertkit train \(did you mean --learning-rate\?\); see bertkit train --help/],
    [['predict', '--model', 'x', '--txt', 'hi'], /unknown flag --txt for bertkit predict \(did you mean --text\?\)/],
    [['predict', '--model', 'x', '--text', 'hi', '--learning-rate', '1'], /unknown flag --learning-rate for bertkit predict \(it is a flag of bertkit train, eval\)/],
    [['eval', '--modle', 'x'], /unknown flag --modle for bertkit eval \(did you mean --model\?\)/],
    [['doctor', '--jsn'], /unknown flag --jsn for bertkit doctor \(did you mean --json\?\)/],
    [['bench', '--tokenize', 'x'], /unknown flag --tokenize for bertkit bench \(did you mean --tokenized\?\)/],
    [['cache', 'verify', '--repo-typ', 'model'], /unknown flag --repo-typ for bertkit cache verify \(did you mean --repo-type\?\)/],
    [['trian'], /unknown command "trian" \(did you mean train\?\)/],
    [['eval', '--model', 'm', '--dataset', 'd', '--eval-strategy', 'step'], /^--eval-strategy must be one of no, steps, epoch, got "step"$/],
    [['train', '--model', 'm', '--dataset', 'd', '--load-best-model-at-end', '--eval-strategy', 'epoch'], /^--load-best-model-at-end needs --save-strategy to match --eval-strategy/],
    [['train', '--model', 'm', '--dataset', 'd', '--report-to', 'tensorboard'], /^--report-to "tensorboard": bertkit writes no TensorBoard event files/],
    [['train', '--model', 'm', '--dataset', 'd', '--freeze-embeddings', 'yes'], /--freeze-embeddings is a switch and takes no value, got "yes"/],
  ]
  for (const [argv, re] of cases) {
    const r = await capture(argv)
    t.match(r.error?.message ?? '(no error)', re, argv.join(' '))
  }
})

t.test('freezing flags read right, and match the older spellings', async (t) => {
  const names = (m: BertForSequenceClassification) => [...m.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n)
  const make = () => withDeferredInit(() => new BertForSequenceClassification(new BertConfig({ vocab_size: 50, hidden_size: 8, num_hidden_layers: 12, num_attention_heads: 2, intermediate_size: 16 }))).value
  const pairs: Array<[Record<string, string | true>, string, string]> = [
    [{ 'train-only': 'classifier' }, 'head', 'train only classifier'],
    [{ 'freeze-up-to-index': '100' }, 'index:<=100', 'parameter tensors 0-100 frozen'],
    [{ 'freeze-layers': '0-5', 'freeze-embeddings': true }, 'embeddings+layers:0-5', 'embeddings frozen; layers 0-5 frozen'],
  ]
  for (const [flags, old, said] of pairs) {
    const a = make(), b = make()
    t.equal(applyFreezeFlags(a, new Map(Object.entries(flags))), said)
    applyFreeze(b, old)
    t.same(names(a), names(b), `${JSON.stringify(flags)} = --freeze ${old}`)
    a.dispose()
    b.dispose()
  }
  const m = make()
  t.same(names(m).length, 201, 'nothing frozen by default')
  t.equal(applyFreezeFlags(m, new Map()), null)
  t.throws(() => applyFreezeFlags(m, new Map([['train-only', 'clasifier']])), /--train-only: no parameter name starts with "clasifier" \(names start with: bert, classifier\)/)
  t.throws(() => applyFreezeFlags(m, new Map([['freeze-layers', '0..5']])), /--freeze-layers: expected a range A-B such as 0-5, got "0\.\.5"/)
  t.throws(() => applyFreezeFlags(m, new Map<string, string | true>([['freeze-up-to-index', true]])), /--freeze-up-to-index: expected a number/)
  m.dispose()
})

t.test('a dataset without the eval split trains with a warning that names the flags', async (t) => {
  const model = join(dir, 'tiny')
  saveTinyCliModel(model)
  const csv = join(dir, 'train.csv')
  writeFileSync(csv, 'text,label\na fine film,1\na dull film,0\ngreat,1\nbad,0\n')
  const out = join(dir, 'out')
  const r = await capture(['train', '--model', model, '--dataset', 'csv', '--data-files', `train=${csv}`, '--output-dir', out, '--max-steps', '2', '--per-device-train-batch-size', '2', '--train-only', 'classifier'])
  t.equal(r.error, null, r.error?.message ?? 'trained')
  t.match(r.err, /warning: the dataset has no "test" split \(splits: train\), so nothing will be evaluated; name one with --eval-split, or give one with --data-files train=a\.csv,test=b\.csv/)
  t.match(r.err, /trainable: 34 \(0\.0069%\)/, 'a small trainable share is not shown as 0.00%')
  t.ok(existsSync(join(out, 'report.html')) && existsSync(join(out, 'trainer_state.json')))
  t.match(readFileSync(join(out, 'report.html'), 'utf8'), /<td>freezing<\/td><td>train only classifier<\/td>/)
})
