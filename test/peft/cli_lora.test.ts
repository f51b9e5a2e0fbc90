// The CLI's --lora and --pooling flags: train writes peft's adapter files
// (or a checkpoint recording classifier_pooling), and eval / predict take
// the adapter directory as --model.
import t from 'tap'
import { mkdtempSync, writeFileSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import os from 'node:os'
import { main } from '../../lib/cli/main.js'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { saveTinyCliModel, sentimentCsv } from '../helpers/tiny_training.js'

async function capture(argv: string[]): Promise<string[]> {
  const lines: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')) }
  try {
    const code = await main(argv)
    if (code !== 0) throw new Error(`exit code ${code}`)
  } finally {
    console.log = log
  }
  return lines
}

function setup() {
  const dir = mkdtempSync(join(os.tmpdir(), 'bertkit-cli-lora-'))
  const modelDir = join(dir, 'tiny')
  saveTinyCliModel(modelDir)
  writeFileSync(join(dir, 'train.csv'), sentimentCsv(32))
  writeFileSync(join(dir, 'test.csv'), sentimentCsv(8))
  const data = ['--dataset', 'csv', '--data-files', `train=${join(dir, 'train.csv')},test=${join(dir, 'test.csv')}`]
  return { dir, modelDir, data }
}

t.test('bertkit train --lora writes peft\'s adapter; eval and predict load it', async (t) => {
  const { dir, modelDir, data } = setup()
  const out = join(dir, 'out')
  const stderr: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string | Uint8Array) => { stderr.push(String(chunk)); return true }) as typeof process.stderr.write
  let lines: string[]
  try {
    lines = await capture(['train', '--model', modelDir, ...data, '--output-dir', out, '--max-steps', '4', '--per-device-train-batch-size', '8',
      '--learning-rate', '1e-2', '--disable-tqdm', '--lora', 'r=4,alpha=8,dropout=0.1,targets=query,value'])
  } finally {
    process.stderr.write = write
  }
  const result = JSON.parse(lines.join('\n'))
  t.equal(result.train.globalStep, 4)
  t.ok(stderr.some((l) => /^bertkit: trainable params: 290 \|\| all params: 492,260 \|\| trainable%: 0\.0589$/m.test(l)), `peft's summary line is printed: ${stderr.join('').trim()}`)
  t.same(readdirSync(out).filter((f) => f.startsWith('adapter_') || f.startsWith('model.')).sort(), ['adapter_config.json', 'adapter_model.safetensors'], 'the adapter, not a full checkpoint')
  const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))
  t.same([config.r, config.lora_alpha, config.lora_dropout, config.target_modules, config.modules_to_save, config.task_type, config.base_model_name_or_path],
    [4, 8, 0.1, ['query', 'value'], ['classifier', 'score'], 'SEQ_CLS', modelDir])
  t.same([...readSafetensors(join(out, 'adapter_model.safetensors')).tensors.keys()].sort(), [
    'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight', 'base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight',
    'base_model.model.bert.encoder.layer.0.attention.self.value.lora_A.weight', 'base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight',
    'base_model.model.classifier.bias', 'base_model.model.classifier.weight',
  ])
  // (eval logs into --output-dir, which must exist.)
  const evalOut = JSON.parse((await capture(['eval', '--model', out, ...data, '--disable-tqdm', '--output-dir', out])).join('\n'))
  t.ok(Math.abs(evalOut.evalLoss - result.eval.evalLoss) < 1e-6, `eval of the adapter directory (${evalOut.evalLoss}) equals the trained model's (${result.eval.evalLoss})`)
  const pred = JSON.parse((await capture(['predict', '--model', out, '--text', 'a wonderful film', '--top-k', 'all']))[0])
  t.equal(pred.labels.length, 2)
  await t.rejects(main(['train', '--model', modelDir, ...data, '--lora']), /--lora needs a spec/)
  await t.rejects(main(['train', '--model', modelDir, ...data, '--lora', 'r=4', '--pooling', 'mean']), /--lora with --pooling other than "pooler" is not supported/)
  await t.rejects(main(['train', '--model', modelDir, ...data, '--lora', 'r=4,targets=q_proj', '--max-steps', '1', '--disable-tqdm']),
    /--lora|matched no Linear layer of BertForSequenceClassification; its Linear layers are: bert\.encoder\.layer\.\*\.attention\.self\.query/)
  rmSync(dir, { recursive: true, force: true })
})

t.test('bertkit train --pooling records classifier_pooling in config.json', async (t) => {
  const { dir, modelDir, data } = setup()
  const out = join(dir, 'out')
  await capture(['train', '--model', modelDir, ...data, '--output-dir', out, '--max-steps', '2', '--per-device-train-batch-size', '8', '--disable-tqdm', '--pooling', 'max'])
  t.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).classifier_pooling, 'max')
  t.ok(existsSync(join(out, 'model.safetensors')))
  await t.rejects(main(['train', '--model', modelDir, ...data, '--output-dir', out, '--max-steps', '1', '--disable-tqdm', '--pooling', 'attention']),
    /classifier_pooling must be one of "pooler", "cls", "mean", "max", got "attention"/)
  rmSync(dir, { recursive: true, force: true })
})
