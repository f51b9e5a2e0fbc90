// Row-sparse gradients of embedding tables. A batch reaches a few hundred
// rows of a 30k-row word embedding; the rest of its gradient is exactly zero.
// Instead of zero-filling the whole [vocab, dim] gradient, the embedding's
// backward marks the rows it writes (Storage.rowMarks) and leaves the others
// unwritten. Code that knows the representation (the gradient norm, AdamW,
// a second backward into the same gradient) reads the marked rows only; any
// other access through `buffer` first zeroes the unmarked rows, so it sees
// exactly the dense gradient.
import { native, DTYPE_CODE } from '../native.js'
import { deviceCode } from './device.js'
import { Storage, type RowMarks } from './storage.js'
import type { Tensor } from './tensor.js'

/** Tables smaller than this keep dense gradients (the marks would save nothing worth a native call). */
let minRowSparseNumel = 1 << 16

/** @internal Tests: the smallest table whose gradient becomes row-sparse; returns the previous value. */
export function setRowSparseMinNumel(n: number): number {
  const previous = minRowSparseNumel
  minRowSparseNumel = n
  return previous
}

/** BERTKIT_LAZY_ROWS=0 turns row-sparse gradients (and with them AdamW's deferred rows) off: the dense reference. */
export function rowSparseEnabled(): boolean {
  return process.env.BERTKIT_LAZY_ROWS !== '0'
}

/** The marks of a row-sparse gradient, or null when t is dense. */
export function rowMarksOf(t: Tensor): RowMarks | null {
  return t.rawStorage.rowMarks
}

/** Whether a fresh gradient of a [rows, width] table should be row-sparse. */
export function wantsRowSparse(g: Tensor, rows: number, width: number): boolean {
  return rowSparseEnabled() && g.device === 'cpu' && rows * width >= minRowSparseNumel && g.numel === rows * width
}

/**
 * Makes a fresh (unwritten) gradient row-sparse with no row marked yet; the
 * caller's first write must clear the marks (embeddingBackwardRows' marksFresh).
 */
export function makeRowSparse(g: Tensor, rows: number, width: number): RowMarks {
  const storage = g.rawStorage
  if (storage.rowMarks) throw new Error('internal: gradient is already row-sparse')
  const marks = new (native().NativeBuffer)(deviceCode('cpu'), DTYPE_CODE.int32, rows)
  storage.rowMarks = { marks, rows, width }
  storage.beforeAccess = () => densify(storage)
  return storage.rowMarks
}

/** Zeroes the unmarked rows and drops the marks: the storage is an ordinary dense gradient again. */
function densify(storage: Storage): void {
  const rm = storage.rowMarks
  if (!rm) return
  native().zeroUnmarkedRows(rm.rows, rm.width, rm.marks, storage.rawBuffer)
  rm.marks.free()
  storage.rowMarks = null
}
