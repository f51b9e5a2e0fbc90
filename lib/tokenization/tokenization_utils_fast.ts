// PreTrainedTokenizerFast: a tokenizer.json run by @huggingface/tokenizers,
// called the way transformers' tokenizers are called:
//
//   const enc = tokenizer(texts, { truncation: true, padding: true })
//   enc.inputIds, enc.attentionMask, enc.tokenTypeIds
//
// @huggingface/tokenizers turns text into tokens; truncation, special tokens,
// padding and the option handling are done here, following the Rust crate and
// transformers (same strategies, same defaults, same edge cases), because the
// JavaScript package has none of them.
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Tokenizer } from '@huggingface/tokenizers'
import { atomicWriteFile } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { bertNormalize, bertPreTokenize } from './bert_normalizer.js'

export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second' | 'do_not_truncate'
export type PaddingStrategy = 'longest' | 'max_length' | 'do_not_pad'
export type Side = 'right' | 'left'

export interface EncodeOptions {
  /** Add [CLS]/[SEP] (or whatever the post-processor adds). Default true. */
  addSpecialTokens?: boolean
  /**
   * true is 'longest_first': drop tokens from the longer sequence of a pair
   * until it fits maxLength (special tokens included). Left out while
   * maxLength is given and padding is off, it is 'longest_first' too, as in
   * transformers.
   */
  truncation?: boolean | TruncationStrategy
  /** Default: modelMaxLength (used when truncation or 'max_length' padding needs a length). */
  maxLength?: number
  /** true is 'longest' (the longest row of the batch). Default: no padding. */
  padding?: boolean | PaddingStrategy
  /** Round the padded length up to a multiple of this. */
  padToMultipleOf?: number
  /** Only plain arrays are returned; false/null are accepted for ported code. */
  returnTensors?: false | null
}

export interface CallOptions<P> extends EncodeOptions {
  /** The second text of each pair (token type id 1). */
  textPair?: P
}

/** One text (or pair): plain arrays, as transformers returns for a single string. */
export interface Encoding {
  inputIds: number[]
  tokenTypeIds: number[]
  attentionMask: number[]
}

/** A batch: one row per text. Rows differ in length unless padded. */
export interface BatchEncoding {
  inputIds: number[][]
  tokenTypeIds: number[][]
  attentionMask: number[][]
}

export interface PadOptions {
  /** Default true ('longest'). */
  padding?: boolean | PaddingStrategy
  maxLength?: number
  padToMultipleOf?: number
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean
  /** Default: tokenizer_config.json's clean_up_tokenization_spaces, else false (transformers 5). */
  cleanUpTokenizationSpaces?: boolean
}

/** What transformers calls "no limit": model_max_length above this is treated as unset. */
const LARGE_INTEGER = 1e20

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const
type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number]

/** The special tokens BertTokenizer assumes when tokenizer_config.json does not name them. */
const BERT_SPECIAL_TOKENS: Partial<Record<SpecialTokenKey, string>> = {
  unk_token: '[UNK]', sep_token: '[SEP]', pad_token: '[PAD]', cls_token: '[CLS]', mask_token: '[MASK]',
}

const CALL_OPTION_KEYS = new Set(['textPair', 'addSpecialTokens', 'truncation', 'maxLength', 'padding', 'padToMultipleOf', 'returnTensors'])

export type TokenizerJson = Record<string, unknown>
export type TokenizerConfig = Record<string, unknown>

export interface TokenizerInit {
  /** Where it was loaded from, for messages and inspection. */
  nameOrPath?: string
}

interface Row {
  ids: number[]
  typeIds: number[]
}

interface Resolved {
  addSpecialTokens: boolean
  truncation: Exclude<TruncationStrategy, 'do_not_truncate'> | null
  padding: Exclude<PaddingStrategy, 'do_not_pad'> | null
  maxLength: number | undefined
  padToMultipleOf: number | undefined
}

/** A class whose instances are functions, so that a tokenizer is called as in Python. */
abstract class CallableObject<A extends unknown[], R> {
  constructor() {
    const fn = (...args: A): R => (fn as unknown as CallableObject<A, R>).invoke(...args)
    return Object.setPrototypeOf(fn, new.target.prototype) as CallableObject<A, R>
  }

  protected abstract invoke(...args: A): R
}

export interface PreTrainedTokenizerFast {
  /** One text (and optionally its pair): flat arrays, as transformers does for a single string. */
  (text: string, options?: CallOptions<string>): Encoding
  /** A batch: one row per text (textPair, when given, must have one entry per text). */
  (text: string[], options?: CallOptions<string[]>): BatchEncoding
}

export class PreTrainedTokenizerFast extends CallableObject<[unknown, CallOptions<unknown>?], Encoding | BatchEncoding> {
  /** Longest input the model takes (tokenizer_config.json's model_max_length); Infinity when it sets none. */
  modelMaxLength: number
  paddingSide: Side
  truncationSide: Side
  readonly nameOrPath: string
  protected readonly backend: Tokenizer
  protected readonly tokenizerJson: TokenizerJson
  protected readonly config: TokenizerConfig
  private readonly specialTokenStrings: Partial<Record<SpecialTokenKey, string>>
  private readonly padTokenTypeId: number
  private readonly cleanUpTokenizationSpaces: boolean
  private readonly unkId: number | undefined
  /** Rust's RobertaProcessing gives every token type 0, pairs included; the JavaScript one gives the pair type 1. */
  private readonly typeIdsAllZero: boolean
  private readonly warned = new Set<string>()

  constructor(tokenizerJson: TokenizerJson, config: TokenizerConfig = {}, init: TokenizerInit = {}) {
    super()
    if (!isPlainObject(tokenizerJson) || !isPlainObject(tokenizerJson.model)) {
      throw new TypeError('PreTrainedTokenizerFast: tokenizer.json must be an object with a "model"')
    }
    if (!isPlainObject(config)) throw new TypeError('PreTrainedTokenizerFast: the tokenizer config must be an object')
    this.nameOrPath = init.nameOrPath ?? (typeof config.name_or_path === 'string' ? config.name_or_path : '')
    this.tokenizerJson = tokenizerJson
    this.config = config
    // The JavaScript Tokenizer insists on these keys; a tokenizer.json may leave out the null ones.
    const complete: TokenizerJson = { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...tokenizerJson }
    try {
      this.backend = new Tokenizer(complete, config)
    } catch (err) {
      throw new Error(`${this.where()}: cannot build the tokenizer from tokenizer.json (${(err as Error).message})`)
    }
    useRustBertStages(this.backend, complete)
    this.typeIdsAllZero = isPlainObject(complete.post_processor) && complete.post_processor.type === 'RobertaProcessing'

    const specials: Partial<Record<SpecialTokenKey, string>> = {}
    const bertLike = (tokenizerJson.model as { type?: unknown }).type === 'WordPiece'
    for (const key of SPECIAL_TOKEN_KEYS) {
      const value = tokenContent(config[key])
      if (value !== undefined) specials[key] = value
      else if (bertLike && BERT_SPECIAL_TOKENS[key] !== undefined && this.backend.token_to_id(BERT_SPECIAL_TOKENS[key]) !== undefined) {
        specials[key] = BERT_SPECIAL_TOKENS[key]
      }
    }
    this.specialTokenStrings = specials
    this.unkId = specials.unk_token === undefined ? undefined : this.backend.token_to_id(specials.unk_token)

    const maxLength = config.model_max_length
    this.modelMaxLength = typeof maxLength === 'number' && Number.isFinite(maxLength) && maxLength > 0 && maxLength <= LARGE_INTEGER ? maxLength : Infinity
    this.paddingSide = sideOf(config.padding_side, 'padding_side', this.where())
    this.truncationSide = sideOf(config.truncation_side, 'truncation_side', this.where())
    this.padTokenTypeId = typeof config.pad_token_type_id === 'number' ? config.pad_token_type_id : 0
    this.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces === true
  }

  // ---- special tokens and vocabulary ----------------------------------------

  get unkToken(): string | null { return this.specialTokenStrings.unk_token ?? null }
  get sepToken(): string | null { return this.specialTokenStrings.sep_token ?? null }
  get padToken(): string | null { return this.specialTokenStrings.pad_token ?? null }
  get clsToken(): string | null { return this.specialTokenStrings.cls_token ?? null }
  get maskToken(): string | null { return this.specialTokenStrings.mask_token ?? null }
  get bosToken(): string | null { return this.specialTokenStrings.bos_token ?? null }
  get eosToken(): string | null { return this.specialTokenStrings.eos_token ?? null }
  get unkTokenId(): number | null { return this.idOf(this.unkToken) }
  get sepTokenId(): number | null { return this.idOf(this.sepToken) }
  get padTokenId(): number | null { return this.idOf(this.padToken) }
  get clsTokenId(): number | null { return this.idOf(this.clsToken) }
  get maskTokenId(): number | null { return this.idOf(this.maskToken) }
  get bosTokenId(): number | null { return this.idOf(this.bosToken) }
  get eosTokenId(): number | null { return this.idOf(this.eosToken) }

  /** Ids of the special added tokens ([CLS], [SEP], [PAD], ...). */
  get allSpecialIds(): number[] {
    return [...this.backend.get_added_tokens_decoder().values()].filter((t) => t.special).map((t) => t.id).sort((a, b) => a - b)
  }

  /** Size of the model's vocabulary, without added tokens (transformers' vocab_size). */
  get vocabSize(): number {
    const vocab = (this.tokenizerJson.model as { vocab?: unknown }).vocab
    if (Array.isArray(vocab)) return vocab.length
    return isPlainObject(vocab) ? Object.keys(vocab).length : this.backend.get_vocab(false).size
  }

  /** Token to id, added tokens included. */
  getVocab(): Map<string, number> {
    return this.backend.get_vocab(true)
  }

  /** Unknown tokens give unkTokenId, as in transformers. */
  convertTokensToIds(tokens: string): number
  convertTokensToIds(tokens: string[]): number[]
  convertTokensToIds(tokens: string | string[]): number | number[] {
    const one = (t: unknown, where: string): number => {
      if (typeof t !== 'string') throw new TypeError(`${where}: expected a string, got ${describe(t)}`)
      const id = this.backend.token_to_id(t) ?? this.unkId
      if (id === undefined) throw new Error(`${this.where()}.convertTokensToIds: "${t}" is not in the vocabulary and there is no unknown token`)
      return id
    }
    if (Array.isArray(tokens)) return tokens.map((t, i) => one(t, `convertTokensToIds: tokens[${i}]`))
    return one(tokens, 'convertTokensToIds')
  }

  convertIdsToTokens(ids: number): string
  convertIdsToTokens(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string[]
  convertIdsToTokens(ids: number | ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string | string[] {
    if (typeof ids === 'number') return this.backend.id_to_token(this.checkId(ids, 'convertIdsToTokens'))!
    const special = new Set(options.skipSpecialTokens ? this.allSpecialIds : [])
    const out: string[] = []
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i], `convertIdsToTokens: ids[${i}]`)
      if (!special.has(id)) out.push(this.backend.id_to_token(id)!)
    }
    return out
  }

  /** How many tokens the post-processor adds to one text (pair = false) or a pair. */
  numSpecialTokensToAdd(pair = false): number {
    return this.postProcess([], pair ? [] : null, true).ids.length
  }

  // ---- encoding ---------------------------------------------------------------

  /** Tokens of one text (or pair), without special tokens unless asked. */
  tokenize(text: string, options: { textPair?: string; addSpecialTokens?: boolean } = {}): string[] {
    checkText(text, 'tokenize: text')
    if (options.textPair !== undefined) checkText(options.textPair, 'tokenize: textPair')
    const a = this.backend.tokenize(text)
    const b = options.textPair ? this.backend.tokenize(options.textPair) : null
    if (!options.addSpecialTokens) return b ? [...a, ...b] : a
    const pp = this.backend.post_processor
    return pp ? pp(a, b, true).tokens : b ? [...a, ...b] : a
  }

  /** The ids of one text (or pair): tokenizer(text, options).inputIds. */
  encode(text: string, options: CallOptions<string> = {}): number[] {
    checkText(text, 'encode: text')
    return (this.invoke(text, options) as Encoding).inputIds
  }

  protected invoke(text: unknown, options: CallOptions<unknown> = {}): Encoding | BatchEncoding {
    const o = this.resolveOptions(options)
    if (typeof text === 'string') {
      const pair = options.textPair
      if (pair !== undefined && pair !== null && typeof pair !== 'string') {
        throw new TypeError(`tokenizer: textPair must be a string when text is one, got ${describe(pair)}`)
      }
      // transformers treats an empty pair of a single text as no pair (but not in a batch).
      const row = this.encodeRow(text, pair ? pair : null, o)
      const [padded] = this.padRows([row], o)
      return { inputIds: padded.ids, tokenTypeIds: padded.typeIds, attentionMask: padded.mask }
    }
    if (!Array.isArray(text)) {
      throw new TypeError(`tokenizer: text must be a string or an array of strings, got ${describe(text)}`)
    }
    text.forEach((t, i) => checkText(t, `tokenizer: text[${i}]`))
    let pairs: string[] | null = null
    if (options.textPair !== undefined && options.textPair !== null) {
      if (!Array.isArray(options.textPair)) {
        throw new TypeError(`tokenizer: textPair must be an array of strings when text is an array, got ${describe(options.textPair)}`)
      }
      if (options.textPair.length !== text.length) {
        throw new RangeError(`tokenizer: text has ${text.length} entries but textPair has ${options.textPair.length}`)
      }
      options.textPair.forEach((t, i) => checkText(t, `tokenizer: textPair[${i}]`))
      pairs = options.textPair as string[]
    }
    const rows = (text as string[]).map((t, i) => this.encodeRow(t, pairs ? pairs[i] : null, o))
    const padded = this.padRows(rows, o)
    return {
      inputIds: padded.map((r) => r.ids),
      tokenTypeIds: padded.map((r) => r.typeIds),
      attentionMask: padded.map((r) => r.mask),
    }
  }

  /**
   * Pads already-encoded rows (what DataCollatorWithPadding does with
   * tokenizer.pad in transformers): missing tokenTypeIds / attentionMask are
   * taken as 0s / 1s. Other fields of the rows are not carried over.
   */
  pad(features: Array<{ inputIds: ArrayLike<number>; tokenTypeIds?: ArrayLike<number>; attentionMask?: ArrayLike<number> }>, options: PadOptions = {}): BatchEncoding {
    if (!Array.isArray(features)) throw new TypeError(`pad: features must be an array of rows, got ${describe(features)}`)
    const o = this.resolveOptions({ padding: options.padding ?? true, maxLength: options.maxLength, padToMultipleOf: options.padToMultipleOf }, 'pad')
    const rows = features.map((f, i) => {
      if (!isPlainObject(f) || f.inputIds === undefined) throw new TypeError(`pad: features[${i}] has no inputIds`)
      const ids = Array.from(f.inputIds)
      const typeIds = f.tokenTypeIds === undefined ? new Array<number>(ids.length).fill(0) : Array.from(f.tokenTypeIds)
      const mask = f.attentionMask === undefined ? new Array<number>(ids.length).fill(1) : Array.from(f.attentionMask)
      if (typeIds.length !== ids.length || mask.length !== ids.length) {
        throw new RangeError(`pad: features[${i}] has ${ids.length} inputIds but ${typeIds.length} tokenTypeIds and ${mask.length} attentionMask values`)
      }
      return { ids, typeIds, mask }
    })
    const padded = this.padRows(rows, o)
    return { inputIds: padded.map((r) => r.ids), tokenTypeIds: padded.map((r) => r.typeIds), attentionMask: padded.map((r) => r.mask) }
  }

  // ---- decoding ---------------------------------------------------------------

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new TypeError(`decode: ids must be an array of token ids, got ${describe(ids)}`)
    }
    const list: number[] = []
    for (let i = 0; i < ids.length; i++) list.push(this.checkId(ids[i], `decode: ids[${i}]`))
    if (list.length === 0) return ''
    return this.backend.decode(list, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces,
    })
  }

  batchDecode(sequences: ArrayLike<number>[], options: DecodeOptions = {}): string[] {
    if (!Array.isArray(sequences)) throw new TypeError(`batchDecode: sequences must be an array, got ${describe(sequences)}`)
    return sequences.map((s) => this.decode(s, options))
  }

  // ---- saving -----------------------------------------------------------------

  /**
   * Writes tokenizer.json and tokenizer_config.json (and vocab.txt for a
   * WordPiece vocabulary, which older tools read), each file atomically.
   * Returns the paths written.
   */
  savePretrained(dir: string): string[] {
    if (typeof dir !== 'string' || dir === '') throw new TypeError(`savePretrained: dir must be a non-empty string, got ${describe(dir)}`)
    makeDirs(dir, 'tokenizer directory')
    const written: string[] = []
    const write = (name: string, text: string) => {
      const path = join(dir, name)
      atomicWriteFile(path, text)
      written.push(path)
    }
    write('tokenizer.json', stringifyTokenizerJson(this.tokenizerJson))
    write('tokenizer_config.json', JSON.stringify(this.configToSave(), null, 2) + '\n')
    const vocabTxt = this.vocabTxt()
    if (vocabTxt !== null) write('vocab.txt', vocabTxt)
    return written
  }

  protected configToSave(): TokenizerConfig {
    const config: TokenizerConfig = { ...this.config }
    // Infinity has no JSON spelling; transformers reads a missing value as "no limit".
    if (Number.isFinite(this.modelMaxLength)) config.model_max_length = this.modelMaxLength
    else delete config.model_max_length
    config.padding_side = this.paddingSide
    config.truncation_side = this.truncationSide
    for (const [key, value] of Object.entries(this.specialTokenStrings)) if (config[key] === undefined) config[key] = value
    if (config.tokenizer_class === undefined) {
      config.tokenizer_class = (this.tokenizerJson.model as { type?: unknown }).type === 'WordPiece' ? 'BertTokenizer' : 'PreTrainedTokenizerFast'
    }
    return config
  }

  /** The vocabulary one token a line in id order, when the model is a WordPiece with ids 0..n-1. */
  protected vocabTxt(): string | null {
    const model = this.tokenizerJson.model as { type?: unknown; vocab?: unknown }
    if (model.type !== 'WordPiece' || !isPlainObject(model.vocab)) return null
    const tokens: string[] = []
    for (const [token, id] of Object.entries(model.vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || tokens[id] !== undefined) return null
      tokens[id] = token
    }
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined || /[\r\n]/.test(tokens[i])) return null
    return tokens.map((t) => t + '\n').join('')
  }

  [inspect.custom](): string {
    const max = Number.isFinite(this.modelMaxLength) ? this.modelMaxLength : 'none'
    return `${this.constructor.name}(nameOrPath: ${JSON.stringify(this.nameOrPath)}, vocabSize: ${this.vocabSize}, modelMaxLength: ${max}, paddingSide: ${this.paddingSide})`
  }

  // ---- internals --------------------------------------------------------------

  protected where(): string {
    return this.nameOrPath ? `tokenizer ${this.nameOrPath}` : 'tokenizer'
  }

  private idOf(token: string | null): number | null {
    return token === null ? null : this.backend.token_to_id(token) ?? null
  }

  private checkId(id: unknown, where: string): number {
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new TypeError(`${where}: token ids must be integers, got ${describe(id)}`)
    if (id < 0 || this.backend.id_to_token(id) === undefined) throw new RangeError(`${where}: ${id} is not a token id of this tokenizer`)
    return id
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return
    this.warned.add(message)
    process.emitWarning(message, { code: 'BERTKIT_TOKENIZER' })
  }

  /** transformers' _get_padding_truncation_strategies, with its checks. */
  private resolveOptions(options: CallOptions<unknown>, where = 'tokenizer'): Resolved {
    if (!isPlainObject(options)) throw new TypeError(`${where}: options must be an object, got ${describe(options)}`)
    for (const key of Object.keys(options)) {
      if (CALL_OPTION_KEYS.has(key)) continue
      const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      const hint = camel !== key && CALL_OPTION_KEYS.has(camel) ? ` (did you mean ${camel}?)` : ''
      throw new TypeError(`${where}: unknown option "${key}"${hint}`)
    }
    if (options.returnTensors !== undefined && options.returnTensors !== null && options.returnTensors !== false) {
      throw new TypeError(`${where}: returnTensors ${JSON.stringify(options.returnTensors)} is not supported: the tokenizer returns plain arrays`)
    }
    // Checked as unknown: callers porting Python code pass whatever they had there.
    const rawMax: unknown = options.maxLength
    const rawMultiple: unknown = options.padToMultipleOf
    if (rawMax !== undefined && rawMax !== null && (typeof rawMax !== 'number' || !Number.isInteger(rawMax) || rawMax < 0)) {
      throw new RangeError(`${where}: maxLength must be a non-negative integer, got ${describe(rawMax)}`)
    }
    if (rawMultiple !== undefined && rawMultiple !== null && (typeof rawMultiple !== 'number' || !Number.isInteger(rawMultiple) || rawMultiple < 1)) {
      throw new RangeError(`${where}: padToMultipleOf must be a positive integer, got ${describe(rawMultiple)}`)
    }
    const maxLength = (rawMax ?? undefined) as number | undefined
    const padToMultipleOf = (rawMultiple ?? undefined) as number | undefined
    if (options.addSpecialTokens !== undefined && typeof options.addSpecialTokens !== 'boolean') {
      throw new TypeError(`${where}: addSpecialTokens must be a boolean, got ${describe(options.addSpecialTokens)}`)
    }

    let padding: Resolved['padding']
    const p = options.padding
    if (p === undefined || p === null || p === false || p === 'do_not_pad') padding = null
    else if (p === true || p === 'longest') padding = 'longest'
    else if (p === 'max_length') padding = 'max_length'
    else throw new TypeError(`${where}: padding must be true, false, "longest", "max_length" or "do_not_pad", got ${describe(p)}`)

    let truncation: Resolved['truncation']
    const t = options.truncation
    if (t === undefined || t === null) truncation = maxLength !== undefined && padding === null ? 'longest_first' : null
    else if (t === false || t === 'do_not_truncate') truncation = null
    else if (t === true || t === 'longest_first') truncation = 'longest_first'
    else if (t === 'only_first' || t === 'only_second') truncation = t
    else throw new TypeError(`${where}: truncation must be true, false, "longest_first", "only_first", "only_second" or "do_not_truncate", got ${describe(t)}`)

    let length = maxLength
    if (length === undefined) {
      if (padding === 'max_length') {
        if (Number.isFinite(this.modelMaxLength)) length = this.modelMaxLength
        else {
          this.warnOnce(`${this.where()}: padding "max_length" without maxLength, and the tokenizer has no model_max_length: not padding (as transformers)`)
          padding = null
        }
      }
      if (truncation !== null) {
        if (Number.isFinite(this.modelMaxLength)) length = this.modelMaxLength
        else {
          this.warnOnce(`${this.where()}: truncation without maxLength, and the tokenizer has no model_max_length: not truncating (as transformers)`)
          truncation = null
        }
      }
    }
    if (padding !== null && this.padTokenId === null) {
      throw new Error(`${where}: asked to pad, but the tokenizer has no pad token (set pad_token in tokenizer_config.json)`)
    }
    if (truncation !== null && padding !== null && padToMultipleOf && length !== undefined && length % padToMultipleOf !== 0) {
      throw new RangeError(`${where}: truncation and padding are both on, but the truncation length (${length}) is not a multiple of padToMultipleOf (${padToMultipleOf})`)
    }
    return { addSpecialTokens: options.addSpecialTokens ?? true, truncation, padding, maxLength: length, padToMultipleOf }
  }

  private encodeRow(text: string, pair: string | null, o: Resolved): Row {
    let a = this.backend.tokenize(text)
    let b = pair === null ? null : this.backend.tokenize(pair)
    if (o.truncation !== null && o.maxLength !== undefined) {
      const added = o.addSpecialTokens ? this.postProcess([], b === null ? null : [], true).ids.length : 0
      if (o.maxLength < added) {
        // The Rust tokenizer then truncates nothing at all; so do we, but say so.
        this.warnOnce(`${this.where()}: maxLength ${o.maxLength} is below the ${added} special tokens added to each ${b === null ? 'text' : 'pair'}: not truncating (as Hugging Face tokenizers)`)
      } else {
        ;[a, b] = truncateTokens(a, b, o.maxLength - added, o.truncation, this.truncationSide)
      }
    }
    return this.postProcess(a, b, o.addSpecialTokens)
  }

  private postProcess(a: string[], b: string[] | null, addSpecialTokens: boolean): Row {
    const pp = this.backend.post_processor
    let tokens: string[]
    let typeIds: number[] | undefined
    if (pp) {
      const out = pp(a, b, addSpecialTokens)
      tokens = out.tokens
      typeIds = out.token_type_ids
    } else {
      tokens = b === null ? a : [...a, ...b]
    }
    // Without a post-processor (or one that sets none) the second sequence has type 1, as in Rust.
    typeIds ??= [...new Array<number>(a.length).fill(0), ...new Array<number>(b?.length ?? 0).fill(1)]
    if (this.typeIdsAllZero) typeIds = new Array<number>(tokens.length).fill(0)
    const ids = tokens.map((t) => {
      const id = this.backend.token_to_id(t) ?? this.unkId
      if (id === undefined) throw new Error(`${this.where()}: token "${t}" has no id and there is no unknown token`)
      return id
    })
    return { ids, typeIds }
  }

  private padRows(rows: Array<Row & { mask?: number[] }>, o: Resolved): Array<Row & { mask: number[] }> {
    const withMask = rows.map((r) => ({ ids: r.ids, typeIds: r.typeIds, mask: r.mask ?? new Array<number>(r.ids.length).fill(1) }))
    if (o.padding === null) return withMask
    // A loop, not Math.max(...lengths): a batch of a few hundred thousand rows would overflow the stack.
    let target = 0
    if (o.padding === 'max_length') target = o.maxLength!
    else for (const r of withMask) target = Math.max(target, r.ids.length)
    if (o.padToMultipleOf && target % o.padToMultipleOf !== 0) target += o.padToMultipleOf - (target % o.padToMultipleOf)
    const padId = this.padTokenId!
    return withMask.map((r) => {
      const n = target - r.ids.length
      if (n <= 0) return r
      const fill = (v: number) => new Array<number>(n).fill(v)
      return this.paddingSide === 'right'
        ? { ids: [...r.ids, ...fill(padId)], typeIds: [...r.typeIds, ...fill(this.padTokenTypeId)], mask: [...r.mask, ...fill(0)] }
        : { ids: [...fill(padId), ...r.ids], typeIds: [...fill(this.padTokenTypeId), ...r.typeIds], mask: [...fill(0), ...r.mask] }
    })
  }
}

/**
 * truncate_encodings of the Rust tokenizers, on the tokens of each sequence
 * (special tokens already taken off maxLength). Throws where Rust does.
 */
export function truncateTokens(
  a: string[],
  b: string[] | null,
  maxLength: number,
  strategy: 'longest_first' | 'only_first' | 'only_second',
  side: Side = 'right',
): [string[], string[] | null] {
  const keep = (x: string[], n: number) => (side === 'right' ? x.slice(0, n) : x.slice(x.length - n))
  if (maxLength === 0) return [keep(a, 0), b === null ? null : keep(b, 0)]
  const total = a.length + (b?.length ?? 0)
  if (total <= maxLength) return [a, b]
  const toRemove = total - maxLength
  if (strategy === 'longest_first') {
    if (b === null) return [keep(a, a.length - toRemove), null]
    // The shorter sequence keeps what it can; when both are too long they share maxLength evenly.
    const swap = a.length > b.length
    let n1 = swap ? b.length : a.length
    let n2: number
    if (n1 > maxLength) n2 = n1
    else n2 = Math.max(n1, maxLength - n1)
    if (n1 + n2 > maxLength) {
      n1 = Math.floor(maxLength / 2)
      n2 = n1 + (maxLength % 2)
    }
    if (swap) [n1, n2] = [n2, n1]
    return [keep(a, n1), keep(b, n2)]
  }
  const first = strategy === 'only_first'
  const target = first ? a : b
  if (target === null) throw new Error('truncation "only_second" needs a text pair; this text has none')
  if (target.length <= toRemove) {
    throw new RangeError(
      `truncation "${strategy}": the ${first ? 'first' : 'second'} sequence has ${target.length} tokens, ` +
      `too few to remove the ${toRemove} needed to fit maxLength (use "longest_first", or a larger maxLength)`,
    )
  }
  const cut = keep(target, target.length - toRemove)
  return first ? [cut, b] : [a, cut]
}

/** Swap in the Rust-faithful BERT normalizer and pre-tokenizer (see bert_normalizer.ts) where tokenizer.json uses them. */
function useRustBertStages(backend: Tokenizer, json: TokenizerJson): void {
  const n = json.normalizer
  if (isPlainObject(n) && n.type === 'BertNormalizer') {
    const options = {
      cleanText: n.clean_text !== false,
      handleChineseChars: n.handle_chinese_chars !== false,
      stripAccents: typeof n.strip_accents === 'boolean' ? n.strip_accents : null,
      lowercase: n.lowercase !== false,
    }
    backend.normalizer = ((text: string) => bertNormalize(text, options)) as unknown as Tokenizer['normalizer']
  }
  const p = json.pre_tokenizer
  if (isPlainObject(p) && p.type === 'BertPreTokenizer') {
    backend.pre_tokenizer = ((text: string | string[]) =>
      typeof text === 'string' ? bertPreTokenize(text) : text.flatMap(bertPreTokenize)) as unknown as Tokenizer['pre_tokenizer']
  }
}

/**
 * JSON.stringify would put integer-like tokens ("0", "1", ...) first in the
 * vocabulary; tokenizer.json lists it in id order, as the Rust crate writes it.
 */
export function stringifyTokenizerJson(json: TokenizerJson): string {
  const model = json.model as Record<string, unknown>
  const vocab = model.vocab
  if (!isPlainObject(vocab)) return JSON.stringify(json, null, 2) + '\n'
  const marker = `@@bertkit-vocab-${Math.random().toString(36).slice(2)}@@`
  const text = JSON.stringify({ ...json, model: { ...model, vocab: marker } }, null, 2)
  const entries = Object.entries(vocab).sort((x, y) => Number(x[1]) - Number(y[1]))
  const body = entries.length === 0 ? '{}' : `{\n${entries.map(([k, v]) => `      ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n')}\n    }`
  return text.replace(JSON.stringify(marker), () => body) + '\n'
}

function checkText(value: unknown, where: string): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${where} must be a string, got ${describe(value)}`)
}

function sideOf(value: unknown, key: string, where: string): Side {
  if (value === undefined || value === null) return 'right'
  if (value === 'right' || value === 'left') return value
  throw new TypeError(`${where}: ${key} must be "right" or "left", got ${describe(value)}`)
}

/** A special token from tokenizer_config.json: a string, or an AddedToken object {content, ...}. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (isPlainObject(value) && typeof value.content === 'string') return value.content
  return undefined
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`
  return typeof value
}
