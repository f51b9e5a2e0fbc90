// The CLI after training: string labels named in config.json (sorted, or
// --label-names' order), bad labels refused by split, file and line before any
// training, checkpoints that predict takes as --model, predict's inputs
// (--text repeated, --file lines or a CSV column) and JSON lines, eval on
// string labels, and `bertkit export onnx`.
import t from 'tap'
import { mkdtempSync, writeFileSync, existsSync, rmSync, readFileSync, readdirSync, copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { main } from '../../lib/cli/main.js'
import { repeatedFlag } from '../../lib/cli/predict.js'
import { pipeline, readSafetensors, writeSafetensors } from '../../lib/index.js'

const labelled = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'pipeline', 'bert_labels')

/** The fixture's encoder and tokenizer without its classifier: a base checkpoint that takes any label count. */
function baseCheckpoint(): string {
  const dir = join(mkdtempSync(join(os.tmpdir(), 'bertkit-base-')), 'base')
  mkdirSync(dir)
  const { tensors } = readSafetensors(join(labelled, 'model.safetensors'))
  writeSafetensors(join(dir, 'model.safetensors'), [...tensors].filter(([n]) => !n.startsWith('classifier.')).map(([n, x]) => [n, { dtype: 'F32' as const, shape: x.shape, data: x.data as Float32Array }] as const))
  const config = JSON.parse(readFileSync(join(labelled, 'config.json'), 'utf8'))
  for (const k of ['id2label', 'label2id', 'num_labels']) delete config[k]
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt']) copyFileSync(join(labelled, f), join(dir, f))
  return dir
}

const fixture = baseCheckpoint()
t.teardown(() => rmSync(join(fixture, '..'), { recursive: true, force: true }))
const POS = ['a great film', 'charming and funny', 'the best story this year', 'fresh , clever and moving']
const NEG = ['a dull mess', 'the worst movie', 'boring and too long', 'silly , thin and tired']
const MEH = ['not good , not bad', 'fine', 'just a movie', 'some fun , some dull']

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** An output folder that holds nothing: --output-dir is made (and probed) before the data is read, nothing more. */
const holdsNothing = (dir: string) => !existsSync(dir) || readdirSync(dir).length === 0

function csv(rows: Array<[string, string]>): string {
  return ['text,label', ...rows.map(([x, y]) => `"${x}",${y}`)].join('\n') + '\n'
}

async function capture(fn: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')) }
  try {
    await fn()
  } finally {
    console.log = log
  }
  return lines
}

const trainArgs = (dir: string, out: string, extra: string[] = []) => ['train', '--model', fixture, '--dataset', 'csv',
  '--data-files', `train=${join(dir, 'train.csv')},test=${join(dir, 'test.csv')}`, '--output-dir', out, '--max-steps', '4',
  '--per-device-train-batch-size', '4', '--learning-rate', '1e-3', '--disable-tqdm', '--save-strategy', 'steps', '--save-steps', '2',
  '--device', 'cpu', '--plot-curves', 'false', ...extra]

t.test('string labels: names in config.json, checkpoints predict with them, eval maps them', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-labels-'))
  try {
    const rows: Array<[string, string]> = [...POS.map((x) => [x, 'pos'] as [string, string]), ...NEG.map((x) => [x, 'neg'] as [string, string]), ...MEH.map((x) => [x, 'meh'] as [string, string])]
    writeFileSync(join(dir, 'train.csv'), csv(rows))
    writeFileSync(join(dir, 'test.csv'), csv(rows.slice(0, 6)))
    const out = join(dir, 'out')
    const result = JSON.parse((await capture(() => main(trainArgs(dir, out)))).join('\n'))
    t.equal(result.train.globalStep, 4)
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
    t.same(config.id2label, { 0: 'meh', 1: 'neg', 2: 'pos' }, 'names sorted, as class_encode_column sorts them')
    t.same(config.label2id, { meh: 0, neg: 1, pos: 2 })
    t.equal(config.num_labels, 3)
    for (const c of ['checkpoint-2', 'checkpoint-4']) t.ok(existsSync(join(out, c, 'tokenizer.json')), `${c} holds the tokenizer`)
    const lines = await capture(() => main(['predict', '--model', join(out, 'checkpoint-4'), '--text', 'a great film', '--text', 'the worst movie', '--device', 'cpu']))
    const preds = lines.map((l) => JSON.parse(l))
    t.same(preds.map((p) => p.text), ['a great film', 'the worst movie'], 'both --text values, in order')
    t.ok(preds.every((p) => ['meh', 'neg', 'pos'].includes(p.label) && p.score > 0 && p.score <= 1), 'label names and probabilities')
    const classifier = await pipeline('text-classification', join(out, 'checkpoint-4'), { device: 'cpu' })
    const api = await classifier(['a great film', 'the worst movie']) as Array<{ label: string; score: number }>
    t.same(preds.map((p) => [p.label, p.score]), api.map((r) => [r.label, r.score]), 'predict prints what the pipeline returns')
    classifier.dispose()
    // --file: one text per line, and a CSV column (with a pair column).
    writeFileSync(join(dir, 'lines.txt'), 'a great film\n\nthe worst movie\n')
    writeFileSync(join(dir, 'pairs.csv'), 'premise,hypothesis\n"a great film","the worst movie"\n"fine","just a movie"\n')
    const fromLines = (await capture(() => main(['predict', '--model', out, '--file', join(dir, 'lines.txt'), '--device', 'cpu']))).map((l) => JSON.parse(l))
    t.same(fromLines.map((p) => [p.text, p.label, p.score]), preds.map((p) => [p.text, p.label, p.score]), 'the final folder (step 4) predicts as checkpoint-4 does')
    t.same(fromLines.map((p) => p.text), ['a great film', 'the worst movie'], 'blank lines skipped')
    const fromCsv = (await capture(() => main(['predict', '--model', out, '--file', join(dir, 'pairs.csv'), '--text-column', 'premise', '--text-pair-column', 'hypothesis', '--top-k', '2', '--device', 'cpu']))).map((l) => JSON.parse(l))
    t.same(fromCsv.map((p) => [p.text, p.textPair, p.labels.length]), [['a great film', 'the worst movie', 2], ['fine', 'just a movie', 2]], 'CSV columns as text pairs, top 2 labels')
    await t.rejects(main(['predict', '--model', out, '--file', join(dir, 'pairs.csv')]), /no column "text" \(columns: premise, hypothesis\); pass --text-column/)
    await t.rejects(main(['predict', '--model', out]), /predict needs --text/)
    await t.rejects(main(['predict', '--model', out, '--text', 'x', '--top-k', '0']), /--top-k: expected a positive integer, got "0"/)
    await t.rejects(main(['predict', '--model', out, '--text', 'x', '--topk', '2']), /unknown flag --topk for bertkit predict \(did you mean --top-k\?\)/)
    // eval on string labels: matched through the model's label2id.
    const evalOut = JSON.parse((await capture(() => main(['eval', '--model', out, '--dataset', 'csv', '--data-files', `test=${join(dir, 'test.csv')}`, '--device', 'cpu']))).join('\n'))
    t.ok(Number.isFinite(evalOut.evalAccuracy), `eval on string labels: ${JSON.stringify(evalOut)}`)
    writeFileSync(join(dir, 'unknown.csv'), csv([['a great film', 'pos'], ['odd', 'great']]))
    await t.rejects(main(['eval', '--model', out, '--dataset', 'csv', '--data-files', `test=${join(dir, 'unknown.csv')}`, '--device', 'cpu']),
      new RegExp(`test split: the label at ${esc(join(dir, 'unknown.csv'))} line 3 \\(row 1\\) is "great", not one of the 3 class names \\("meh", "neg", "pos"\\) from the model ${esc(out)} \\(config.json id2label\\)`))
    // export onnx from a checkpoint.
    const exported = join(dir, 'onnx-out')
    const info = JSON.parse((await capture(() => main(['export', 'onnx', '--model', join(out, 'checkpoint-4'), '--out', exported, '--quantize']))).join('\n'))
    t.same(info.inputNames, ['input_ids', 'attention_mask', 'token_type_ids'])
    t.same(readdirSync(join(exported, 'onnx')).sort(), ['model.onnx', 'model_quantized.onnx'])
    t.same(JSON.parse(readFileSync(join(exported, 'config.json'), 'utf8')).id2label, { 0: 'meh', 1: 'neg', 2: 'pos' }, 'the export keeps the label names')
    await t.rejects(main(['export', 'onnx', '--model', out, '--out', exported, '--opset', '9']), /opset 9 is not supported/)
    await t.rejects(main(['export', 'onnx', '--model', out, '--out', exported, '--fp16']), /unknown flag --fp16 for bertkit export onnx; see bertkit export onnx --help/)
    await t.rejects(main(['export', 'tflite', '--model', out]), /export: unknown format "tflite"/)
    await t.rejects(main(['export', 'onnx', '--model', out]), /--out DIR is required/)
    // Numeric flags are read as train's are (plain decimals), and checked before any model is loaded or folder made.
    for (const [flag, value, message] of [
      ['--top-k', 'abc', /--top-k: expected a positive integer or "all", got "abc"/],
      ['--top-k', '1.5', /--top-k: expected a positive integer, got "1.5"/],
      ['--batch-size', '0x10', /--batch-size: expected a number, got "0x10"/],
      ['--batch-size', '0', /--batch-size: expected a positive integer, got "0"/],
      ['--max-length', 'Infinity', /--max-length: expected a number, got "Infinity"/],
      ['--max-length', '', /--max-length: expected a number/],
      ['--encoding', 'klingon', /--encoding: unknown encoding "klingon"/],
    ] as const) {
      await t.rejects(main(['predict', '--model', join(dir, 'no-such-model'), '--text', 'x', flag, value]), message, `predict ${flag} ${JSON.stringify(value)}`)
    }
    const notMade = join(dir, 'never-made')
    for (const [value, message] of [['0x11', /--opset: expected a number, got "0x11"/], ['17.5', /--opset: expected a positive integer/], ['', /--opset: expected a number/], ['22', /opset 22 is not supported/]] as const) {
      await t.rejects(main(['export', 'onnx', '--model', out, '--out', notMade, '--opset', value]), message, `export --opset ${JSON.stringify(value)}`)
    }
    t.notOk(existsSync(notMade), 'a bad flag stops the export before --out is made')
    // --out is checked before the model is loaded: a file in the way, or a folder that cannot be made.
    writeFileSync(join(dir, 'a-file'), 'x')
    await t.rejects(main(['export', 'onnx', '--model', join(dir, 'no-such-model'), '--out', join(dir, 'a-file', 'sub')]), /--out ".*a-file\/sub" cannot be created: a part of the path is a file/)
    if (process.platform === 'linux') {
      const started = Date.now()
      await t.rejects(main(['export', 'onnx', '--model', join(dir, 'no-such-model'), '--out', '/proc/self/nope']), /--out "\/proc\/self\/nope" cannot be created/)
      t.ok(Date.now() - started < 10000, 'at once')
    }
    const topAll = (await capture(() => main(['predict', '--model', out, '--text', 'a great film', '--top-k', 'all', '--batch-size', '2', '--max-length', '16', '--device', 'cpu']))).map((l) => JSON.parse(l))
    t.same(topAll[0].labels.map((r: { label: string }) => r.label).sort(), ['meh', 'neg', 'pos'], '--top-k all with valid --batch-size / --max-length')
    // A data file for predict --file is decoded with --encoding too (here a Latin-1 CSV).
    writeFileSync(join(dir, 'latin.csv'), Buffer.concat([Buffer.from('text\nfine\ncaf'), Buffer.from([0xe9]), Buffer.from('\n')]))
    await t.rejects(main(['predict', '--model', out, '--file', join(dir, 'latin.csv'), '--device', 'cpu']), /latin\.csv: line 3 \(byte 0xe9 at column 4\) is not valid UTF-8/)
    const latin = (await capture(() => main(['predict', '--model', out, '--file', join(dir, 'latin.csv'), '--encoding', 'latin1', '--device', 'cpu']))).map((l) => JSON.parse(l))
    t.same(latin.map((p) => p.text), ['fine', 'caf\u00e9'], 'predict --file data.csv --encoding latin1')
    // A checkpoint that already names its classes keeps them (and their order) when trained further on names.
    writeFileSync(join(dir, 'more.csv'), csv([...POS.map((x) => [x, 'pos'] as [string, string]), ...NEG.map((x) => [x, 'neg'] as [string, string])]))
    const again = join(dir, 'again')
    const furtherArgs = (file: string, o: string) => ['train', '--model', out, '--dataset', 'csv', '--data-files', `train=${file}`, '--output-dir', o,
      '--max-steps', '1', '--disable-tqdm', '--device', 'cpu', '--plot-curves', 'false']
    await capture(() => main(furtherArgs(join(dir, 'more.csv'), again)))
    t.same(JSON.parse(readFileSync(join(again, 'config.json'), 'utf8')).id2label, { 0: 'meh', 1: 'neg', 2: 'pos' }, 'the checkpoint\'s three names, though the data names two')
    writeFileSync(join(dir, 'odd.csv'), csv([['a great film', 'pos'], ['a dull mess', 'awful']]))
    await t.rejects(main(furtherArgs(join(dir, 'odd.csv'), join(dir, 'again2'))),
      new RegExp(`train split: the label at ${esc(join(dir, 'odd.csv'))} line 3 \\(row 1\\) is "awful", not one of the 3 class names \\("meh", "neg", "pos"\\) from the classifier of ${esc(out)}`))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

t.test('--label-names fixes the order; bad labels stop the run before training', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-labels-'))
  try {
    const rows: Array<[string, string]> = [...POS.map((x) => [x, 'pos'] as [string, string]), ...NEG.map((x) => [x, 'neg'] as [string, string])]
    writeFileSync(join(dir, 'train.csv'), csv(rows))
    writeFileSync(join(dir, 'test.csv'), csv(rows.slice(0, 4)))
    const out = join(dir, 'out')
    await capture(() => main(trainArgs(dir, out, ['--label-names', 'pos,neg'])))
    t.same(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).id2label, { 0: 'pos', 1: 'neg' }, '--label-names order')
    writeFileSync(join(dir, 'test.csv'), csv([['a great film', 'pos'], ['a dull mess', 'negative']]))
    const out2 = join(dir, 'out2')
    await t.rejects(main(trainArgs(dir, out2)),
      new RegExp(`test split: the label at ${esc(join(dir, 'test.csv'))} line 3 \\(row 1\\) is "negative", not one of the 2 class names \\("neg", "pos"\\) from the train split`))
    t.ok(holdsNothing(out2), 'nothing was written: the labels were checked before training')
    await t.rejects(main(trainArgs(dir, out2, ['--label-names', 'pos,neg,pos'])), /--label-names: the name "pos" appears twice/)
    await t.rejects(main(trainArgs(dir, out2, ['--label-names', 'pos,neg', '--num-labels', '3'])), /--num-labels 3 disagrees with the 2 label names/)
    // Integer labels: out of range for --num-labels, with the row.
    writeFileSync(join(dir, 'train.csv'), ['text,label', '"a great film",1', '"a dull mess",0', '"fine",2'].join('\n'))
    writeFileSync(join(dir, 'test.csv'), ['text,label', '"a great film",1'].join('\n'))
    const trainCsv = esc(join(dir, 'train.csv')), testCsv = esc(join(dir, 'test.csv'))
    await t.rejects(main(trainArgs(dir, out2, ['--num-labels', '2'])), new RegExp(`train split: the label at ${trainCsv} line 4 \\(row 2\\) is 2, but --num-labels 2 gives 2 classes \\(labels 0\\.\\.1\\)`))
    writeFileSync(join(dir, 'test.csv'), ['text,label', '"a great film",1', '"x",7'].join('\n'))
    await t.rejects(main(trainArgs(dir, out2)), new RegExp(`test split: the label at ${testCsv} line 3 \\(row 1\\) is 7, but the train split \\(labels 0\\.\\.2\\) gives 3 classes`))
    await t.rejects(main(trainArgs(dir, out2, ['--label-names', 'a,b'])), new RegExp(`train split: the label at ${trainCsv} line 4 \\(row 2\\) is 2, but --label-names gives 2 classes \\(labels 0\\.\\.1\\)`))
    // Class indices mixed with names say neither: refused with both rows; --label-names settles it.
    writeFileSync(join(dir, 'train.csv'), ['text,label', '"a great film",pos', '"a dull mess",neg', '"fine",1'].join('\n'))
    writeFileSync(join(dir, 'test.csv'), ['text,label', '"a great film",pos'].join('\n'))
    await t.rejects(main(trainArgs(dir, out2)), new RegExp(`train split: the label at ${trainCsv} line 4 \\(row 2\\) is "?1"?, a class index, but the label at ${trainCsv} line 2 \\(row 0\\) is the class name "pos"; .*pass --label-names`))
    // A name left empty is named by file and line too.
    writeFileSync(join(dir, 'train.csv'), ['text,label', '"a great film",pos', '"a dull mess",'].join('\n'))
    await t.rejects(main(trainArgs(dir, out2)), new RegExp(`train split: the label at ${trainCsv} line 3 \\(row 1\\) is (empty|missing)`))
    t.ok(holdsNothing(out2))
    writeFileSync(join(dir, 'train.csv'), ['text,label', '"a great film",pos', '"a dull mess",neg', '"fine",1'].join('\n'))
    const out3 = join(dir, 'out3')
    await capture(() => main(trainArgs(dir, out3, ['--label-names', 'neg,pos', '--max-steps', '1'])))
    t.same(JSON.parse(readFileSync(join(out3, 'config.json'), 'utf8')).id2label, { 0: 'neg', 1: 'pos' }, 'with --label-names, a mixed column trains (1 = "pos")')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

t.test('LoRA runs keep the label names beside the adapter', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-labels-'))
  try {
    const rows: Array<[string, string]> = [...POS.map((x) => [x, 'good'] as [string, string]), ...NEG.map((x) => [x, 'bad'] as [string, string])]
    writeFileSync(join(dir, 'train.csv'), csv(rows))
    writeFileSync(join(dir, 'test.csv'), csv(rows.slice(0, 4)))
    const out = join(dir, 'out')
    await capture(() => main(trainArgs(dir, out, ['--lora', 'r=2,alpha=4,targets=query,value'])))
    t.ok(existsSync(join(out, 'adapter_config.json')) && existsSync(join(out, 'tokenizer.json')), 'adapter and tokenizer')
    const preds = (await capture(() => main(['predict', '--model', out, '--text', 'a great film', '--top-k', 'all', '--device', 'cpu']))).map((l) => JSON.parse(l))
    t.same(preds[0].labels.map((r: { label: string }) => r.label).sort(), ['bad', 'good'], 'predict on the adapter folder names the labels')
    const exported = join(dir, 'onnx')
    await capture(() => main(['export', 'onnx', '--model', out, '--out', exported]))
    t.same(JSON.parse(readFileSync(join(exported, 'config.json'), 'utf8')).id2label, { 0: 'bad', 1: 'good' }, 'and so does its ONNX export')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

t.test('repeated flags', async (t) => {
  t.same(repeatedFlag(['--text', 'a', '--model', 'm', '--text=b', '--text', '--not-a-flag'], 'text'), ['a', 'b', '--not-a-flag'])
  t.throws(() => repeatedFlag(['--text'], 'text'), /--text needs a value/)
})
