// Reference-counted native memory. A Storage is shared by a tensor, its views
// (reshape) and the autograd nodes that saved it for backward; the native
// buffer is freed the moment the last of them lets go. See lifetimes.md.
import { native, DTYPE_CODE, type NativeBuffer } from '../native.js'
import { deviceCode, type DeviceName } from './device.js'

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32'

export class Storage {
  private refs = 1

  private constructor(readonly buffer: NativeBuffer, readonly dtype: DType, readonly device: DeviceName) {}

  static allocate(numel: number, dtype: DType, device: DeviceName): Storage {
    const addon = native()
    return new Storage(new addon.NativeBuffer(deviceCode(device), DTYPE_CODE[dtype], numel), dtype, device)
  }

  get alive(): boolean {
    return this.refs > 0
  }

  retain(): this {
    if (this.refs <= 0) throw new Error('internal: retain() of a freed storage')
    this.refs++
    return this
  }

  release(): void {
    if (this.refs <= 0) return
    this.refs--
    if (this.refs === 0) this.buffer.free()
  }
}
