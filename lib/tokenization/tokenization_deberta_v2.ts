// DebertaV2TokenizerFast: DeBERTa-v2/v3's SentencePiece Unigram tokenizer.
// A directory with only spm.model (the DeBERTa-v3 repositories on the Hub
// ship no tokenizer.json) gets the tokenizer.json that transformers 5's
// DebertaV2Tokenizer builds from it, then runs through the same code as any
// tokenizer.json.
//
// transformers 5 keeps only the pieces and their scores from spm.model (and
// trainer_spec.unk_id, and which pieces are control or user-defined): the
// normalizer is its own (Replace \s{2,}|[\n\r\t] by " ", NFC, strip right,
// lowercase first when do_lower_case), not the model's precompiled charsmap,
// and byte_fallback is off whatever the model says. So does this.
import { PieceType, ModelType, readSentencePieceModel, type SentencePieceModel } from './sentencepiece_model.js'
import { PreTrainedTokenizerFast, isPlainObject, type TokenizerConfig, type TokenizerInit, type TokenizerJson } from './tokenization_utils_fast.js'
import { rustUnigramPipeline } from './unigram_pipeline.js'

/** DebertaV2Tokenizer's special tokens when tokenizer_config.json does not name them. */
const DEFAULT_SPECIAL_TOKENS = {
  bos_token: '[CLS]', eos_token: '[SEP]', unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]',
} as const
type SpecialTokenKey = keyof typeof DEFAULT_SPECIAL_TOKENS

/** tokenizer_config.json settings that would change the tokens and that are not modelled here. */
const REFUSED_OPTIONS: Record<string, (value: unknown) => boolean> = {
  split_special_tokens: (v) => v === true,
  add_bos_token: (v) => v === true,
  add_eos_token: (v) => v === true,
}

interface AddedTokenJson {
  id: number
  content: string
  single_word: boolean
  lstrip: boolean
  rstrip: boolean
  normalized: boolean
  special: boolean
}

export class DebertaV2TokenizerFast extends PreTrainedTokenizerFast {
  /** From spm.model and tokenizer_config.json's fields, as transformers 5's DebertaV2Tokenizer builds it. */
  static fromSpmFile(path: string, config: TokenizerConfig = {}, init: TokenizerInit = {}): DebertaV2TokenizerFast {
    const built = debertaV2TokenizerJson(readSentencePieceModel(path), config, path)
    return new DebertaV2TokenizerFast(built.tokenizerJson, built.config, init)
  }

  constructor(tokenizerJson: TokenizerJson, config: TokenizerConfig = {}, init: TokenizerInit = {}) {
    super(tokenizerJson, config, init)
    // Text to tokens as the Rust crate does it, where the JavaScript library differs (see unigram_pipeline.ts).
    const pipeline = rustUnigramPipeline(tokenizerJson)
    if (pipeline !== null) this.backend.tokenize = pipeline as typeof this.backend.tokenize
  }

  get doLowerCase(): boolean {
    return this.config.do_lower_case === true
  }

  /**
   * As transformers' all_special_ids: the special added tokens and the extra
   * special tokens, which for a SentencePiece model include its user-defined
   * pieces (added as not special, so decode keeps them).
   */
  override get allSpecialIds(): number[] {
    const ids = new Set(super.allSpecialIds)
    const extra = this.config.extra_special_tokens
    if (Array.isArray(extra)) {
      for (const token of extra) {
        const content = typeof token === 'string' ? token : isPlainObject(token) ? token.content : undefined
        const id = typeof content === 'string' ? this.getVocab().get(content) : undefined
        if (id !== undefined) ids.add(id)
      }
    }
    return [...ids].sort((a, b) => a - b)
  }
}

/**
 * The tokenizer.json that transformers 5's DebertaV2Tokenizer builds from a
 * SentencePiece model (what its save_pretrained writes), and the
 * tokenizer_config.json fields it resolves. `file` names the model in errors.
 */
export function debertaV2TokenizerJson(model: SentencePieceModel, config: TokenizerConfig, file: string): { tokenizerJson: TokenizerJson; config: TokenizerConfig } {
  const where = `${file} (with its tokenizer_config.json)`
  if (model.trainerSpec.modelType !== ModelType.UNIGRAM) {
    const name = Object.entries(ModelType).find(([, v]) => v === model.trainerSpec.modelType)?.[0] ?? String(model.trainerSpec.modelType)
    throw new Error(`${file}: the SentencePiece model is a ${name} model; DeBERTa-v2's tokenizer is a Unigram (model_type UNIGRAM)`)
  }
  for (const [key, refused] of Object.entries(REFUSED_OPTIONS)) {
    if (refused(config[key])) throw new Error(`${where}: ${key}: ${JSON.stringify(config[key])} is not supported for DeBERTa-v2's tokenizer`)
  }
  const doLowerCase = booleanOption(config, 'do_lower_case', false, where)
  const splitByPunct = booleanOption(config, 'split_by_punct', false, where)
  const addPrefixSpace = booleanOption(config, 'add_prefix_space', true, where)
  const specials = {} as Record<SpecialTokenKey, string>
  for (const key of Object.keys(DEFAULT_SPECIAL_TOKENS) as SpecialTokenKey[]) {
    specials[key] = specialTokenOption(config[key], key, DEFAULT_SPECIAL_TOKENS[key], where)
  }

  const vocab: Array<[string, number]> = model.pieces.map((p) => [p.piece, p.score])
  // DebertaV2Tokenizer: the id of (unk_token, 0.0) in the vocabulary, else the model's unk_id.
  const unkIndex = model.pieces.findIndex((p) => p.piece === specials.unk_token && p.score === 0)
  const unkId = unkIndex >= 0 ? unkIndex : model.trainerSpec.unkId
  if (unkId < 0 || unkId >= vocab.length) {
    throw new Error(`${file}: the unknown piece ${JSON.stringify(specials.unk_token)} is not in the vocabulary and trainer_spec.unk_id ${unkId} is outside its ${vocab.length} pieces`)
  }

  // Added tokens, in the order transformers adds them: tokenizer_config.json's
  // added_tokens_decoder, the named special tokens, then the model's control
  // (special) and user-defined (not special) pieces. A token already in the
  // vocabulary keeps its id; a new one gets the next id after it.
  const pieceIds = new Map<string, number>()
  model.pieces.forEach((p, id) => { if (!pieceIds.has(p.piece)) pieceIds.set(p.piece, id) })
  const added = new Map<string, AddedTokenJson>()
  const addToken = (content: string, special: boolean, declaredId?: number) => {
    if (content === '' || added.has(content)) return
    const id = pieceIds.get(content) ?? vocab.length + [...added.values()].filter((t) => t.id >= vocab.length).length
    if (declaredId !== undefined && declaredId !== id) {
      throw new Error(`${where}: added_tokens_decoder gives ${JSON.stringify(content)} id ${declaredId}, but the vocabulary gives it id ${id}`)
    }
    added.set(content, { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special })
  }
  for (const [id, token] of addedTokensDecoder(config.added_tokens_decoder, where)) addToken(token.content, token.special, id)
  for (const key of Object.keys(DEFAULT_SPECIAL_TOKENS) as SpecialTokenKey[]) addToken(specials[key], true)
  const controlOrUserDefined = model.pieces.filter((p) => p.type === PieceType.CONTROL || p.type === PieceType.USER_DEFINED)
  for (const p of controlOrUserDefined) addToken(p.piece, p.type === PieceType.CONTROL)
  checkExtraSpecialTokens(config, new Set(controlOrUserDefined.map((p) => p.piece)), where)

  const tokenId = (content: string) => added.get(content)!.id
  const prependScheme = addPrefixSpace ? 'always' : 'first'
  const tokenizerJson: TokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...added.values()].sort((a, b) => a.id - b.id),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        ...(doLowerCase ? [{ type: 'Lowercase' }] : []),
        { type: 'Replace', pattern: { Regex: '\\s{2,}|[\\n\\r\\t]' }, content: ' ' },
        { type: 'NFC' },
        { type: 'Strip', strip_left: false, strip_right: true },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        ...(splitByPunct ? [{ type: 'Punctuation', behavior: 'Isolated' }] : []),
        { type: 'Metaspace', replacement: '\u2581', prepend_scheme: prependScheme, split: true },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special(specials.cls_token, 0), sequence('A', 0), special(specials.sep_token, 0)],
      pair: [special(specials.cls_token, 0), sequence('A', 0), special(specials.sep_token, 0), sequence('B', 1), special(specials.sep_token, 1)],
      special_tokens: {
        [specials.cls_token]: { id: specials.cls_token, ids: [tokenId(specials.cls_token)], tokens: [specials.cls_token] },
        [specials.sep_token]: { id: specials.sep_token, ids: [tokenId(specials.sep_token)], tokens: [specials.sep_token] },
      },
    },
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: prependScheme, split: true },
    model: { type: 'Unigram', unk_id: unkId, vocab, byte_fallback: false },
  }

  const resolved: TokenizerConfig = {
    ...config,
    add_prefix_space: addPrefixSpace,
    do_lower_case: doLowerCase,
    split_by_punct: splitByPunct,
    ...specials,
    tokenizer_class: 'DebertaV2Tokenizer',
    unk_id: unkId,
    // transformers' name for the model's control and user-defined pieces (its additional_special_tokens).
    extra_special_tokens: controlOrUserDefined.map((p) => p.piece),
  }
  delete resolved.added_tokens_decoder
  delete resolved.additional_special_tokens
  return { tokenizerJson, config: resolved }
}

function special(id: string, typeId: number) {
  return { SpecialToken: { id, type_id: typeId } }
}

function sequence(id: 'A' | 'B', typeId: number) {
  return { Sequence: { id, type_id: typeId } }
}

function booleanOption(config: TokenizerConfig, key: string, fallback: boolean, where: string): boolean {
  const value = config[key]
  if (value === undefined || value === null) return fallback
  if (typeof value !== 'boolean') throw new TypeError(`${where}: ${key} must be true or false, got ${JSON.stringify(value)}`)
  return value
}

/** A special token: a string, or an AddedToken object whose options are the defaults (the only ones modelled). */
function specialTokenOption(value: unknown, key: string, fallback: string, where: string): string {
  if (value === undefined || value === null) return fallback
  if (typeof value === 'string' && value !== '') return value
  if (isPlainObject(value) && typeof value.content === 'string' && value.content !== '') {
    for (const option of ['lstrip', 'rstrip', 'single_word', 'normalized'] as const) {
      if (value[option] === true) throw new Error(`${where}: ${key} ${JSON.stringify(value.content)} has ${option}: true, which is not supported for DeBERTa-v2's tokenizer`)
    }
    return value.content
  }
  throw new TypeError(`${where}: ${key} must be a token string, got ${JSON.stringify(value)}`)
}

/** tokenizer_config.json's added_tokens_decoder ({"id": {content, special, ...}}), by id. */
function addedTokensDecoder(value: unknown, where: string): Array<[number, { content: string; special: boolean }]> {
  if (value === undefined || value === null) return []
  if (!isPlainObject(value)) throw new TypeError(`${where}: added_tokens_decoder must be an object of id -> token`)
  const out: Array<[number, { content: string; special: boolean }]> = []
  for (const [key, token] of Object.entries(value)) {
    const id = Number(key)
    if (!Number.isInteger(id) || id < 0 || !isPlainObject(token) || typeof token.content !== 'string') {
      throw new TypeError(`${where}: added_tokens_decoder["${key}"] must map an id to {content, ...}`)
    }
    for (const option of ['lstrip', 'rstrip', 'single_word', 'normalized'] as const) {
      if (token[option] === true) throw new Error(`${where}: added_tokens_decoder["${key}"] (${JSON.stringify(token.content)}) has ${option}: true, which is not supported for DeBERTa-v2's tokenizer`)
    }
    out.push([id, { content: token.content, special: token.special !== false }])
  }
  return out.sort((a, b) => a[0] - b[0])
}

/**
 * transformers replaces additional_special_tokens with the model's control
 * and user-defined pieces; other extra special tokens are not modelled.
 */
function checkExtraSpecialTokens(config: TokenizerConfig, pieces: Set<string>, where: string): void {
  for (const key of ['additional_special_tokens', 'extra_special_tokens']) {
    const value = config[key]
    if (value === undefined || value === null) continue
    const list = Array.isArray(value) ? value : isPlainObject(value) ? Object.keys(value) : [value]
    for (const token of list) {
      const content = typeof token === 'string' ? token : isPlainObject(token) ? token.content : token
      if (typeof content !== 'string' || !pieces.has(content)) {
        throw new Error(`${where}: ${key} ${JSON.stringify(content)} is not a control or user-defined piece of the SentencePiece model; extra special tokens are not supported for DeBERTa-v2's tokenizer`)
      }
    }
  }
}
