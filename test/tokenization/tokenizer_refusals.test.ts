// Tokenizer files that cannot mean what they say are refused with the file
// named: a vocab.txt without BERT's [UNK]/[CLS]/[SEP]/[PAD] (transformers would
// give them ids past the vocabulary and fail on the first unknown word), a
// tokenizer.json whose model is not the WordPiece (or Unigram) that
// tokenizer_config.json's class implies, a WordPiece without its unk token,
// and tokenizer files that are not valid UTF-8.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AutoTokenizer } from '../../lib/tokenization/index.js'

const root = mkdtempSync(join(tmpdir(), 'bertkit-tok-refuse-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
let n = 0
function dir(files: Record<string, string | Buffer | object>): string {
  const d = mkdtempSync(join(root, `d${n++}-`))
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(d, name), typeof content === 'string' || Buffer.isBuffer(content) ? content : JSON.stringify(content))
  }
  return d
}
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

// A BPE tokenizer.json as the tokenizers library saves it (Python: models.BPE with these merges, Whitespace).
const bpeJson = {
  version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
  model: {
    type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
    vocab: { '<unk>': 0, '<s>': 1, '</s>': 2, a: 3, g: 4, o: 5, d: 6, m: 7, v: 8, i: 9, e: 10, go: 11, goo: 12, good: 13, mo: 14, mov: 15, movi: 16, movie: 17 },
    merges: [['g', 'o'], ['go', 'o'], ['goo', 'd'], ['m', 'o'], ['mo', 'v'], ['mov', 'i'], ['movi', 'e']],
  },
}

t.test('a vocab.txt without the special tokens BertTokenizer needs', async (t) => {
  const d = dir({ 'vocab.txt': 'a\ngood\nmovie\n[PAD]\n[MASK]\n', 'tokenizer_config.json': { tokenizer_class: 'BertTokenizer' } })
  t.throws(() => AutoTokenizer.fromDirectory(d), { message: new RegExp(`${esc(join(d, 'vocab.txt'))}: the vocabulary has no \\[UNK\\] \\(unk_token\\), \\[CLS\\] \\(cls_token\\), \\[SEP\\] \\(sep_token\\), which BertTokenizer needs`) })
  await t.rejects(AutoTokenizer.fromPretrained(d), /the vocabulary has no \[UNK\]/)
  const noPad = dir({ 'vocab.txt': '[UNK]\n[CLS]\n[SEP]\na\n' })
  t.throws(() => AutoTokenizer.fromDirectory(noPad), /has no \[PAD\] \(pad_token\)/)
  // The tokens a vocabulary really uses, named in tokenizer_config.json, are fine.
  const named = dir({ 'vocab.txt': '<pad>\n<unk>\n<s>\n</s>\na\ngood\nmovie\n', 'tokenizer_config.json': { unk_token: '<unk>', cls_token: '<s>', sep_token: '</s>', pad_token: '<pad>' } })
  const tok = AutoTokenizer.fromDirectory(named)
  t.same(tok('a good movie').inputIds, [2, 4, 5, 6, 3])
  t.same(tok('a bad movie').inputIds, [2, 4, 1, 6, 3], 'unknown words get the vocabulary\'s own unk id')
  const complete = dir({ 'vocab.txt': '[PAD]\n[UNK]\n[CLS]\n[SEP]\na\ngood\nmovie\n' })
  t.same(AutoTokenizer.fromDirectory(complete)('a good movie').inputIds, [2, 4, 5, 6, 3])
})

t.test('a tokenizer.json whose model contradicts tokenizer_config.json', async (t) => {
  for (const cls of ['BertTokenizer', 'BertTokenizerFast', 'DistilBertTokenizer']) {
    const d = dir({ 'tokenizer.json': bpeJson, 'tokenizer_config.json': { tokenizer_class: cls } })
    t.throws(() => AutoTokenizer.fromDirectory(d), { message: new RegExp(`${esc(join(d, 'tokenizer.json'))}: tokenizer.json holds a "BPE" model, but tokenizer_config.json names ${cls}, a WordPiece tokenizer`) }, cls)
  }
  const unigramClass = dir({ 'tokenizer.json': bpeJson, 'tokenizer_config.json': { tokenizer_class: 'DebertaV2Tokenizer' } })
  t.throws(() => AutoTokenizer.fromDirectory(unigramClass), /holds a "BPE" model, but tokenizer_config.json names DebertaV2Tokenizer, a SentencePiece Unigram tokenizer/)
  // Without a contradicting class the file runs as it is.
  for (const config of [{}, { tokenizer_class: 'PreTrainedTokenizerFast' }]) {
    const d = dir({ 'tokenizer.json': bpeJson, 'tokenizer_config.json': config })
    t.same(AutoTokenizer.fromDirectory(d)('a good movie').inputIds, [3, 13, 17], `BPE as is with ${JSON.stringify(config)}`)
  }
  // A WordPiece that lacks its own unk token.
  const wp = {
    version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'BertPreTokenizer' }, post_processor: null, decoder: null,
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: { a: 0, good: 1, movie: 2 } },
  }
  const d = dir({ 'tokenizer.json': wp })
  t.throws(() => AutoTokenizer.fromDirectory(d), /tokenizer.json's WordPiece vocabulary has no "\[UNK\]" \(its unk_token\)/)
})

t.test('tokenizer files that are not UTF-8 are named with the line', async (t) => {
  const latin1 = Buffer.concat([Buffer.from('[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf'), Buffer.from([0xe9]), Buffer.from('\n')])
  const d = dir({ 'vocab.txt': latin1 })
  t.throws(() => AutoTokenizer.fromDirectory(d), { message: new RegExp(`${esc(join(d, 'vocab.txt'))}: line 5 \\(byte 0xe9 at column 4\\) is not valid UTF-8`) })
  const badJson = dir({ 'tokenizer.json': Buffer.concat([Buffer.from('{"x": "'), Buffer.from([0xff]), Buffer.from('"}')]) })
  t.throws(() => AutoTokenizer.fromDirectory(badJson), /tokenizer\.json: line 1 \(byte 0xff at column 8\) is not valid UTF-8/)
})
