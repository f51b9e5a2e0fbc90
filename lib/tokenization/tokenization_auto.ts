// AutoTokenizer.fromPretrained: the tokenizer files of a model directory, as
// transformers' AutoTokenizer reads them: tokenizer.json when there is one,
// else a WordPiece vocab.txt, else DeBERTa-v2/v3's SentencePiece spm.model;
// tokenizer_config.json for model_max_length, the special tokens and the
// model's options.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { BertTokenizerFast } from './tokenization_bert.js'
import { DebertaV2TokenizerFast } from './tokenization_deberta_v2.js'
import { PreTrainedTokenizerFast, isPlainObject, type TokenizerConfig } from './tokenization_utils_fast.js'
import { snapshotDownload, type DownloadOptions } from '../hub/hub.js'
import { decodeText } from '../data/readers.js'

/** The files AutoTokenizer looks for, in the order it prefers them. */
export const TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt', 'spm.model', 'tokenizer_config.json', 'special_tokens_map.json'] as const

export interface ResolvedFiles {
  /** The local directory the files are in. */
  dir: string
  /** Local path of each requested file that exists. */
  paths: Map<string, string>
}

/** Where the tokenizer files of a local model directory are (Hub ids are fetched by fromPretrained first). */
export function resolveModelFiles(idOrDir: string, files: readonly string[]): ResolvedFiles {
  const dir = resolve(idOrDir)
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(
      `"${idOrDir}" is not a local directory (AutoTokenizer.fromPretrained also takes Hub repo ids)`,
    )
  }
  const paths = new Map<string, string>()
  for (const name of files) {
    const path = join(dir, name)
    if (existsSync(path) && statSync(path).isFile()) paths.set(name, path)
  }
  return { dir, paths }
}

function readJsonObject(path: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(decodeText(readFileSync(path), path))
  } catch (err) {
    throw new Error(`${path}: cannot read JSON (${(err as Error).message})`)
  }
  if (!isPlainObject(value)) throw new Error(`${path}: expected a JSON object`)
  return value
}

/** tokenizer_config.json's classes that are a WordPiece over BERT's normalizer and template. */
const BERT_CLASSES = /^(Bert|DistilBert|Electra|MobileBert|SqueezeBert|LayoutLM)Tokenizer(Fast)?$/

/** tokenizer_config.json's classes for DeBERTa-v2/v3's SentencePiece Unigram (spm.model). */
const DEBERTA_V2_CLASSES = /^DebertaV2Tokenizer(Fast)?$/

export class AutoTokenizer {
  /**
   * A local directory, or a Hub repo id whose tokenizer files are fetched into
   * the shared Hugging Face cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply).
   */
  static async fromPretrained(idOrDir: string, options: DownloadOptions & { revision?: string } = {}): Promise<PreTrainedTokenizerFast> {
    let dir = idOrDir
    if (typeof idOrDir === 'string' && idOrDir !== '' && !(existsSync(idOrDir) && statSync(idOrDir).isDirectory())) {
      dir = await snapshotDownload({ ...options, repoId: idOrDir, allowPatterns: [...TOKENIZER_FILES] })
    }
    return AutoTokenizer.fromDirectory(dir, idOrDir)
  }

  /** Synchronous loading from a local directory. */
  static fromDirectory(idOrDir: string, nameOrPath: string = idOrDir): PreTrainedTokenizerFast {
    void nameOrPath
    if (typeof idOrDir !== 'string' || idOrDir === '') {
      throw new TypeError(`AutoTokenizer.fromPretrained: expected a model directory or Hub id, got ${JSON.stringify(idOrDir)}`)
    }
    let resolved: ResolvedFiles
    try {
      resolved = resolveModelFiles(idOrDir, TOKENIZER_FILES)
    } catch (err) {
      throw new Error(`AutoTokenizer.fromPretrained: ${(err as Error).message}`)
    }
    const { dir, paths } = resolved
    const config: TokenizerConfig = paths.has('tokenizer_config.json') ? readJsonObject(paths.get('tokenizer_config.json')!) : {}
    // Older repositories name their special tokens only in special_tokens_map.json.
    if (paths.has('special_tokens_map.json')) {
      for (const [key, value] of Object.entries(readJsonObject(paths.get('special_tokens_map.json')!))) {
        if (config[key] === undefined) config[key] = value
      }
    }
    const init = { nameOrPath: idOrDir }
    const tokenizerClass = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : undefined
    const tokenizerJsonPath = paths.get('tokenizer.json')
    if (tokenizerJsonPath !== undefined) {
      const json = readJsonObject(tokenizerJsonPath)
      const model = json.model
      const wordPiece = isPlainObject(model) && model.type === 'WordPiece'
      const bert = tokenizerClass === undefined ? wordPiece : BERT_CLASSES.test(tokenizerClass)
      const deberta = tokenizerClass !== undefined && DEBERTA_V2_CLASSES.test(tokenizerClass)
      if (deberta && isPlainObject(model) && model.type !== 'Unigram') {
        throw new Error(`AutoTokenizer.fromPretrained: ${tokenizerJsonPath} holds a ${JSON.stringify(model.type)} model, but tokenizer_config.json names ${tokenizerClass}, a SentencePiece Unigram tokenizer; set tokenizer_class to the tokenizer the model was trained with`)
      }
      try {
        if (deberta) return new DebertaV2TokenizerFast(json, config, init)
        return bert ? new BertTokenizerFast(json, config, init) : new PreTrainedTokenizerFast(json, config, init)
      } catch (err) {
        throw new Error(`AutoTokenizer.fromPretrained: ${tokenizerJsonPath}: ${(err as Error).message}`)
      }
    }
    const vocabPath = paths.get('vocab.txt')
    if (vocabPath !== undefined) {
      if (tokenizerClass !== undefined && !BERT_CLASSES.test(tokenizerClass)) {
        throw new Error(`AutoTokenizer.fromPretrained: ${dir} has no tokenizer.json, and its vocab.txt is for ${tokenizerClass}; only BERT's WordPiece is built from a vocab.txt`)
      }
      return BertTokenizerFast.fromVocabFile(vocabPath, config, init)
    }
    const spmPath = paths.get('spm.model')
    if (spmPath !== undefined) {
      // DeBERTa-v3's Hub repositories name no tokenizer_class (their config.json says deberta-v2).
      if (tokenizerClass !== undefined && !DEBERTA_V2_CLASSES.test(tokenizerClass)) {
        throw new Error(`AutoTokenizer.fromPretrained: ${dir} has no tokenizer.json, and its spm.model is for ${tokenizerClass}; only DeBERTa-v2's tokenizer is built from an spm.model`)
      }
      return DebertaV2TokenizerFast.fromSpmFile(spmPath, config, init)
    }
    throw new Error(`AutoTokenizer.fromPretrained: ${dir} has no tokenizer (looked for tokenizer.json, vocab.txt and spm.model${paths.has('tokenizer_config.json') ? '; found only tokenizer_config.json' : ''})`)
  }
}
