// Bad command-line input gets an error naming the flag, file or line, before
// any work: numeric flags, output folders that cannot be made or written,
// labels that do not fit the classes, text files that are not UTF-8.
import t from 'tap'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { main } from '../../lib/cli/main.js'
import { intFlag, numberFlag, trainingArgsFromFlags, parseFlags } from '../../lib/cli/args.js'
import { BertConfig, BertForSequenceClassification, manualSeed } from '../../lib/index.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')
const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-cli-inputs-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

function tinyModel(name: string, numLabels?: number): string {
  manualSeed(1)
  const out = join(dir, name)
  const m = new BertForSequenceClassification(new BertConfig({ vocab_size: 30522, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64, ...(numLabels ? { num_labels: numLabels } : {}) }))
  m.savePretrained(out)
  m.dispose()
  if (!numLabels) {
    // As a base checkpoint (bert-base-*) is: not yet a classifier, so the data decides the classes.
    const configPath = join(out, 'config.json')
    writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, 'utf8')), architectures: ['BertForMaskedLM'] }))
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixtures, 'tokenizer', 'minilm-uncased', f), join(out, f))
  return out
}
const base = tinyModel('base')
const csv = (name: string, lines: string[]) => {
  const p = join(dir, name)
  writeFileSync(p, ['text,label', ...lines].join('\n') + '\n')
  return p
}
const good = csv('good.csv', ['a fine film,1', 'a dull film,0', 'great,1', 'bad,0'])

async function quiet<T>(p: () => Promise<T>): Promise<T> {
  const log = console.log
  const err = process.stderr.write.bind(process.stderr)
  console.log = () => {}
  process.stderr.write = (() => true) as typeof process.stderr.write
  try {
    return await p()
  } finally {
    console.log = log
    process.stderr.write = err
  }
}
const trainArgs = (extra: string[], trainFile = good) => ['train', '--model', base, '--dataset', 'csv', '--data-files', `train=${trainFile}`, '--output-dir', join(dir, 'out'), '--max-steps', '1', '--disable-tqdm', ...extra]

t.test('numeric flags are validated and named', async (t) => {
  t.equal(numberFlag('2e-5', 'lr'), 2e-5)
  t.equal(intFlag('16', 'n', 1), 16)
  for (const [v, re] of [['abc', /--x: expected a number, got "abc"/], ['', /--x: expected a number, got ""/], [' ', /expected a number/], ['0x10', /expected a number, got "0x10"/], ['Infinity', /expected a number/], ['1,5', /expected a number/]] as const) {
    t.throws(() => numberFlag(v, 'x'), re, JSON.stringify(v))
  }
  t.throws(() => intFlag('1.5', 'x', 1), /--x: expected a positive integer, got "1.5"/)
  t.throws(() => intFlag('0', 'x', 1), /--x: expected a positive integer, got "0"/)
  t.throws(() => intFlag('-1', 'x', 0), /--x: expected a non-negative integer/)
  t.throws(() => intFlag(true, 'x', 0), /--x: expected a number, got nothing/)
  t.throws(() => trainingArgsFromFlags(parseFlags(['--learning-rate', '']).flags, new Set()), /--learning-rate: expected a number, got ""/)

  for (const [flags, re] of [
    [['--max-length', 'abc'], /--max-length: expected a number, got "abc"/],
    [['--max-length', '0'], /--max-length: expected a positive integer, got "0"/],
    [['--max-length', '12.5'], /--max-length: expected a positive integer/],
    [['--num-labels', 'abc'], /--num-labels: expected a number, got "abc"/],
    [['--num-labels', '0'], /--num-labels: expected a positive integer/],
    [['--num-labels', '1e12'], /--num-labels: 1000000000000 is more than bertkit accepts/],
    [['--per-device-train-batch-size', '0'], /--per-device-train-batch-size must be a positive integer, got 0/],
    [['--per-device-train-batch-size', '2.5'], /--per-device-train-batch-size must be a positive integer, got 2.5/],
    [['--seed', '-1'], /--seed must be a non-negative integer/],
    [['--data-seed', '1.5'], /--data-seed must be null or a non-negative integer/],
    [['--warmup-ratio', '2'], /--warmup-ratio must be in \[0, 1\]/],
    [['--output-dir', ''], /--output-dir: expected a value/],
    [['--encoding', 'klingon'], /--encoding: unknown encoding "klingon"/],
  ] as const) {
    await t.rejects(quiet(() => main(trainArgs([...flags]))), re, flags.join(' '))
  }
  await t.rejects(quiet(() => main(['eval', '--model', base, '--dataset', 'csv', '--data-files', `test=${good}`, '--max-length', 'x'])), /--max-length: expected a number, got "x"/)
  for (const [flags, re] of [
    [['--epochs', 'abc'], /--epochs: expected a number, got "abc"/],
    [['--max-steps', '1.5'], /--max-steps: expected an integer >= -1/],
    [['--seeds', '1,x'], /--seeds: expected a number, got "x"/],
    [['--threads', '-2'], /--threads: expected a non-negative integer/],
  ] as const) {
    await t.rejects(main(['bench', '--model', base, '--tokenized', join(dir, 'none.json'), ...flags]), re, `bench ${flags.join(' ')}`)
  }
})

t.test('output folders: fail before any work, with the reason', async (t) => {
  const file = join(dir, 'a-file')
  writeFileSync(file, 'x')
  await t.rejects(quiet(() => main(trainArgs(['--output-dir', file]))), new RegExp(`--output-dir "${esc(file)}" cannot be created: ${esc(file)} exists and is not a folder`))
  await t.rejects(quiet(() => main(trainArgs(['--output-dir', join(file, 'sub')]))), /--output-dir ".*a-file\/sub" cannot be created: a part of the path is a file/)
  if (process.platform === 'linux') {
    const started = Date.now()
    await t.rejects(quiet(() => main(trainArgs(['--output-dir', '/proc/self/nope']))), /--output-dir "\/proc\/self\/nope" cannot be created: \/proc\/self does not allow new folders/)
    t.ok(Date.now() - started < 10000, 'at once (Node 20\'s recursive mkdir would spin forever here)')
  }
})

t.test('labels are checked as the data is prepared, naming file and line', async (t) => {
  const five = csv('five.csv', ['a,0', 'b,1', '"two', 'lines",1', 'c,5', 'd,0'])
  await t.rejects(quiet(() => main(trainArgs(['--num-labels', '2'], five))), new RegExp(`train split: the label at ${esc(five)} line 6 \\(row 3\\) is 5, but --num-labels 2 gives 2 classes \\(labels 0..1\\)`))
  const huge = csv('huge.csv', ['a,0', 'b,1000000000000'])
  await t.rejects(quiet(() => main(trainArgs([], huge))), new RegExp(`the label at ${esc(huge)} line 3 \\(row 1\\) is 1000000000000, which would make 1000000000001 classes`))
  const word = csv('word.csv', ['a,0', 'b,positive'])
  await t.rejects(quiet(() => main(trainArgs([], word))), new RegExp(`the label at ${esc(word)} line 3 \\(row 1\\) is "positive", not a class index`))
  const neg = csv('neg.csv', ['a,0', 'b,-1'])
  await t.rejects(quiet(() => main(trainArgs([], neg))), /line 3 \(row 1\) is -1, not a class index/)
  // A checkpoint that already is a 2-class classifier: label 2 is a data error, not a checkpoint error.
  const clf = tinyModel('clf', 2)
  const three = csv('three.csv', ['a,0', 'b,2'])
  await t.rejects(quiet(() => main(['train', '--model', clf, '--dataset', 'csv', '--data-files', `train=${three}`, '--output-dir', join(dir, 'o2'), '--max-steps', '1', '--disable-tqdm'])),
    new RegExp(`the label at ${esc(three)} line 3 \\(row 1\\) is 2, but the classifier of ${esc(clf)} \\(config.json; pass --num-labels to train a new head\\) gives 2 classes`))
  // An eval split with a label the train split's classes do not cover.
  const test3 = csv('test3.csv', ['a,0', 'b,3'])
  await t.rejects(quiet(() => main(['train', '--model', base, '--dataset', 'csv', '--data-files', `train=${good},test=${test3}`, '--output-dir', join(dir, 'o3'), '--max-steps', '1', '--disable-tqdm'])),
    new RegExp(`test split: the label at ${esc(test3)} line 3 \\(row 1\\) is 3, but the train split \\(labels 0..1\\) gives 2 classes`))
})

t.test('text files that are not UTF-8: the line is named; --encoding reads them', async (t) => {
  const latin = join(dir, 'latin.csv')
  writeFileSync(latin, Buffer.concat([Buffer.from('text,label\nfine,1\ncaf'), Buffer.from([0xe9]), Buffer.from(',0\n')]))
  await t.rejects(quiet(() => main(trainArgs([], latin))), new RegExp(`${esc(latin)}: line 3 \\(byte 0xe9 at column 4\\) is not valid UTF-8; if the file is Latin-1 or Windows-1252, pass --encoding latin1`))
  const out = join(dir, 'enc-out')
  const code = await quiet(() => main(trainArgs(['--encoding', 'latin1', '--output-dir', out, '--per-device-train-batch-size', '2'], latin)))
  t.equal(code, 0, 'trains with --encoding latin1')
  const lines = join(dir, 'lines.txt')
  writeFileSync(lines, Buffer.concat([Buffer.from('good\nna'), Buffer.from([0xef]), Buffer.from('ve\n')]))
  await t.rejects(quiet(() => main(['predict', '--model', out, '--file', lines])), new RegExp(`${esc(lines)}: line 2 \\(byte 0xef at column 3\\) is not valid UTF-8`))
  const printed: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { printed.push(a.join(' ')) }
  try {
    t.equal(await main(['predict', '--model', out, '--file', lines, '--encoding', 'latin1']), 0)
  } finally {
    console.log = log
  }
  t.same(printed.map((l) => JSON.parse(l).text), ['good', 'na\u00efve'])
  mkdirSync(join(dir, 'unused'), { recursive: true })
})
