// A SentencePiece model file (spm.model): a protobuf ModelProto, read by hand
// because only a few fields are needed (sentencepiece_model.proto):
//
//   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
//   SentencePiece   1 piece (string)  2 score (float)  3 type (enum, default NORMAL)
//   TrainerSpec     3 model_type (default UNIGRAM)  35 byte_fallback  40-43 unk/bos/eos/pad_id
//                   45-48 unk/bos/eos/pad_piece
//   NormalizerSpec  1 name  2 precompiled_charsmap  3 add_dummy_prefix  4 remove_extra_whitespaces
//                   5 escape_whitespaces
//
// Absent fields take the proto's defaults; unknown fields are skipped, as
// protobuf does. A file that does not parse gives an error naming the file,
// the byte offset and the field, never a half-read model.
import { readFileSync } from 'node:fs'

/** SentencePiece.Type. */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const

/** TrainerSpec.ModelType. */
export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const

export interface SentencePiece {
  piece: string
  score: number
  type: number
}

export interface TrainerSpec {
  modelType: number
  byteFallback: boolean
  unkId: number
  bosId: number
  eosId: number
  padId: number
  unkPiece: string
  bosPiece: string
  eosPiece: string
  padPiece: string
}

export interface NormalizerSpec {
  name: string
  precompiledCharsmap: Uint8Array
  addDummyPrefix: boolean
  removeExtraWhitespaces: boolean
  escapeWhitespaces: boolean
}

export interface SentencePieceModel {
  pieces: SentencePiece[]
  trainerSpec: TrainerSpec
  normalizerSpec: NormalizerSpec
}

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_BYTES = 2
const WIRE_FIXED32 = 5

/** Reads the fields of one protobuf message, bytes[start, end). */
class MessageReader {
  private pos: number
  private readonly view: DataView

  constructor(private readonly bytes: Uint8Array, start: number, private readonly end: number, private readonly fail: (offset: number, problem: string) => never) {
    this.pos = start
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /** Calls onField for each field; onField reads the value (or returns false to have it skipped). */
  forEachField(onField: (field: number, wireType: number, offset: number) => boolean): void {
    while (this.pos < this.end) {
      const offset = this.pos
      const tag = this.varint('a field tag')
      const field = Math.floor(tag / 8)
      const wireType = tag % 8
      if (field === 0) this.fail(offset, 'field number 0')
      if (!onField(field, wireType, offset)) this.skip(wireType, field, offset)
    }
  }

  /** An unsigned varint (up to 10 bytes), as a number: exact below 2^53, enough for lengths and tags. */
  varint(what: string): number {
    return this.varintParts(what).value
  }

  /** An int32 field: its low 32 bits read as signed, as protobuf does (negative values take 10 bytes). */
  int32(what: string): number {
    return this.varintParts(what).low32 | 0
  }

  private varintParts(what: string): { value: number; low32: number } {
    const start = this.pos
    let value = 0
    let low32 = 0
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(start, `${what}: the varint runs past the end of its message`)
      const byte = this.bytes[this.pos++]
      value += (byte & 0x7f) * 2 ** (7 * i)
      if (i < 5) low32 = (low32 + (byte & 0x7f) * 2 ** (7 * i)) % 2 ** 32
      if ((byte & 0x80) === 0) return { value, low32 }
    }
    return this.fail(start, `${what}: a varint longer than 10 bytes`)
  }

  bool(what: string): boolean {
    return this.varint(what) !== 0
  }

  float(what: string): number {
    if (this.pos + 4 > this.end) this.fail(this.pos, `${what}: the float runs past the end of its message`)
    const value = this.view.getFloat32(this.pos, true)
    this.pos += 4
    return value
  }

  /** A length-delimited field's bounds; the reader moves past it. */
  lengthDelimited(what: string): { start: number; end: number } {
    const at = this.pos
    const length = this.varint(`${what} (length)`)
    const start = this.pos
    if (length > this.end - start) this.fail(at, `${what}: its length ${length} runs past the end of its message (${this.end - start} byte${this.end - start === 1 ? '' : 's'} left)`)
    this.pos = start + length
    return { start, end: start + length }
  }

  string(what: string): string {
    const { start, end } = this.lengthDelimited(what)
    try {
      return UTF8.decode(this.bytes.subarray(start, end))
    } catch {
      return this.fail(start, `${what}: not valid UTF-8`)
    }
  }

  private skip(wireType: number, field: number, offset: number): void {
    const what = `field ${field}`
    if (wireType === WIRE_VARINT) this.varint(what)
    else if (wireType === WIRE_BYTES) this.lengthDelimited(what)
    else if (wireType === WIRE_FIXED32 || wireType === WIRE_FIXED64) {
      const size = wireType === WIRE_FIXED32 ? 4 : 8
      if (this.pos + size > this.end) this.fail(offset, `${what}: runs past the end of its message`)
      this.pos += size
    } else this.fail(offset, `${what} has wire type ${wireType}, which protobuf 3 does not use (groups) or does not define`)
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/** Reads and parses a SentencePiece model file. */
export function readSentencePieceModel(path: string): SentencePieceModel {
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    throw new Error(`${path}: cannot read the SentencePiece model (${(err as Error).message})`)
  }
  return parseSentencePieceModel(bytes, path)
}

/** Parses the bytes of a SentencePiece ModelProto; `file` names it in errors. */
export function parseSentencePieceModel(bytes: Uint8Array, file: string): SentencePieceModel {
  const fail = (context: string) => (offset: number, problem: string): never => {
    throw new Error(`${file}: not a valid SentencePiece model: at byte ${offset}, ${context}: ${problem}`)
  }
  const model: SentencePieceModel = {
    pieces: [],
    trainerSpec: {
      modelType: ModelType.UNIGRAM, byteFallback: false, unkId: 0, bosId: 1, eosId: 2, padId: -1,
      unkPiece: '<unk>', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>',
    },
    normalizerSpec: { name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
  }
  const top = new MessageReader(bytes, 0, bytes.length, fail('ModelProto'))
  const expect = (wireType: number, wanted: number, field: string, offset: number): void => {
    if (wireType !== wanted) fail('ModelProto')(offset, `${field} has wire type ${wireType}, expected ${wanted}`)
  }
  const seen = new Set<string>()
  top.forEachField((field, wireType, offset) => {
    if (field === 1) {
      expect(wireType, WIRE_BYTES, 'pieces', offset)
      const index = model.pieces.length
      const context = `pieces[${index}]`
      const { start, end } = top.lengthDelimited(context)
      const piece: SentencePiece = { piece: '', score: 0, type: PieceType.NORMAL }
      const r = new MessageReader(bytes, start, end, fail(context))
      r.forEachField((f, w, at) => {
        if (f === 1 && w === WIRE_BYTES) piece.piece = r.string('piece')
        else if (f === 2 && w === WIRE_FIXED32) piece.score = r.float('score')
        else if (f === 3 && w === WIRE_VARINT) piece.type = r.int32('type')
        else if (f <= 3) fail(context)(at, `field ${f} has wire type ${w}`)
        else return false
        return true
      })
      if (piece.type < PieceType.NORMAL || piece.type > PieceType.BYTE) fail(context)(start, `unknown piece type ${piece.type}`)
      model.pieces.push(piece)
      return true
    }
    if (field === 2) {
      expect(wireType, WIRE_BYTES, 'trainer_spec', offset)
      const { start, end } = top.lengthDelimited('trainer_spec')
      seen.add('trainer_spec')
      const spec = model.trainerSpec
      const r = new MessageReader(bytes, start, end, fail('trainer_spec'))
      const ints: Record<number, 'modelType' | 'unkId' | 'bosId' | 'eosId' | 'padId'> = { 3: 'modelType', 40: 'unkId', 41: 'bosId', 42: 'eosId', 43: 'padId' }
      const strings: Record<number, 'unkPiece' | 'bosPiece' | 'eosPiece' | 'padPiece'> = { 45: 'unkPiece', 46: 'bosPiece', 47: 'eosPiece', 48: 'padPiece' }
      r.forEachField((f, w, at) => {
        const expected = ints[f] !== undefined || f === 35 ? WIRE_VARINT : strings[f] !== undefined ? WIRE_BYTES : undefined
        if (expected === undefined) return false
        if (w !== expected) fail('trainer_spec')(at, `field ${f} has wire type ${w}, expected ${expected}`)
        if (ints[f] !== undefined) spec[ints[f]] = r.int32(ints[f])
        else if (strings[f] !== undefined) spec[strings[f]] = r.string(strings[f])
        else spec.byteFallback = r.bool('byte_fallback')
        return true
      })
      return true
    }
    if (field === 3) {
      expect(wireType, WIRE_BYTES, 'normalizer_spec', offset)
      const { start, end } = top.lengthDelimited('normalizer_spec')
      seen.add('normalizer_spec')
      const spec = model.normalizerSpec
      const r = new MessageReader(bytes, start, end, fail('normalizer_spec'))
      const bools: Record<number, 'addDummyPrefix' | 'removeExtraWhitespaces' | 'escapeWhitespaces'> = { 3: 'addDummyPrefix', 4: 'removeExtraWhitespaces', 5: 'escapeWhitespaces' }
      r.forEachField((f, w, at) => {
        const expected = bools[f] !== undefined ? WIRE_VARINT : f === 1 || f === 2 ? WIRE_BYTES : undefined
        if (expected === undefined) return false
        if (w !== expected) fail('normalizer_spec')(at, `field ${f} has wire type ${w}, expected ${expected}`)
        if (f === 1) spec.name = r.string('name')
        else if (f === 2) {
          const charsmap = r.lengthDelimited('precompiled_charsmap')
          spec.precompiledCharsmap = bytes.slice(charsmap.start, charsmap.end)
        } else spec[bools[f]] = r.bool(bools[f])
        return true
      })
      return true
    }
    return false
  })
  if (model.pieces.length === 0) throw new Error(`${file}: not a valid SentencePiece model: it has no pieces (${bytes.length} bytes read)`)
  // SentencePiece always writes both specs, after the pieces (protobuf writes fields in number
  // order): a file without them was cut short, which protobuf alone cannot tell.
  for (const spec of ['trainer_spec', 'normalizer_spec']) {
    if (!seen.has(spec)) throw new Error(`${file}: not a valid SentencePiece model: it has no ${spec} (${bytes.length} bytes read; is the file truncated?)`)
  }
  return model
}
