// Device selection: "auto" uses CUDA when the CUDA build loads and a GPU
// answers, else the CPU, saying once why. BERTKIT_DEVICE=cpu|cuda|auto
// overrides the default.
import { loadNative, DEVICE_CODE } from '../native.js'

export type DeviceName = 'cpu' | 'cuda'
export type DeviceRequest = DeviceName | 'auto'

let defaultDevice: DeviceName | null = null
let explained = false

function explainOnce(message: string): void {
  if (explained) return
  explained = true
  process.stderr.write(`bertkit: ${message}\n`)
}

/** Resolves a device request to a device that works, or throws for an explicit "cuda" that cannot. */
export function resolveDevice(request: DeviceRequest = 'auto'): DeviceName {
  const fromEnv = process.env.BERTKIT_DEVICE?.toLowerCase()
  if (request === 'auto' && fromEnv && fromEnv !== 'auto') {
    if (fromEnv !== 'cpu' && fromEnv !== 'cuda') {
      throw new Error(`BERTKIT_DEVICE must be cpu, cuda or auto, got "${process.env.BERTKIT_DEVICE}"`)
    }
    request = fromEnv
  }
  if (request === 'cpu') return 'cpu'
  const { addon, variant, note } = loadNative()
  const probe = addon.probeDevice(DEVICE_CODE.cuda)
  if (probe.ok) return 'cuda'
  const reason = note ?? probe.reason ?? (variant === 'cpu' ? 'the CUDA build is not installed' : 'unknown reason')
  if (request === 'cuda') throw new Error(`device "cuda" was requested but is unavailable: ${reason}`)
  explainOnce(`using the CPU: ${reason}`)
  return 'cpu'
}

/** The device new tensors go to when none is named. Resolved lazily from BERTKIT_DEVICE / auto. */
export function getDefaultDevice(): DeviceName {
  if (defaultDevice === null) defaultDevice = resolveDevice('auto')
  return defaultDevice
}

export function setDefaultDevice(device: DeviceRequest): DeviceName {
  defaultDevice = resolveDevice(device)
  return defaultDevice
}

export function deviceCode(device: DeviceName): number {
  return DEVICE_CODE[device]
}

/**
 * Waits until every op queued on the device has run, without blocking the event
 * loop (a libuv worker thread does the waiting). CPU ops run on a stream thread
 * and CUDA ops on a CUDA stream, so a training step only queues work; awaiting
 * this is how the Trainer lets timers, I/O and progress bars run meanwhile.
 * Rejects with the error of a queued op that failed (e.g. a token id out of range).
 */
export function synchronizeAsync(device: DeviceName = getDefaultDevice()): Promise<void> {
  return loadNative().addon.synchronizeAsync(deviceCode(device))
}

/** Waits for the device's queued work, blocking the calling thread. */
export function synchronize(device: DeviceName = getDefaultDevice()): void {
  loadNative().addon.synchronize(deviceCode(device))
}

/**
 * CPU ops queued on the native stream thread (true, the default) or run at once
 * on the calling thread (false; also BERTKIT_CPU_ASYNC=0 at load). Results are
 * identical; queueing is what keeps the event loop free while ops compute.
 */
export function setCpuAsync(on: boolean): void {
  loadNative().addon.setCpuAsync(on)
}
