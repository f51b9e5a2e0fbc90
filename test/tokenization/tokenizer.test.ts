// The tokenizer against ids from Hugging Face's Rust tokenizers and decodes
// from transformers (test/fixtures/tokenizer, written by
// test/fixtures/generators/make_tokenizer_fixture.py): the uncased all-MiniLM-L6-v2 WordPiece
// and a cased variant of it, each loaded from tokenizer.json and from a bare
// vocab.txt; truncation, padding, saving, and bad input.
import t from 'tap'
import { scratchDirs } from '../helpers/scratch.js'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  AutoTokenizer,
  BertTokenizerFast,
  PreTrainedTokenizerFast,
  bertTokenizerJson,
  readVocabTxt,
  truncateTokens,
  type CallOptions,
} from '../../lib/tokenization/index.js'
import { bertNormalize, bertPreTokenize } from '../../lib/tokenization/bert_normalizer.js'

const FIXTURE = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tokenizer')
const UNCASED = join(FIXTURE, 'minilm-uncased')

interface Case {
  text: string
  textPair?: string
  truncation?: boolean | 'longest_first' | 'only_first' | 'only_second'
  maxLength?: number
}
interface Expected {
  ids?: number[]
  typeIds?: number[]
  decoded?: string
  decodedSkip?: string
  error?: string
}
interface Batch {
  variant: string
  texts: string[]
  textPairs?: string[]
  options: CallOptions<string[]>
  expected: { inputIds: number[][]; tokenTypeIds: number[][]; attentionMask: number[][] }
}
const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as {
  cases: Case[]
  variants: Record<'uncased' | 'cased', Expected[]>
  batches: Batch[]
  modelMaxLength: number
}

const { root, fresh: freshDir } = scratchDirs('bertkit-tokenizer-')

const tokenizerJson = JSON.parse(readFileSync(join(UNCASED, 'tokenizer.json'), 'utf8')) as Record<string, any>
const uncasedConfig = JSON.parse(readFileSync(join(UNCASED, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
const casedConfig = { ...uncasedConfig, do_lower_case: false }
// The fixture leaves vocab.txt out: it is the tokenizer.json vocabulary in id order.
const vocabTxt = Object.entries(tokenizerJson.model.vocab as Record<string, number>)
  .sort((a, b) => a[1] - b[1]).map(([token]) => token + '\n').join('')

function writeDir(files: Record<string, string | object>): string {
  const d = freshDir()
  for (const [name, content] of Object.entries(files)) writeFileSync(join(d, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  return d
}

const casedJson = structuredClone(tokenizerJson)
casedJson.normalizer.lowercase = false
casedJson.normalizer.strip_accents = false
const dirs = {
  uncased: UNCASED,
  cased: writeDir({ 'tokenizer.json': casedJson, 'tokenizer_config.json': casedConfig }),
  'uncased-vocab': writeDir({ 'vocab.txt': vocabTxt, 'tokenizer_config.json': uncasedConfig }),
  'cased-vocab': writeDir({ 'vocab.txt': vocabTxt, 'tokenizer_config.json': casedConfig }),
}
const uncased = AutoTokenizer.fromDirectory(UNCASED)

function optionsOf(c: Case): CallOptions<string> {
  const o: CallOptions<string> = {}
  if (c.textPair !== undefined) o.textPair = c.textPair
  if (c.truncation !== undefined) o.truncation = c.truncation
  if (c.maxLength !== undefined) o.maxLength = c.maxLength
  return o
}

/** Each truncation error of the Rust tokenizer, and the message bertkit gives for the same cause. */
const RUST_REFUSALS: Array<[string, RegExp]> = [
  ['Second sequence not provided', /^truncation "only_second" needs a text pair; this text has none$/],
  ['Sequence to truncate too short to respect the provided max_length', /^truncation "only_(first|second)": the (first|second) sequence has \d+ tokens, too few to remove the \d+ needed to fit maxLength/],
]

/** Indices of the fixture cases where the tokenizer disagrees with Rust, with the first few differences spelled out. */
function mismatches(tok: PreTrainedTokenizerFast, want: Expected[]): { indices: number[]; detail: string[] } {
  const indices: number[] = []
  const detail: string[] = []
  const quiet = process.emitWarning
  process.emitWarning = () => {}
  try {
    expected.cases.forEach((c, i) => {
      const w = want[i]
      let problem: string | null = null
      if (w.error !== undefined) {
        // Rust refuses this case: bertkit must refuse it for the same reason, not merely throw.
        const reason = RUST_REFUSALS.find(([rust]) => w.error!.includes(rust))
        try {
          tok(c.text, optionsOf(c))
          problem = `no error, Rust says ${w.error}`
        } catch (err) {
          const message = (err as Error).message
          if (!reason) problem = `Rust's error "${w.error}" has no known bertkit counterpart (bertkit said: ${message})`
          else if (!reason[1].test(message)) problem = `bertkit's error "${message}" is not the one Rust gives ("${w.error}")`
        }
      } else {
        const got = tok(c.text, optionsOf(c))
        if (JSON.stringify(got.inputIds) !== JSON.stringify(w.ids)) problem = `ids ${got.inputIds.join(' ')} want ${w.ids!.join(' ')}`
        else if (JSON.stringify(got.tokenTypeIds) !== JSON.stringify(w.typeIds)) problem = `type ids ${got.tokenTypeIds.join('')} want ${w.typeIds!.join('')}`
        else if (JSON.stringify(got.attentionMask) !== JSON.stringify(w.ids!.map(() => 1))) problem = 'attention mask not all 1'
        else if (tok.decode(w.ids!) !== w.decoded) problem = `decode ${JSON.stringify(tok.decode(w.ids!))} want ${JSON.stringify(w.decoded)}`
        else if (tok.decode(w.ids!, { skipSpecialTokens: true }) !== w.decodedSkip) problem = `decode skipping specials ${JSON.stringify(tok.decode(w.ids!, { skipSpecialTokens: true }))} want ${JSON.stringify(w.decodedSkip)}`
      }
      if (problem !== null) {
        indices.push(i)
        if (detail.length < 5) detail.push(`case ${i} ${JSON.stringify(c).slice(0, 120)}: ${problem}`)
      }
    })
  } finally {
    process.emitWarning = quiet
  }
  return { indices, detail }
}

t.test('ids and decodes equal the Rust tokenizer and transformers on every fixture case', async (t) => {
  t.ok(expected.cases.length >= 180, `${expected.cases.length} cases`)
  for (const [name, dir] of Object.entries(dirs)) {
    const tok = AutoTokenizer.fromDirectory(dir)
    t.type(tok, BertTokenizerFast, `${name}: a BertTokenizerFast`)
    const want = expected.variants[name.startsWith('uncased') ? 'uncased' : 'cased']
    const { indices, detail } = mismatches(tok, want)
    t.same(indices, [], `${name}: ${expected.cases.length - indices.length}/${expected.cases.length} cases match${detail.length ? '\n' + detail.join('\n') : ''}`)
  }
  // The two vocabularies must really differ in behaviour, or the cased run proves nothing.
  const differing = expected.cases.filter((_, i) => JSON.stringify(expected.variants.uncased[i].ids) !== JSON.stringify(expected.variants.cased[i].ids))
  t.ok(differing.length > 20, `${differing.length} cases differ between cased and uncased`)
})

t.test('the cp1252 bytes of the raw data are in the fixture and vanish as control characters', async (t) => {
  const withC1 = expected.cases.filter((c) => /[\u0080-\u009f]/.test(c.text))
  t.ok(withC1.length >= 30, `${withC1.length} sentences with C1 controls`)
  const s = withC1.find((c) => c.text.includes('\u0097'))!
  t.same(uncased(s.text).inputIds, uncased(s.text.replaceAll('\u0097', '')).inputIds, 'U+0097 (cp1252 em dash) is dropped, not a word break')
})

t.test('single text: flat arrays; a batch: one row per text, each equal to the single call', async (t) => {
  const texts = ['Hello, world!', 'A much longer sentence, with more tokens in it.', '']
  const one = uncased(texts[0])
  t.same(one.inputIds, [101, 7592, 1010, 2088, 999, 102])
  t.same(one.tokenTypeIds, [0, 0, 0, 0, 0, 0])
  t.same(one.attentionMask, [1, 1, 1, 1, 1, 1])
  const batch = uncased(texts)
  t.equal(batch.inputIds.length, 3)
  texts.forEach((text, i) => t.same(batch.inputIds[i], uncased(text).inputIds, `row ${i}`))
  t.same(batch.inputIds[2], [101, 102], 'an empty text is [CLS] [SEP]')
  t.same(uncased([]).inputIds, [], 'an empty batch')
  t.same(uncased.encode('Hello, world!'), one.inputIds, 'encode = inputIds')
  t.same(uncased(texts[0], { addSpecialTokens: false }).inputIds, [7592, 1010, 2088, 999])
  t.same(uncased.tokenize('Hello, Wörld!'), ['hello', ',', 'world', '!'])
  t.same(uncased.tokenize('a', { textPair: 'b', addSpecialTokens: true }), ['[CLS]', 'a', '[SEP]', 'b', '[SEP]'])
})

t.test('pairs: an empty second text is dropped for one string and kept in a batch, as transformers does', async (t) => {
  t.same(uncased('a', { textPair: '' }).inputIds, [101, 1037, 102])
  t.same(uncased(['a'], { textPair: [''] }).inputIds, [[101, 1037, 102, 102]])
  t.same(uncased(['a'], { textPair: [''] }).tokenTypeIds, [[0, 0, 0, 1]])
})

t.test('padded batches equal transformers', async (t) => {
  t.ok(expected.batches.length >= 8)
  for (const [i, b] of expected.batches.entries()) {
    const options = b.textPairs ? { ...b.options, textPair: b.textPairs } : b.options
    const got = uncased(b.texts, options)
    t.same(got, b.expected, `batch ${i} ${JSON.stringify(b.options)}${b.textPairs ? ' with pairs' : ''}`)
    const unpadded = uncased(b.texts, { ...options, padding: false, padToMultipleOf: undefined, maxLength: b.options.truncation ? b.options.maxLength : undefined })
    if (!b.options.truncation && b.options.padding) {
      const rows = unpadded.inputIds.map((ids, r) => ({ inputIds: ids, tokenTypeIds: unpadded.tokenTypeIds[r] }))
      t.same(uncased.pad(rows, { padding: b.options.padding, maxLength: b.options.maxLength, padToMultipleOf: b.options.padToMultipleOf }), b.expected, `batch ${i} through pad()`)
    }
  }
})

t.test('padding details', async (t) => {
  const texts = ['short', 'a somewhat longer text here']
  const right = uncased(texts, { padding: true })
  const n = right.inputIds[1].length
  t.same(right.inputIds[0], [101, 2460, 102, ...new Array(n - 3).fill(0)])
  t.same(right.attentionMask[0], [1, 1, 1, ...new Array(n - 3).fill(0)])
  t.same(right.tokenTypeIds[0], new Array(n).fill(0))
  t.same(uncased(texts[0], { padding: true }).inputIds, [101, 2460, 102], 'padding one text to the longest is a no-op')
  t.same(uncased(texts[0], { padding: 'max_length', maxLength: 5 }).attentionMask, [1, 1, 1, 0, 0])
  t.same(uncased(texts[0], { padToMultipleOf: 8 }).inputIds.length, 3, 'padToMultipleOf alone does not pad')
  t.same(uncased(texts[1], { padding: 'max_length', maxLength: 4 }).inputIds.length, n, 'longer than maxLength without truncation: left as is')
  t.equal(uncased(texts[0], { padding: 'max_length' }).inputIds.length, 512, 'max_length defaults to modelMaxLength')
  uncased.paddingSide = 'left'
  try {
    const left = uncased(texts, { padding: true })
    t.same(left.inputIds[0], [...new Array(n - 3).fill(0), 101, 2460, 102])
    t.same(left.attentionMask[0], [...new Array(n - 3).fill(0), 1, 1, 1])
  } finally {
    uncased.paddingSide = 'right'
  }
  t.throws(() => uncased(texts, { padding: true, truncation: true, maxLength: 10, padToMultipleOf: 8 }), /truncation length \(10\) is not a multiple of padToMultipleOf \(8\)/)
})

t.test('truncation: strategies, sides, limits', async (t) => {
  const a = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6']
  const b = ['b1', 'b2']
  t.same(truncateTokens(a, null, 4, 'longest_first'), [['a1', 'a2', 'a3', 'a4'], null])
  t.same(truncateTokens(a, null, 4, 'longest_first', 'left'), [['a3', 'a4', 'a5', 'a6'], null])
  t.same(truncateTokens(a, b, 5, 'longest_first'), [['a1', 'a2', 'a3'], ['b1', 'b2']], 'the shorter one keeps all it has')
  t.same(truncateTokens(a, ['b1', 'b2', 'b3', 'b4', 'b5'], 5, 'longest_first'), [['a1', 'a2', 'a3'], ['b1', 'b2']], 'both too long: split evenly, the odd token to the longer')
  t.same(truncateTokens(b, a, 5, 'longest_first'), [['b1', 'b2'], ['a1', 'a2', 'a3']])
  t.same(truncateTokens(a, b, 8, 'only_second'), [a, b], 'nothing to do when it fits')
  t.throws(() => truncateTokens(a, b, 5, 'only_second'), /the second sequence has 2 tokens, too few to remove the 3/)
  t.same(truncateTokens(a, b, 5, 'only_first'), [['a1', 'a2', 'a3'], b])
  t.throws(() => truncateTokens(a, null, 5, 'only_second'), /needs a text pair/)
  t.same(truncateTokens(a, b, 0, 'only_first'), [[], []], 'maxLength 0 empties both, as Rust')

  const long = 'one two three four five six seven eight nine ten'
  t.same(uncased(long, { truncation: true, maxLength: 5 }).inputIds, [101, 2028, 2048, 2093, 102])
  uncased.truncationSide = 'left'
  try {
    t.same(uncased(long, { truncation: true, maxLength: 5 }).inputIds, [101, 2809, 3157, 2702, 102], 'left side keeps the end')
  } finally {
    uncased.truncationSide = 'right'
  }
  t.equal(uncased(long, { truncation: false, maxLength: 5 }).inputIds.length, 12, 'truncation false wins over maxLength')
  t.equal(uncased(long, { maxLength: 5, padding: 'max_length' }).inputIds.length, 12, 'maxLength with padding does not imply truncation')
  const veryLong = Array.from({ length: 600 }, () => 'word').join(' ')
  t.equal(uncased(veryLong, { truncation: true }).inputIds.length, 512, 'default maxLength: modelMaxLength')
  t.equal(uncased(veryLong).inputIds.length, 602, 'no truncation unless asked')
})

t.test('model_max_length: huge means no limit', async (t) => {
  const dir = writeDir({ 'tokenizer.json': tokenizerJson, 'tokenizer_config.json': { ...uncasedConfig, model_max_length: 1e30 } })
  const tok = AutoTokenizer.fromDirectory(dir)
  t.equal(tok.modelMaxLength, Infinity)
  const warnings: string[] = []
  const onWarning = (w: Error) => warnings.push(w.message)
  process.on('warning', onWarning)
  try {
    const veryLong = Array.from({ length: 600 }, () => 'word').join(' ')
    t.equal(tok(veryLong, { truncation: true }).inputIds.length, 602, 'truncation without a length: none, as transformers')
    t.equal(tok(veryLong, { truncation: true, maxLength: 10 }).inputIds.length, 10)
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('warning', onWarning)
  }
  t.match(warnings.join('\n'), /no model_max_length: not truncating/)
  const saved = freshDir()
  tok.savePretrained(saved)
  const config = JSON.parse(readFileSync(join(saved, 'tokenizer_config.json'), 'utf8'))
  t.notOk('model_max_length' in config, 'no limit is saved as no model_max_length')
  t.equal(AutoTokenizer.fromDirectory(saved).modelMaxLength, Infinity)
})

t.test('ids, tokens and special tokens', async (t) => {
  t.equal(uncased.padTokenId, 0)
  t.equal(uncased.unkTokenId, 100)
  t.equal(uncased.clsTokenId, 101)
  t.equal(uncased.sepTokenId, 102)
  t.equal(uncased.maskTokenId, 103)
  t.equal(uncased.bosTokenId, null)
  t.equal(uncased.vocabSize, 30522)
  t.equal(uncased.modelMaxLength, 512)
  t.same(uncased.allSpecialIds, [0, 100, 101, 102, 103])
  t.equal(uncased.numSpecialTokensToAdd(), 2)
  t.equal(uncased.numSpecialTokensToAdd(true), 3)
  t.equal(uncased.convertTokensToIds('hello'), 7592)
  t.same(uncased.convertTokensToIds(['[CLS]', 'hello', 'not-a-token']), [101, 7592, 100], 'unknown tokens give the unknown id')
  t.same(uncased.convertIdsToTokens([101, 7592, 102]), ['[CLS]', 'hello', '[SEP]'])
  t.same(uncased.convertIdsToTokens([101, 7592, 102], { skipSpecialTokens: true }), ['hello'])
  t.equal(uncased.getVocab().get('##ing'), 2075)
  t.equal((uncased as BertTokenizerFast).doLowerCase, true)
  t.equal((AutoTokenizer.fromDirectory(dirs.cased) as BertTokenizerFast).doLowerCase, false)
})

t.test('decode', async (t) => {
  const ids = uncased('Hello, world! It\'s fine.').inputIds
  t.equal(uncased.decode(ids), "[CLS] hello, world! it ' s fine. [SEP]")
  t.equal(uncased.decode(ids, { skipSpecialTokens: true }), "hello, world! it ' s fine.")
  t.equal(uncased.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: true }), "hello, world! it's fine.")
  t.equal(uncased.decode(Int32Array.from(ids), { skipSpecialTokens: true }), "hello, world! it ' s fine.", 'typed arrays')
  t.equal(uncased.decode([]), '')
  t.equal(uncased.decode([101, 102], { skipSpecialTokens: true }), '')
  t.same(uncased.batchDecode([ids, [7592]], { skipSpecialTokens: true }), ["hello, world! it ' s fine.", 'hello'])
  t.throws(() => uncased.decode([101, 30522]), { name: 'RangeError', message: /decode: ids\[1\]: 30522 is not a token id/ })
  t.throws(() => uncased.decode([101, 1.5]), { name: 'TypeError', message: /decode: ids\[1\]: token ids must be integers, got number 1.5/ })
  t.throws(() => uncased.decode('hello' as unknown as number[]), /ids must be an array of token ids/)
})

t.test('savePretrained round trip', async (t) => {
  for (const [name, dir] of Object.entries(dirs)) {
    const tok = AutoTokenizer.fromDirectory(dir)
    const out = join(freshDir(), 'nested', 'tok')
    const written = tok.savePretrained(out)
    t.same(written.map((p) => p.slice(out.length + 1)).sort(), ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt'], `${name}: files`)
    t.equal(readFileSync(join(out, 'vocab.txt'), 'utf8'), vocabTxt, `${name}: vocab.txt`)
    const savedJson = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'))
    const reference = name.startsWith('uncased') ? tokenizerJson : casedJson
    for (const key of ['added_tokens', 'pre_tokenizer', 'post_processor', 'decoder', 'model']) {
      t.same(savedJson[key], reference[key], `${name}: tokenizer.json ${key} as the Rust crate writes it`)
    }
    t.same(savedJson.normalizer, name === 'cased-vocab' ? { ...reference.normalizer, strip_accents: null } : reference.normalizer, `${name}: normalizer`)
    const text = readFileSync(join(out, 'tokenizer.json'), 'utf8')
    t.ok(text.indexOf('"[PAD]": 0') < text.indexOf('"!": 999') && text.indexOf('"!": 999') < text.indexOf('"0": 1014'), `${name}: vocabulary in id order`)
    const config = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8'))
    t.equal(config.model_max_length, 512)
    t.equal(config.do_lower_case, name.startsWith('uncased'))
    t.equal(config.tokenizer_class, 'BertTokenizer')
    const again = AutoTokenizer.fromDirectory(out)
    const want = expected.variants[name.startsWith('uncased') ? 'uncased' : 'cased']
    t.same(mismatches(again, want).indices, [], `${name}: reloaded tokenizer gives the same ids`)
  }
})

t.test('vocab.txt and the tokenizer.json built from it', async (t) => {
  const vocab = readVocabTxt(join(dirs['uncased-vocab'], 'vocab.txt'))
  t.equal(vocab.size, 30522)
  t.equal(vocab.get('[CLS]'), 101)
  const d = writeDir({ 'vocab.txt': '[PAD]\r\n[UNK]\r[CLS]\n[SEP]\n[MASK]\nhello\n__proto__\nconstructor\nhello\n' })
  const small = readVocabTxt(join(d, 'vocab.txt'))
  t.same([...small], [['[PAD]', 0], ['[UNK]', 1], ['[CLS]', 2], ['[SEP]', 3], ['[MASK]', 4], ['hello', 8], ['__proto__', 6], ['constructor', 7]], 'universal newlines; a repeated token keeps its last id')
  const tok = new BertTokenizerFast(bertTokenizerJson(small, {}), {})
  t.same(tok('hello constructor xyz').inputIds, [2, 8, 7, 1, 3])
  t.equal(tok.convertTokensToIds('__proto__'), 6, '"__proto__" is a token like any other')
  const custom = new BertTokenizerFast(bertTokenizerJson(small, { additional_special_tokens: ['<extra>'] }), {})
  t.equal(custom.convertTokensToIds('<extra>'), 9, 'a special token missing from the vocabulary gets the next id')
  t.same(custom('hello <extra>').inputIds, [2, 8, 9, 3])
  t.throws(() => bertTokenizerJson(small, { do_lower_case: 'yes' }), /do_lower_case must be true or false/)
  t.throws(() => readVocabTxt(join(d, 'missing.txt')), /missing\.txt: cannot read the vocabulary/)
})

t.test('the Rust normalizer and pre-tokenizer, where @huggingface/tokenizers differs', async (t) => {
  const lower = { cleanText: true, handleChineseChars: true, stripAccents: null, lowercase: true }
  t.equal(bertNormalize('ΟΔΟΣ ΟΔΟΣ.', lower), 'οδοσ οδοσ.', 'capital sigma lowercased on its own, never final ς')
  t.equal(bertNormalize('x\u{20000}y', lower), 'x \u{20000} y', 'astral CJK ideographs are spaced out')
  t.equal(bertNormalize('x\u{2B820}y', lower), 'x\u{2B820}y', 'U+2B820-U+2B91F are outside Rust\'s CJK ranges')
  t.equal(bertNormalize('a\u0890b\u07fdc', lower), 'a\u0890b\u07fdc', 'characters newer than Rust\'s tables are kept')
  t.equal(bertNormalize('Ça\u0097va\u00a0!', lower), 'cava !', 'accents stripped, C1 control dropped, NBSP to a space')
  t.equal(bertNormalize('Ça\u0097va', { ...lower, lowercase: false }), 'Çava', 'cased keeps accents')
  t.same(bertPreTokenize(' don\'t  stop§now\u2e52x '), ['don', "'", 't', 'stop', '§', 'now\u2e52x'], 'U+2E52 is not punctuation in Rust\'s tables')
})

t.test('bad input', async (t) => {
  t.throws(() => uncased(['ok', 3 as unknown as string]), { name: 'TypeError', message: 'tokenizer: text[1] must be a string, got number 3' })
  t.throws(() => uncased(['ok', null as unknown as string]), /text\[1\] must be a string, got null/)
  t.throws(() => uncased(42 as unknown as string), /text must be a string or an array of strings, got number 42/)
  t.throws(() => uncased(undefined as unknown as string), /got undefined/)
  t.throws(() => uncased(['a', 'b'], { textPair: ['x'] }), /text has 2 entries but textPair has 1/)
  t.throws(() => uncased(['a'], { textPair: [7 as unknown as string] }), /textPair\[0\] must be a string/)
  t.throws(() => uncased(['a'], { textPair: 'x' as unknown as string[] }), /textPair must be an array of strings when text is an array/)
  t.throws(() => uncased('a', { max_length: 8 } as unknown as CallOptions<string>), /unknown option "max_length" \(did you mean maxLength\?\)/)
  t.throws(() => uncased('a', { returnTensors: 'pt' } as unknown as CallOptions<string>), /returnTensors "pt" is not supported/)
  t.throws(() => uncased('a', { maxLength: -1 }), /maxLength must be a non-negative integer, got number -1/)
  t.throws(() => uncased('a', { padding: 'yes' as unknown as boolean }), /padding must be/)
  t.throws(() => uncased('a', { truncation: 'only_third' as unknown as boolean }), /truncation must be/)
  t.throws(() => uncased('a b c d e', { truncation: 'only_second', maxLength: 4 }), /needs a text pair/)
  t.throws(() => uncased.pad([{ inputIds: [1, 2], attentionMask: [1] }]), /features\[0\] has 2 inputIds but 2 tokenTypeIds and 1 attentionMask/)

  const empty = freshDir()
  writeFileSync(join(empty, 'config.json'), '{}')
  t.throws(() => AutoTokenizer.fromDirectory(empty), { message: `AutoTokenizer.fromPretrained: ${empty} has no tokenizer (looked for tokenizer.json, vocab.txt and spm.model)` })
  t.throws(() => AutoTokenizer.fromDirectory(join(root, 'no-such-dir')), /is not a local directory/)
  t.throws(() => AutoTokenizer.fromDirectory('bert-base-cased'), /"bert-base-cased" is not a local directory/)
  // A Hub id with the Hub off limits: a clear error, no network.
  const offline = process.env.HF_HUB_OFFLINE
  process.env.HF_HUB_OFFLINE = '1'
  await t.rejects(AutoTokenizer.fromPretrained('org/not-cached-model', { cacheDir: root }), /not-cached-model/)
  if (offline === undefined) delete process.env.HF_HUB_OFFLINE
  else process.env.HF_HUB_OFFLINE = offline
  t.throws(() => AutoTokenizer.fromDirectory(42 as unknown as string), TypeError)
  const broken = writeDir({ 'tokenizer.json': '{"model": ' })
  t.throws(() => AutoTokenizer.fromDirectory(broken), new RegExp(`${join(broken, 'tokenizer.json').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: cannot read JSON`))
  const noModel = writeDir({ 'tokenizer.json': { version: '1.0' } })
  t.throws(() => AutoTokenizer.fromDirectory(noModel), /tokenizer.json must be an object with a "model"/)
  const roberta = writeDir({ 'vocab.txt': vocabTxt, 'tokenizer_config.json': { tokenizer_class: 'RobertaTokenizer' } })
  t.throws(() => AutoTokenizer.fromDirectory(roberta), /its vocab.txt is for RobertaTokenizer; only BERT's WordPiece/)
  t.equal(new PreTrainedTokenizerFast(tokenizerJson, {}).padTokenId, 0, 'a WordPiece vocabulary with [PAD] gets BERT\'s pad token without a config')
  const withoutPad = { ...tokenizerJson, model: { ...tokenizerJson.model, type: 'WordPiece', vocab: { '[UNK]': 0, a: 1 } }, added_tokens: [] }
  t.throws(() => new PreTrainedTokenizerFast(withoutPad, {})(['a'], { padding: true }), /asked to pad, but the tokenizer has no pad token/)
})
