// BertTokenizerFast: WordPiece with BERT's normalizer, pre-tokenizer and
// [CLS] A [SEP] (B [SEP]) template. A directory with only a vocab.txt gets the
// tokenizer.json that transformers' BertTokenizer builds from it, then runs
// through the same code as any tokenizer.json.
import { readFileSync } from 'node:fs'
import { decodeText } from '../data/readers.js'
import { PreTrainedTokenizerFast, isPlainObject, type TokenizerConfig, type TokenizerInit, type TokenizerJson } from './tokenization_utils_fast.js'

/** tokenizer_config.json fields BertTokenizer reads, with its defaults. */
export interface BertTokenizerOptions {
  do_lower_case?: boolean
  tokenize_chinese_chars?: boolean
  /** null: strip accents when lowercasing (BERT's original behaviour). */
  strip_accents?: boolean | null
  unk_token?: string
  sep_token?: string
  pad_token?: string
  cls_token?: string
  mask_token?: string
  additional_special_tokens?: string[]
}

export class BertTokenizerFast extends PreTrainedTokenizerFast {
  /** From a vocab.txt (one token a line, line number = id) and tokenizer_config.json's fields. */
  static fromVocabFile(path: string, config: TokenizerConfig = {}, init: TokenizerInit = {}): BertTokenizerFast {
    const vocab = readVocabTxt(path)
    // transformers would append the missing ones as added tokens, with ids past the vocabulary (and so
    // past the model's embedding table), and its WordPiece then fails on the first unknown word
    // ("Missing [UNK] token from the vocabulary"). Refused here, where the cause is plain.
    const missing = (['unk_token', 'cls_token', 'sep_token', 'pad_token'] as const)
      .map((key) => [key, tokenOption(config, key, BERT_DEFAULTS[key])] as const)
      .filter(([, token]) => !vocab.has(token))
    if (missing.length > 0) {
      throw new Error(`${path}: the vocabulary has no ${missing.map(([key, token]) => `${token} (${key})`).join(', ')}, which BertTokenizer needs; ` +
        'add them to vocab.txt, or name the tokens this vocabulary uses in tokenizer_config.json (e.g. "unk_token": "<unk>")')
    }
    return new BertTokenizerFast(bertTokenizerJson(vocab, config), config, init)
  }

  constructor(tokenizerJson: TokenizerJson, config: TokenizerConfig = {}, init: TokenizerInit = {}) {
    checkWordPieceModel(tokenizerJson, config)
    super(tokenizerJson, config, init)
  }

  /** Whether text is lowercased (and, unless strip_accents says otherwise, stripped of accents). */
  get doLowerCase(): boolean {
    const n = this.tokenizerJson.normalizer
    return isPlainObject(n) && n.type === 'BertNormalizer' && n.lowercase !== false
  }
}

const BERT_DEFAULTS = { unk_token: '[UNK]', cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]' } as const

/**
 * BertTokenizer is a WordPiece: a tokenizer.json with another model (BPE,
 * Unigram, WordLevel) named BertTokenizer in tokenizer_config.json is a
 * contradiction, which transformers resolves differently by version (4 runs the
 * file's model; 5 rebuilds a WordPiece from its vocabulary and drops the
 * merges). Refused, naming both; so is a WordPiece whose unk_token is not in
 * its vocabulary (the Rust crate fails on the first unknown word).
 */
function checkWordPieceModel(tokenizerJson: TokenizerJson, config: TokenizerConfig): void {
  const model = isPlainObject(tokenizerJson) ? tokenizerJson.model : undefined
  if (!isPlainObject(model)) return // the base class reports a tokenizer.json without a model
  const named = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'BertTokenizer'
  if (model.type !== 'WordPiece') {
    throw new Error(`tokenizer.json holds a ${JSON.stringify(model.type)} model, but tokenizer_config.json names ${named}, a WordPiece tokenizer; ` +
      'transformers 4 and 5 disagree on what that means (4 runs the file\'s model, 5 rebuilds a WordPiece from its vocabulary), so bertkit refuses it: ' +
      'set tokenizer_class to the tokenizer the model was trained with (e.g. "PreTrainedTokenizerFast" to run tokenizer.json as it is)')
  }
  const vocab = model.vocab
  const unk = typeof model.unk_token === 'string' ? model.unk_token : '[UNK]'
  if (isPlainObject(vocab) && !Object.prototype.hasOwnProperty.call(vocab, unk)) {
    throw new Error(`tokenizer.json's WordPiece vocabulary has no ${JSON.stringify(unk)} (its unk_token); the Rust tokenizers fail on the first unknown word ("Missing ${unk} token from the vocabulary"): add it to model.vocab`)
  }
}

/**
 * The vocabulary of a vocab.txt as transformers' load_vocab reads it: lines
 * split on \n, \r\n or \r (Python's universal newlines), id = line number; a
 * token listed twice keeps its last id.
 */
export function readVocabTxt(path: string): Map<string, number> {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (err) {
    throw new Error(`${path}: cannot read the vocabulary (${(err as Error).message})`)
  }
  // Strict, as Python's open(encoding="utf-8"): a Latin-1 vocab.txt would otherwise give tokens with U+FFFD.
  const text = decodeText(bytes, path)
  const lines = text.split(/\r\n|\r|\n/)
  if (lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) throw new Error(`${path}: the vocabulary is empty`)
  const vocab = new Map<string, number>()
  lines.forEach((token, id) => vocab.set(token, id))
  return vocab
}

function option<T>(config: TokenizerConfig, key: string, fallback: T, check: (v: unknown) => boolean, expected: string): T {
  const value = config[key]
  if (value === undefined) return fallback
  if (!check(value)) throw new TypeError(`tokenizer_config.json: ${key} must be ${expected}, got ${JSON.stringify(value)}`)
  return value as T
}

function tokenOption(config: TokenizerConfig, key: string, fallback: string): string {
  const value = config[key]
  if (value === undefined || value === null) return fallback
  if (typeof value === 'string') return value
  if (isPlainObject(value) && typeof value.content === 'string') return value.content
  throw new TypeError(`tokenizer_config.json: ${key} must be a string, got ${JSON.stringify(value)}`)
}

/**
 * The tokenizer.json of transformers' BertTokenizer (BertTokenizerFast in
 * transformers 4) for this vocabulary and config: BertNormalizer, BertPreTokenizer,
 * WordPiece ("##", 100 characters a word at most), the [CLS]/[SEP] template with
 * token types 0 then 1, the WordPiece decoder, special tokens as added tokens.
 */
export function bertTokenizerJson(vocab: Map<string, number>, config: TokenizerConfig = {}): TokenizerJson {
  const isBool = (v: unknown) => typeof v === 'boolean'
  const lowercase = option(config, 'do_lower_case', true, isBool, 'true or false')
  const chinese = option(config, 'tokenize_chinese_chars', true, isBool, 'true or false')
  const strip = option<boolean | null>(config, 'strip_accents', null, (v) => v === null || isBool(v), 'true, false or null')
  const unk = tokenOption(config, 'unk_token', '[UNK]')
  const sep = tokenOption(config, 'sep_token', '[SEP]')
  const pad = tokenOption(config, 'pad_token', '[PAD]')
  const cls = tokenOption(config, 'cls_token', '[CLS]')
  const mask = tokenOption(config, 'mask_token', '[MASK]')
  const extra = option<unknown[]>(config, 'additional_special_tokens', [], Array.isArray, 'a list of tokens').map((t, i) => {
    if (typeof t === 'string') return t
    if (isPlainObject(t) && typeof t.content === 'string') return t.content
    throw new TypeError(`tokenizer_config.json: additional_special_tokens[${i}] must be a string, got ${JSON.stringify(t)}`)
  })

  // A null-prototype object: "__proto__" or "constructor" are tokens like any other.
  const vocabObject: Record<string, number> = Object.create(null)
  let size = 0
  for (const [token, id] of vocab) {
    vocabObject[token] = id
    size = Math.max(size, id + 1)
  }
  // Special tokens missing from the vocabulary get the next ids, as added tokens do in the Rust crate.
  const added = new Map<string, number>()
  for (const token of [unk, sep, pad, cls, mask, ...extra]) {
    if (added.has(token)) continue
    added.set(token, vocab.get(token) ?? size++)
  }
  const addedTokens = [...added].sort((x, y) => x[1] - y[1]).map(([content, id]) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }))
  const special = (token: string, typeId: number) => ({ SpecialToken: { id: token, type_id: typeId } })
  const sequence = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } })
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: chinese, strip_accents: strip, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special(cls, 0), sequence('A', 0), special(sep, 0)],
      pair: [special(cls, 0), sequence('A', 0), special(sep, 0), sequence('B', 1), special(sep, 1)],
      special_tokens: {
        [cls]: { id: cls, ids: [added.get(cls)!], tokens: [cls] },
        [sep]: { id: sep, ids: [added.get(sep)!], tokens: [sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: vocabObject },
  }
}
