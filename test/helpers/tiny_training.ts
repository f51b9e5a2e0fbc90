// What the training tests share: the fixtures folder, the one-layer BERT
// fixture, a synthetic task it learns in a few dozen steps and the collator
// that pads it (test/train/trainer.test.ts, test/peft/lora.test.ts,
// test/distributed/workers/train_tiny.ts), and the tiny model directory with
// a real tokenizer that the CLI tests train from.
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { BertConfig, BertForSequenceClassification, manualSeed, tensor } from '../../lib/index.js'
import { Dataset, type Row } from '../../lib/data/dataset.js'
import type { DataCollator } from '../../lib/train/trainer.js'

/** test/fixtures in the source tree (this file runs from dist/test/helpers). */
export const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures')
/** transformers' one-layer BERT golden fixture (hidden 32, vocabulary 50). */
export const ONE_LAYER_BERT = join(FIXTURES, 'bert', 'one_layer')

/**
 * Label 1 iff token 7 occurs: learnable by a 1-layer BERT in a few dozen
 * steps. Rows carry a `text` column too unless `text` is false.
 */
export function syntheticDataset(n: number, seed: number, options: { text?: boolean } = {}): Dataset {
  const withText = options.text ?? true
  let s = seed
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648)
  const rows: Row[] = []
  for (let i = 0; i < n; i++) {
    const len = 3 + Math.floor(rand() * 6)
    const label = i % 2
    const ids = [1, ...Array.from({ length: len - 2 }, () => 10 + Math.floor(rand() * 20)), 2]
    if (label) ids[1 + Math.floor(rand() * (len - 2))] = 7
    rows.push(withText ? { text: `row ${i}`, input_ids: ids, label } : { input_ids: ids, label })
  }
  return Dataset.fromRows(rows)
}

/** Pads input_ids to the batch's longest row; int32 labels. */
export const padCollator: DataCollator = (rows) => {
  const longest = Math.max(...rows.map((r) => (r.input_ids as number[]).length))
  const ids = new Int32Array(rows.length * longest)
  const mask = new Int32Array(rows.length * longest)
  rows.forEach((r, i) => (r.input_ids as number[]).forEach((v, j) => { ids[i * longest + j] = v; mask[i * longest + j] = 1 }))
  return {
    inputIds: tensor(ids, { shape: [rows.length, longest], dtype: 'int32' }),
    attentionMask: tensor(mask, { shape: [rows.length, longest], dtype: 'int32' }),
    labels: tensor(Int32Array.from(rows.map((r) => r.label as number)), { dtype: 'int32' }),
  }
}

/**
 * Saves a random 1-layer BERT (seed 1, hidden 16) with the minilm-uncased
 * tokenizer into modelDir: a model directory the CLI can train from.
 */
export function saveTinyCliModel(modelDir: string): void {
  manualSeed(1)
  const tiny = new BertForSequenceClassification(new BertConfig({ vocab_size: 30522, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64 }))
  tiny.savePretrained(modelDir)
  tiny.dispose()
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURES, 'tokenizer', 'minilm-uncased', f), join(modelDir, f))
}

/** A CSV of n sentiment rows (text,label), alternating a negative and a positive sentence. */
export function sentimentCsv(n: number): string {
  return ['text,label', ...Array.from({ length: n }, (_, i) => (i % 2 ? `"a wonderful, moving film ${i}",1` : `"a dull and tedious mess ${i}",0`))].join('\n')
}
