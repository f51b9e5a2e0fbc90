// DeBERTa-v3's tokenizer built from spm.model alone (the Hub layout: no
// tokenizer.json), against what transformers' AutoTokenizer gives from the
// same files (test/fixtures/deberta_v2_spm, written by
// test/fixtures/generators/make_deberta_tokenizer_fixture.py): the tokenizer.json it builds,
// ids, tokens, pairs, truncation, padding and decoding, for the Hub's
// tokenizer_config.json and for do_lower_case, split_by_punct and
// add_prefix_space: false; then malformed model files and refused options.
import t from 'tap'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AutoTokenizer,
  DebertaV2TokenizerFast,
  debertaV2TokenizerJson,
  parseSentencePieceModel,
  readSentencePieceModel,
  type PreTrainedTokenizerFast,
  type TruncationStrategy,
} from '../../lib/tokenization/index.js'

const FIXTURE = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'deberta_v2_spm')
const SPM = join(FIXTURE, 'spm.model')

interface Variant {
  tokenizer_config: Record<string, unknown>
  vocab_size: number
  len: number
  special_ids: Record<string, number>
  all_special_ids: number[]
  model_max_length: number | null
  tokenizer_json: Record<string, unknown> & { model: Record<string, unknown> }
  vocab_head: Array<[string, number]>
  vocab_length: number
  saved_config: Record<string, unknown>
  input_ids: number[][]
  pair_input_ids: number[][]
  pair_token_type_ids: number[][]
  tokens?: string[][]
  decoded?: string[]
  decoded_skip_special?: string[]
  truncated?: Array<{ text: string; text_pair: string | null; truncation: TruncationStrategy; max_length: number; input_ids: number[]; token_type_ids: number[] }>
  padded?: Array<{ texts: string[]; options: { padding: true | 'max_length'; max_length?: number; truncation?: boolean; pad_to_multiple_of?: number }; input_ids: number[][]; attention_mask: number[][]; token_type_ids: number[][] }>
}
interface Expected {
  made_by: string
  texts: string[]
  pairs: Array<[string, string]>
  variants: Record<string, Variant>
}

const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as Expected
const work = mkdtempSync(join(tmpdir(), 'bertkit-deberta-spm-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
t.comment(`expected from ${expected.made_by}`)

/** A directory with the fixture's spm.model and the variant's tokenizer_config.json. */
function variantDir(name: string, config: Record<string, unknown>): string {
  const dir = join(work, name)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir)
  copyFileSync(SPM, join(dir, 'spm.model'))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config))
  return dir
}

function differences<T>(got: T[], want: T[], label: (i: number) => string): string[] {
  const out: string[] = []
  for (let i = 0; i < want.length; i++) {
    if (JSON.stringify(got[i]) !== JSON.stringify(want[i])) out.push(`${label(i)}\n  got  ${JSON.stringify(got[i])}\n  want ${JSON.stringify(want[i])}`)
  }
  return out
}

t.test('the SentencePiece model is read as protobuf reads it', async (t) => {
  const model = readSentencePieceModel(SPM)
  const hub = expected.variants.hub
  t.equal(model.pieces.length, hub.vocab_length)
  t.same(model.pieces.slice(0, hub.vocab_head.length).map((p) => [p.piece, p.score]), hub.vocab_head)
  t.same(model.pieces.slice(0, 5).map((p) => p.type), [3, 3, 3, 2, 4], '[PAD] [CLS] [SEP] are control pieces, [UNK] unknown, <br> user-defined')
  t.match(model.trainerSpec, { modelType: 1, unkId: 3, bosId: 1, eosId: 2, padId: 0, unkPiece: '[UNK]', byteFallback: false })
  t.equal(model.normalizerSpec.name, 'user_defined')
  t.ok(model.normalizerSpec.precompiledCharsmap.length > 0, 'the charsmap of the fixture\'s own rules is read (and then left unused, as transformers 5 does)')
})

for (const [name, want] of Object.entries(expected.variants)) {
  t.test(`${name} (${JSON.stringify(want.tokenizer_config)}): the tokenizer transformers builds from spm.model`, async (t) => {
    const dir = variantDir(name, want.tokenizer_config)
    const tok = AutoTokenizer.fromDirectory(dir)
    t.ok(tok instanceof DebertaV2TokenizerFast)

    // The tokenizer.json transformers' save_pretrained writes, field by field (the vocabulary checked apart).
    const built = debertaV2TokenizerJson(readSentencePieceModel(join(dir, 'spm.model')), want.tokenizer_config, 'spm.model')
    const { vocab, ...model } = built.tokenizerJson.model as Record<string, unknown>
    t.same({ ...built.tokenizerJson, model }, want.tokenizer_json)
    t.equal((vocab as unknown[]).length, want.vocab_length)
    t.same((vocab as unknown[]).slice(0, want.vocab_head.length), want.vocab_head)
    for (const [key, value] of Object.entries(want.saved_config)) {
      t.same(built.config[key], value, `tokenizer_config ${key}`)
    }

    t.equal(tok.vocabSize, want.vocab_size)
    t.equal(tok.getVocab().size, want.len)
    t.same(
      { cls_token: tok.clsTokenId, sep_token: tok.sepTokenId, pad_token: tok.padTokenId, unk_token: tok.unkTokenId, mask_token: tok.maskTokenId, bos_token: tok.bosTokenId, eos_token: tok.eosTokenId },
      want.special_ids,
    )
    t.same(tok.allSpecialIds, want.all_special_ids)
    t.equal(Number.isFinite(tok.modelMaxLength) ? tok.modelMaxLength : null, want.model_max_length)

    const texts = expected.texts
    const ids = texts.map((text) => tok(text).inputIds)
    const bad = differences(ids, want.input_ids, (i) => `#${i} ${JSON.stringify(texts[i])}`)
    t.same(bad, [], `ids of ${texts.length - bad.length}/${texts.length} texts match`)
    const batch = tok(texts)
    t.same(batch.inputIds, want.input_ids, 'the same as a batch')
    t.ok(batch.attentionMask.every((row, i) => row.length === want.input_ids[i].length && row.every((m) => m === 1)))

    // One call a pair, as the fixture made them (transformers reads an empty pair of a single text as none).
    const pairs = expected.pairs.map(([a, b]) => tok(a, { textPair: b }))
    t.same(differences(pairs.map((p) => p.inputIds), want.pair_input_ids, (i) => `pair #${i}`), [], 'pairs: [CLS] a [SEP] b [SEP]')
    t.same(pairs.map((p) => p.tokenTypeIds), want.pair_token_type_ids, 'pair token type ids')

    if (want.tokens) {
      const tokens = texts.map((text) => tok.tokenize(text))
      t.same(differences(tokens, want.tokens, (i) => `#${i} ${JSON.stringify(texts[i])}`), [], 'tokens')
    }
    if (want.decoded && want.decoded_skip_special) {
      const decoded = want.input_ids.map((row) => tok.decode(row))
      t.same(differences(decoded, want.decoded, (i) => `#${i} ${JSON.stringify(texts[i])}`), [], 'decode')
      const skipped = want.input_ids.map((row) => tok.decode(row, { skipSpecialTokens: true }))
      t.same(differences(skipped, want.decoded_skip_special, (i) => `#${i} ${JSON.stringify(texts[i])}`), [], 'decode, skipping special tokens')
    }
    for (const c of want.truncated ?? []) {
      const got = tok(c.text, { textPair: c.text_pair ?? undefined, truncation: c.truncation, maxLength: c.max_length })
      t.same([got.inputIds, got.tokenTypeIds], [c.input_ids, c.token_type_ids], `truncation ${c.truncation} to ${c.max_length}${c.text_pair === null ? '' : ', a pair'}`)
    }
    for (const c of want.padded ?? []) {
      const o = c.options
      const got = tok(c.texts, { padding: o.padding, maxLength: o.max_length, truncation: o.truncation, padToMultipleOf: o.pad_to_multiple_of })
      t.same([got.inputIds, got.attentionMask, got.tokenTypeIds], [c.input_ids, c.attention_mask, c.token_type_ids], `padding ${JSON.stringify(o)}`)
    }

    // Saved, it loads back through tokenizer.json with the same ids.
    const saved = join(work, `${name}-saved`)
    tok.savePretrained(saved)
    const again = AutoTokenizer.fromDirectory(saved)
    t.ok(again instanceof DebertaV2TokenizerFast, 'tokenizer_class DebertaV2Tokenizer loads as DebertaV2TokenizerFast')
    t.same(again(texts).inputIds, want.input_ids, 'the saved tokenizer gives the same ids')
  })
}

t.test('spm.model beside tokenizer.json: tokenizer.json wins, as in transformers', async (t) => {
  const dir = variantDir('both', { do_lower_case: false })
  const tok: PreTrainedTokenizerFast = AutoTokenizer.fromDirectory(dir)
  tok.savePretrained(dir)
  // A spm.model that does not parse shows which file is read.
  writeFileSync(join(dir, 'spm.model'), 'not read')
  t.same(AutoTokenizer.fromDirectory(dir)(expected.texts).inputIds, expected.variants.hub.input_ids)
})

// ---- malformed files and refused options -----------------------------------

t.test('a truncated spm.model is an error naming the file and the byte, or parses to the same model', async (t) => {
  const bytes = readFileSync(SPM)
  const whole = parseSentencePieceModel(bytes, 'spm.model')
  let errors = 0
  for (let length = 0; length < bytes.length; length++) {
    // Every byte near the ends, every 7th in between (each parse reads the whole file).
    if (length > 2000 && length < bytes.length - 2000 && length % 7 !== 0) continue
    try {
      const model = parseSentencePieceModel(bytes.subarray(0, length), 'spm.model')
      // Protobuf cannot see a cut between two fields; only trailing fields this does not read may be lost.
      t.same(model, whole, `cut at ${length} of ${bytes.length} bytes parses to the same model`)
    } catch (err) {
      errors++
      if (!/^spm\.model: not a valid SentencePiece model: (at byte \d+, |it has no )/.test((err as Error).message)) {
        t.fail(`cut at ${length}: unexpected error ${(err as Error).message}`)
        break
      }
    }
  }
  t.ok(errors > 0)
  t.throws(() => parseSentencePieceModel(bytes.subarray(0, 100), '/x/spm.model'), { message: /^\/x\/spm\.model: not a valid SentencePiece model: at byte \d+, ModelProto: pieces\[\d+\]: its length \d+ runs past the end of its message/ })
})

t.test('malformed bytes: a clear error naming the field', async (t) => {
  const piece = (text: string) => [0x0a, text.length + 2, 0x0a, text.length, ...Buffer.from(text)]
  const parse = (bytes: number[]) => parseSentencePieceModel(Uint8Array.from(bytes), 'bad.model')
  t.throws(() => parse([]), { message: 'bad.model: not a valid SentencePiece model: it has no pieces (0 bytes read)' })
  t.throws(() => parse([0x0b, 0x00]), { message: 'bad.model: not a valid SentencePiece model: at byte 0, ModelProto: pieces has wire type 3, expected 2' })
  t.throws(() => parse([0x0a, 0x05, 0x0a, 0x01]), { message: 'bad.model: not a valid SentencePiece model: at byte 1, ModelProto: pieces[0]: its length 5 runs past the end of its message (2 bytes left)' })
  t.throws(() => parse([0x0a, 0x03, 0x0a, 0x01, 0xff]), { message: 'bad.model: not a valid SentencePiece model: at byte 4, pieces[0]: piece: not valid UTF-8' })
  t.throws(() => parse([0x0a, 0x04, 0x15, 0x00, 0x00, 0x80]), { message: 'bad.model: not a valid SentencePiece model: at byte 3, pieces[0]: score: the float runs past the end of its message' })
  t.throws(() => parse([...piece('a'), 0x0a, 0x02, 0x18, 0x09]), { message: 'bad.model: not a valid SentencePiece model: at byte 7, pieces[1]: unknown piece type 9' })
  t.throws(() => parse([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), { message: 'bad.model: not a valid SentencePiece model: at byte 0, ModelProto: a field tag: a varint longer than 10 bytes' })
  t.throws(() => parse([...piece('a'), 0x12, 0x02, 0x18]), { message: 'bad.model: not a valid SentencePiece model: at byte 6, ModelProto: trainer_spec: its length 2 runs past the end of its message (1 byte left)' })
  // Unknown fields are skipped; negative int32s take 10 bytes.
  const ok = parse([...piece('a'), 0x12, 14, 0xd8, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x2a, 0x00, 0x1a, 0x00, 0x7a, 0x00])
  t.equal(ok.trainerSpec.padId, -1)
  t.equal(ok.trainerSpec.unkId, 0)
  t.equal(ok.pieces[0].piece, 'a')
  t.throws(() => parse([...piece('a'), 0x12, 0x00]), { message: 'bad.model: not a valid SentencePiece model: it has no normalizer_spec (7 bytes read; is the file truncated?)' })
  // A BPE model is refused by name.
  const bpe = parse([...piece('a'), 0x12, 0x02, 0x18, 0x02, 0x1a, 0x00])
  t.throws(() => debertaV2TokenizerJson(bpe, {}, 'bpe.model'), { message: 'bpe.model: the SentencePiece model is a BPE model; DeBERTa-v2\'s tokenizer is a Unigram (model_type UNIGRAM)' })
  // Not a protobuf at all.
  const dir = variantDir('garbage', {})
  writeFileSync(join(dir, 'spm.model'), 'this is not a protobuf\n')
  t.throws(() => AutoTokenizer.fromDirectory(dir), { message: new RegExp(`^${join(dir, 'spm.model').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a valid SentencePiece model: at byte`) })
})

t.test('options transformers would honour and this does not model are refused by name', async (t) => {
  for (const [key, value] of [['split_special_tokens', true], ['add_bos_token', true], ['add_eos_token', true]] as const) {
    const dir = variantDir(`refuse-${key}`, { [key]: value })
    t.throws(() => AutoTokenizer.fromDirectory(dir), { message: new RegExp(`${key}: true is not supported for DeBERTa-v2's tokenizer`) })
  }
  t.throws(() => AutoTokenizer.fromDirectory(variantDir('refuse-mask', { mask_token: { content: '[MASK]', lstrip: true } })), { message: /mask_token "\[MASK\]" has lstrip: true, which is not supported/ })
  t.throws(() => AutoTokenizer.fromDirectory(variantDir('refuse-extra', { additional_special_tokens: ['<new>'] })), { message: /additional_special_tokens "<new>" is not a control or user-defined piece/ })
  t.throws(() => AutoTokenizer.fromDirectory(variantDir('refuse-bool', { do_lower_case: 'yes' })), { message: /do_lower_case must be true or false, got "yes"/ })
  t.throws(() => AutoTokenizer.fromDirectory(variantDir('refuse-class', { tokenizer_class: 'AlbertTokenizer' })), { message: /its spm\.model is for AlbertTokenizer; only DeBERTa-v2's tokenizer is built from an spm\.model/ })
  // What the v3 checkpoints' tokenizer_config.json says is accepted, with the class named or not.
  t.ok(AutoTokenizer.fromDirectory(variantDir('named', { tokenizer_class: 'DebertaV2Tokenizer', do_lower_case: false })) instanceof DebertaV2TokenizerFast)
  // added_tokens_decoder (what a slow tokenizer's save_pretrained wrote) must agree with the ids transformers gives.
  const decoder = { 600: { content: '[MASK]', special: true, lstrip: false, rstrip: false, normalized: false, single_word: false } }
  t.equal(AutoTokenizer.fromDirectory(variantDir('decoder-ok', { added_tokens_decoder: decoder })).maskTokenId, 600)
  t.throws(() => AutoTokenizer.fromDirectory(variantDir('decoder-bad', { added_tokens_decoder: { 700: decoder[600] } })), { message: /added_tokens_decoder gives "\[MASK\]" id 700, but the vocabulary gives it id 600/ })
})
