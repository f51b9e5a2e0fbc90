// Reference-counted native memory. A Storage is shared by a tensor, its views
// (reshape) and the autograd nodes that saved it for backward; the native
// buffer is freed the moment the last of them lets go. See lifetimes.md.
import { native, DTYPE_CODE, type NativeBuffer } from '../native.js'
import { deviceCode, type DeviceName } from './device.js'

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32'

/**
 * A row-sparse gradient [rows, width]: only rows whose mark (int32 buffer of
 * `rows` entries) is non-zero hold values; the others count as zero and hold
 * garbage until the storage is made dense.
 */
export interface RowMarks {
  marks: NativeBuffer
  rows: number
  width: number
}

export class Storage {
  private refs = 1
  /**
   * @internal Deferred work on this memory (a lazy optimizer's row updates, a
   * row-sparse gradient's zero rows): run once before anyone reaches the data
   * through `buffer`, so every read and write sees the values as if nothing
   * had been deferred. The owner of the work clears it.
   */
  beforeAccess: (() => void) | null = null
  /** @internal Deferred updates that can be done for given rows only (ids: int32 rows): the embedding's lookup. */
  beforeRowAccess: ((ids: NativeBuffer, n: number) => void) | null = null
  /** @internal Set while this memory is a row-sparse gradient (freed with the storage). */
  rowMarks: RowMarks | null = null

  private constructor(private readonly raw: NativeBuffer, readonly dtype: DType, readonly device: DeviceName) {}

  /** The native buffer, after any deferred work on it (beforeAccess). */
  get buffer(): NativeBuffer {
    const pending = this.beforeAccess
    if (pending) {
      this.beforeAccess = null
      pending()
    }
    return this.raw
  }

  /** @internal The buffer as it is, deferred work left pending: for the owner of that work only. */
  get rawBuffer(): NativeBuffer {
    return this.raw
  }

  static allocate(numel: number, dtype: DType, device: DeviceName): Storage {
    const addon = native()
    return new Storage(new addon.NativeBuffer(deviceCode(device), DTYPE_CODE[dtype], numel), dtype, device)
  }

  get alive(): boolean {
    return this.refs > 0
  }

  /** @internal More than one holder (a view, a node that saved it). */
  get shared(): boolean {
    return this.refs > 1
  }

  retain(): this {
    if (this.refs <= 0) throw new Error('internal: retain() of a freed storage')
    this.refs++
    return this
  }

  release(): void {
    if (this.refs <= 0) return
    this.refs--
    if (this.refs === 0) {
      // Freed memory needs no deferred work.
      this.beforeAccess = null
      this.beforeRowAccess = null
      this.raw.free()
      this.rowMarks?.marks.free()
      this.rowMarks = null
    }
  }
}
