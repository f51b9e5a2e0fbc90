// Ops tests are written once and run per backend: cpu always, cuda when this
// addon was built with CUDA and a GPU answers. Where CUDA cannot run, the
// suite says so through tap's skip, with the reason.
import { native, DEVICE_CODE } from '../../lib/native.js'

export type DeviceName = 'cpu' | 'cuda'

export interface DeviceUnderTest {
  name: DeviceName
  code: number
  /** null when the device can run; otherwise why not (shown as a skip). */
  skip: string | null
}

export function devicesUnderTest(): DeviceUnderTest[] {
  const cuda = native().probeDevice(DEVICE_CODE.cuda)
  return [
    { name: 'cpu', code: DEVICE_CODE.cpu, skip: null },
    { name: 'cuda', code: DEVICE_CODE.cuda, skip: cuda.ok ? null : `cuda unavailable: ${cuda.reason}` },
  ]
}
