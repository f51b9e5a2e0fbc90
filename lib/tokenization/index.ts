// Tokenizers with transformers' names and call shape.
export { AutoTokenizer, resolveModelFiles, TOKENIZER_FILES, type ResolvedFiles } from './tokenization_auto.js'
export { BertTokenizerFast, bertTokenizerJson, readVocabTxt, type BertTokenizerOptions } from './tokenization_bert.js'
export { DebertaV2TokenizerFast, debertaV2TokenizerJson } from './tokenization_deberta_v2.js'
export { parseSentencePieceModel, readSentencePieceModel, type SentencePieceModel } from './sentencepiece_model.js'
export {
  PreTrainedTokenizerFast,
  truncateTokens,
  type BatchEncoding,
  type CallOptions,
  type DecodeOptions,
  type EncodeOptions,
  type Encoding,
  type PadOptions,
  type PaddingStrategy,
  type Side,
  type TokenizerConfig,
  type TokenizerJson,
  type TruncationStrategy,
} from './tokenization_utils_fast.js'
