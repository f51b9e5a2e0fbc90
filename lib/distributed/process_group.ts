// torch.distributed's process group for bertkit: the ranks of one
// data-parallel run and the collectives among them, on Gloo (CPU tensors) or
// NCCL (CUDA tensors) — native/src/distributed/process_group.h.
//
// Collectives are ordered like the device's ops: a collective starts once
// every op issued before it has run, and ops issued after `work.wait()` see
// its result. allReduce() & co. do both and resolve when it has finished;
// the *Async forms return the Work so backward can keep computing while
// gradients travel (lib/distributed/reducer.ts).
import { existsSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { loadNative, type NativeBuffer } from '../native.js'
import { sitePackagesDirs } from '../cuda_libraries.js'
import { resolveDevice, type DeviceName, type DeviceRequest } from '../tensor/device.js'
import { empty, formatShape, type Tensor } from '../tensor/tensor.js'
import { readDistributedEnv } from './env.js'

export type Backend = 'gloo' | 'nccl'
/** 'avg' (torch's ReduceOp.AVG): the sum divided by the world size, float32 only. */
export type ReduceOp = 'sum' | 'max' | 'min' | 'avg'
const REDUCE_CODE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2, avg: 3 }

/** What the addon exports for process groups (native/src/napi/process_group_handle.cpp). */
interface ProcessGroupHandle {
  readonly rank: number
  readonly worldSize: number
  readonly backend: string
  readonly device: number
  describe(): string
  allReduce(buffer: NativeBuffer, count: number, op: number): number
  allReduceCoalesced(buffers: NativeBuffer[], op: number): number
  broadcast(buffer: NativeBuffer, count: number, root: number): number
  allGather(input: NativeBuffer, output: NativeBuffer, count: number): number
  barrier(): number
  wait(ticket: number): void
  failure(): string | null
  leave(exitCode: number, reason: string): void
}

interface DistAddon {
  distConnect?(
    options: {
      backend: Backend; rank: number; worldSize: number; masterAddr: string; masterPort: number; timeoutMs: number
      glooLibraryPaths: string[]; ncclLibraryDirs: string[]; glooIface?: string
    },
    onEvent: (kind: 'completed' | 'failed' | 'peer-left', ticket: number, message: string) => void,
  ): Promise<ProcessGroupHandle>
  ncclCompiled?: boolean
  ncclStatus?(dirs: string[]): string
}

export interface InitProcessGroupOptions {
  /** 'gloo' (CPU tensors), 'nccl' (CUDA tensors), or 'auto' (default): the one that fits `device`. */
  backend?: Backend | 'auto'
  /** Defaults come from the environment the launcher sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). */
  rank?: number
  worldSize?: number
  masterAddr?: string
  masterPort?: number
  /** Bounds the rendezvous and every collective, in milliseconds (default 30 min, torch's; BERTKIT_DIST_TIMEOUT in seconds). */
  timeout?: number
  /** The device whose tensors the group reduces (default: the default device). */
  device?: DeviceRequest
}

/** Where bertkit_gloo.so may be: next to the loaded addon, or in the source build. */
export function glooLibraryPaths(): string[] {
  // An explicit file is the only candidate, so a wrong path is reported, not bypassed.
  if (process.env.BERTKIT_GLOO_LIBRARY) return [process.env.BERTKIT_GLOO_LIBRARY]
  const out: string[] = []
  const addonDir = dirname(loadNative().path)
  out.push(join(addonDir, 'bertkit_gloo.so'), join(addonDir, '..', 'bertkit_gloo.so'))
  out.push(join(__dirname, '..', '..', '..', 'build', 'Release', 'bertkit_gloo.so'))
  return [...new Set(out)]
}

/** Directories searched for libnccl.so.2 before the dynamic linker's: BERTKIT_CUDA_LIB_PATH, then the nvidia-nccl wheels. */
export function ncclLibraryDirs(): string[] {
  const explicit = (process.env.BERTKIT_CUDA_LIB_PATH ?? '').split(delimiter).filter(Boolean)
  // Asked only when an NCCL group is made (or by doctor): worth starting Python for its site-packages.
  const wheels = sitePackagesDirs({ askPython: true }).map((site) => join(site, 'nvidia', 'nccl', 'lib')).filter((d) => existsSync(d))
  return [...new Set([...explicit, ...wheels])]
}

/** What backend 'nccl' would find here, for `bertkit doctor`; null in the CPU-only addon. */
export function ncclStatus(): string | null {
  const addon = loadNative().addon as unknown as DistAddon
  if (!addon.ncclStatus) return null
  return addon.ncclStatus(ncclLibraryDirs()) || null
}

/** A collective in flight. */
export class Work {
  private settled = false
  private error: Error | null = null
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = []

  /** @internal */
  constructor(private readonly group: ProcessGroup, readonly ticket: number, private readonly release: () => void) {}

  /** Ops issued to the device after this call see the collective's result (they wait for it on the device, not here). */
  wait(): void {
    this.group.handleOrThrow().wait(this.ticket)
  }

  /** Resolves when the collective has finished on this rank; rejects with its error (naming the rank at fault). */
  completed(): Promise<void> {
    if (this.settled) return this.error ? Promise.reject(this.error) : Promise.resolve()
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  get isCompleted(): boolean {
    return this.settled
  }

  /** @internal */
  settle(error: Error | null): void {
    if (this.settled) return
    this.settled = true
    this.error = error
    this.release()
    for (const w of this.waiters) error ? w.reject(error) : w.resolve()
    this.waiters = []
  }
}

let defaultGroup: ProcessGroup | null = null
let exitHookInstalled = false
let lastUncaught: string | null = null

export class ProcessGroup {
  private handle: ProcessGroupHandle | null
  private readonly pending = new Map<number, Work>()
  private broken: string | null = null
  private readonly leftPeers: string[] = []
  private readonly failureListeners: Array<(message: string) => void> = []

  /** @internal use initProcessGroup(). */
  constructor(
    handle: ProcessGroupHandle,
    readonly backend: Backend,
    readonly device: DeviceName,
    eventsTo: { group: ProcessGroup | null },
  ) {
    this.handle = handle
    eventsTo.group = this
  }

  get rank(): number {
    return this.handleOrThrow().rank
  }

  get worldSize(): number {
    return this.handleOrThrow().worldSize
  }

  /** The backend library in use, e.g. "gloo (/path/bertkit_gloo.so)" or "nccl 2.30.7 (...)". */
  describe(): string {
    return this.handleOrThrow().describe()
  }

  /** The message that broke the group (a rank died or failed, a collective failed or timed out), or null. */
  get failure(): string | null {
    return this.broken
  }

  /** Runs fn with the message as soon as the group breaks (on the event loop). */
  onFailure(fn: (message: string) => void): void {
    this.failureListeners.push(fn)
    if (this.broken) fn(this.broken)
  }

  /** @internal */
  handleOrThrow(): ProcessGroupHandle {
    if (!this.handle) throw new Error('process group: destroyProcessGroup() was called; create a new group with initProcessGroup()')
    return this.handle
  }

  // ---- collectives ---------------------------------------------------------------

  /** In place: every rank's tensor becomes the sum (max, min, average) over the ranks. */
  allReduceAsync(t: Tensor, op: ReduceOp = 'sum'): Work {
    const code = REDUCE_CODE[op]
    if (code === undefined) throw new Error(`allReduce: op must be sum, max, min or avg, got ${String(op)}`)
    this.checkTensor(t, 'allReduce', 'tensor')
    return this.track([t], (h) => h.allReduce(t.buffer, t.numel, code))
  }

  async allReduce(t: Tensor, op: ReduceOp = 'sum'): Promise<void> {
    return this.finish(this.allReduceAsync(t, op))
  }

  /**
   * Several float32 tensors all-reduced as one bucket, each in place (torch's
   * all_reduce_coalesced): one collective instead of one per tensor, and no
   * packing by the caller (Gloo packs on the group's thread; NCCL fuses).
   */
  allReduceCoalescedAsync(tensors: Tensor[], op: ReduceOp = 'sum'): Work {
    const code = REDUCE_CODE[op]
    if (code === undefined) throw new Error(`allReduceCoalesced: op must be sum, max, min or avg, got ${String(op)}`)
    if (!tensors.length) throw new Error('allReduceCoalesced: no tensors')
    tensors.forEach((t, i) => {
      this.checkTensor(t, 'allReduceCoalesced', `tensors[${i}]`)
      if (t.dtype !== 'float32') throw new Error(`allReduceCoalesced: tensors[${i}] is ${t.dtype}; a bucket holds float32 tensors`)
    })
    return this.track(tensors, (h) => h.allReduceCoalesced(tensors.map((t) => t.buffer), code))
  }

  async allReduceCoalesced(tensors: Tensor[], op: ReduceOp = 'sum'): Promise<void> {
    return this.finish(this.allReduceCoalescedAsync(tensors, op))
  }

  /** In place: every rank's tensor becomes rank `src`'s. */
  broadcastAsync(t: Tensor, src = 0): Work {
    this.checkTensor(t, 'broadcast', 'tensor')
    if (!Number.isInteger(src) || src < 0 || src >= this.worldSize) throw new Error(`broadcast: src must be a rank in [0, ${this.worldSize - 1}], got ${src}`)
    return this.track([t], (h) => h.broadcast(t.buffer, t.numel, src))
  }

  async broadcast(t: Tensor, src = 0): Promise<void> {
    return this.finish(this.broadcastAsync(t, src))
  }

  /** output (worldSize x input's numel elements, rank r's input at r * numel) gets every rank's input. */
  allGatherIntoTensorAsync(output: Tensor, input: Tensor): Work {
    this.checkTensor(input, 'allGather', 'input')
    this.checkTensor(output, 'allGather', 'output')
    if (output.dtype !== input.dtype) throw new Error(`allGather: output is ${output.dtype} but input is ${input.dtype}`)
    if (output.numel !== input.numel * this.worldSize) {
      throw new Error(`allGather: output ${formatShape(output.shape)} must hold worldSize (${this.worldSize}) x input ${formatShape(input.shape)} = ${input.numel * this.worldSize} elements`)
    }
    return this.track([input, output], (h) => h.allGather(input.buffer, output.buffer, input.numel))
  }

  async allGatherIntoTensor(output: Tensor, input: Tensor): Promise<void> {
    return this.finish(this.allGatherIntoTensorAsync(output, input))
  }

  /** Every rank's tensor, in rank order (the caller disposes them). Tensors must have the same shape on every rank. */
  async allGather(t: Tensor): Promise<Tensor[]> {
    const out = empty([this.worldSize, ...t.shape], { dtype: t.dtype, device: t.device })
    try {
      await this.allGatherIntoTensor(out, t)
      const parts: Tensor[] = []
      const all = t.dtype === 'int32' ? out.toInt32Array() : out.toFloat32Array()
      for (let r = 0; r < this.worldSize; r++) {
        const slice = all.subarray(r * t.numel, (r + 1) * t.numel)
        parts.push(tensorLike(slice, t))
      }
      return parts
    } finally {
      out.dispose()
    }
  }

  /** Resolves once every rank has reached its barrier. */
  async barrier(): Promise<void> {
    return this.finish(this.track([], (h) => h.barrier()))
  }

  /** Says goodbye to the other ranks (they stop waiting for this one) and frees the group. */
  destroy(exitCode = 0, reason = ''): void {
    if (!this.handle) return
    const h = this.handle
    this.handle = null
    h.leave(exitCode, reason)
    if (defaultGroup === this) defaultGroup = null
  }

  // ---- internals -----------------------------------------------------------------

  private checkTensor(t: Tensor, fn: string, name: string): void {
    if (t.device !== this.device) {
      throw new Error(`${fn}: tensor '${name}' is on ${t.device} but this ${this.backend} group reduces ${this.device} tensors`)
    }
    if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`${fn}: tensor '${name}' is ${t.dtype}; collectives take float32 or int32`)
  }

  private track(tensors: Tensor[], issue: (h: ProcessGroupHandle) => number): Work {
    if (this.broken) throw new Error(`process group is broken: ${this.broken}`)
    const h = this.handleOrThrow()
    // The memory stays alive until the collective ends, whatever the caller disposes meanwhile.
    const held = tensors.map((t) => t.retainStorage())
    let ticket: number
    try {
      ticket = issue(h)
    } catch (e) {
      for (const s of held) s.release()
      throw e
    }
    const work = new Work(this, ticket, () => { for (const s of held) s.release() })
    this.pending.set(ticket, work)
    return work
  }

  private async finish(work: Work): Promise<void> {
    work.wait()
    await work.completed()
  }

  /** @internal events from the native group, on the event loop. */
  onEvent(kind: string, ticket: number, message: string): void {
    if (kind === 'completed') {
      const work = this.pending.get(ticket)
      if (!work) return
      this.pending.delete(ticket)
      work.settle(message ? new Error(this.withPeers(message)) : null)
    } else if (kind === 'failed') {
      if (this.broken) return
      this.broken = this.withPeers(message)
      const error = new Error(`process group is broken: ${this.broken}`)
      for (const w of this.pending.values()) w.settle(error)
      this.pending.clear()
      process.stderr.write(`bertkit: rank ${this.handle?.rank ?? '?'}: process group broken: ${this.broken}\n`)
      for (const fn of this.failureListeners) fn(this.broken)
    } else if (kind === 'peer-left') {
      this.leftPeers.push(message)
    }
  }

  private withPeers(message: string): string {
    return this.leftPeers.length && !message.includes('has finished') ? `${message} (earlier: ${this.leftPeers.join('; ')})` : message
  }
}

function tensorLike(values: Float32Array | Int32Array, like: Tensor): Tensor {
  const out = empty(like.shape, { dtype: like.dtype, device: like.device })
  out.buffer.write(values)
  return out
}

function parseTimeout(options: InitProcessGroupOptions): number {
  if (options.timeout !== undefined) {
    if (!(options.timeout >= 1) || !Number.isFinite(options.timeout)) throw new Error(`initProcessGroup: timeout must be a positive number of milliseconds, got ${options.timeout}`)
    return Math.round(options.timeout)
  }
  const env = process.env.BERTKIT_DIST_TIMEOUT
  if (env !== undefined && env !== '') {
    const s = Number(env)
    if (!(s > 0)) throw new Error(`BERTKIT_DIST_TIMEOUT must be a positive number of seconds, got "${env}"`)
    return Math.round(s * 1000)
  }
  return 30 * 60 * 1000
}

/**
 * torch.distributed.init_process_group: rendezvous with the other ranks at
 * MASTER_ADDR:MASTER_PORT (rank 0 hosts the store there) and connect the
 * backend. Every rank calls it; it resolves once all have joined, or rejects
 * naming the address and the ranks that never came. The group becomes the
 * default one (getDefaultGroup()).
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroup> {
  if (defaultGroup) throw new Error('initProcessGroup: a process group is already initialized in this process (destroyProcessGroup() first)')
  const env = readDistributedEnv()
  const rank = options.rank ?? env.rank
  const worldSize = options.worldSize ?? env.worldSize
  const masterAddr = options.masterAddr ?? env.masterAddr
  const masterPort = options.masterPort ?? env.masterPort
  const missing = [rank === null && 'RANK', worldSize === null && 'WORLD_SIZE', !masterAddr && 'MASTER_ADDR', masterPort === null && 'MASTER_PORT'].filter(Boolean)
  if (missing.length) {
    throw new Error(`initProcessGroup: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not set; start the script with \`bertkit launch --nproc-per-node N script.js\`, or pass them as options`)
  }
  const device = resolveDevice(options.device ?? 'auto')
  let backend = options.backend ?? 'auto'
  if (backend === 'auto') backend = device === 'cuda' ? 'nccl' : 'gloo'
  if (backend !== 'gloo' && backend !== 'nccl') throw new Error(`initProcessGroup: backend must be gloo, nccl or auto, got "${String(backend)}"`)
  if ((backend === 'nccl') !== (device === 'cuda')) {
    throw new Error(`initProcessGroup: backend ${backend} reduces ${backend === 'nccl' ? 'cuda' : 'cpu'} tensors but the device is ${device} (use backend ${device === 'cuda' ? 'nccl' : 'gloo'}, or 'auto')`)
  }
  const addon = loadNative().addon as unknown as DistAddon
  if (typeof addon.distConnect !== 'function') throw new Error('initProcessGroup: this bertkit addon was built without process groups; rebuild it (npm run build:native)')
  const timeoutMs = parseTimeout(options)
  const route: { group: ProcessGroup | null } = { group: null }
  const early: Array<[string, number, string]> = []
  const handle = await addon.distConnect(
    {
      backend, rank: rank!, worldSize: worldSize!, masterAddr: masterAddr!, masterPort: masterPort!, timeoutMs,
      glooLibraryPaths: backend === 'gloo' ? glooLibraryPaths() : [],
      ncclLibraryDirs: backend === 'nccl' ? ncclLibraryDirs() : [],
      glooIface: process.env.GLOO_SOCKET_IFNAME ?? '',
    },
    (kind, ticket, message) => {
      if (route.group) route.group.onEvent(kind, ticket, message)
      else early.push([kind, ticket, message])
    },
  )
  const group = new ProcessGroup(handle, backend, device, route)
  for (const [kind, ticket, message] of early) group.onEvent(kind, ticket, message)
  defaultGroup = group
  installExitHook()
  return group
}

/** The group made by initProcessGroup(), or null. */
export function getDefaultGroup(): ProcessGroup | null {
  return defaultGroup
}

export function isInitialized(): boolean {
  return defaultGroup !== null
}

/** torch.distributed.destroy_process_group: goodbye to the other ranks. */
export function destroyProcessGroup(): void {
  defaultGroup?.destroy(0, '')
  defaultGroup = null
}

// A process that ends without destroyProcessGroup() still says goodbye, with
// its exit code: 0 tells the others this rank finished; anything else that
// it failed, and why (the uncaught error's first line), so they stop too.
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('uncaughtExceptionMonitor', (err) => {
    lastUncaught = err instanceof Error ? err.message.split('\n')[0] : String(err)
  })
  process.on('exit', (code) => {
    if (!defaultGroup) return
    const reason = code === 0 ? '' : lastUncaught ?? `exited with code ${code}`
    try {
      defaultGroup.destroy(code, reason)
    } catch {
      // Exiting: nothing left to tell.
    }
  })
}
