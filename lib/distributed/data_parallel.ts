// What the Trainer does differently on several ranks, in one place (the
// Trainer only calls these hooks), as transformers + accelerate do it:
//  * the process group comes from the launcher's environment (or an
//    initProcessGroup() the script made); each rank reads its shard of every
//    epoch, ordered as torch's DistributedSampler orders it;
//  * rank 0's initial weights go to every rank; gradients are averaged by
//    bucketed all-reduce started during backward (reducer.ts), except on the
//    micro-steps of gradient accumulation before the last (DDP's no_sync);
//  * the logged loss is the mean over ranks; rank 0 alone logs, saves and
//    writes reports;
//  * evaluation runs on contiguous shards and gathers logits and labels back
//    into dataset order, dropping the sampler's padding;
//  * a checkpoint records the world size, and a resume with another refuses.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { native } from '../native.js'
import { empty, type Tensor } from '../tensor/tensor.js'
import type { DeviceName } from '../tensor/device.js'
import type { RandomState } from '../tensor/random.js'
import { readDistributedEnv } from './env.js'
import { getDefaultGroup, initProcessGroup, type ProcessGroup } from './process_group.js'
import { DistributedSampler } from './sampler.js'
import { GradientReducer, broadcastParameters, checkSameSetup } from './reducer.js'

/** Written into each checkpoint of a data-parallel run. */
export const DISTRIBUTED_STATE_FILE = 'distributed_state.json'

export class DataParallel {
  private reducer: GradientReducer | null = null

  private constructor(readonly group: ProcessGroup) {}

  /**
   * The data-parallel context of this process: the default process group, or
   * one made from the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR,
   * MASTER_PORT all set); null for a plain single-process run.
   */
  static async fromEnvironment(device: DeviceName, options: { backend?: 'auto' | 'gloo' | 'nccl'; timeoutSeconds?: number } = {}): Promise<DataParallel | null> {
    let group = getDefaultGroup()
    if (!group) {
      const env = readDistributedEnv()
      if (env.rank === null || env.worldSize === null || env.masterAddr === null || env.masterPort === null) return null
      group = await initProcessGroup({ device, backend: options.backend, timeout: options.timeoutSeconds !== undefined ? options.timeoutSeconds * 1000 : undefined })
    }
    if (group.device !== device) {
      throw new Error(`Trainer: the process group reduces ${group.device} tensors (backend ${group.backend}) but the model is on ${device}`)
    }
    return new DataParallel(group)
  }

  get rank(): number {
    return this.group.rank
  }

  get worldSize(): number {
    return this.group.worldSize
  }

  /** Rank 0: the one process that logs, saves and writes reports. */
  get isMain(): boolean {
    return this.group.rank === 0
  }

  // ---- data ----------------------------------------------------------------------

  /** Rows this rank reads per epoch (the sampler pads to equal shares, or drops the tail). */
  samplesPerRank(datasetLength: number, dropLast: boolean): number {
    return new DistributedSampler(datasetLength, { numReplicas: this.worldSize, rank: this.rank, dropLast }).numSamples
  }

  /** This rank's batches for an epoch: DistributedSampler(seed, shuffle) with setEpoch(epoch). */
  epochBatches(datasetLength: number, epoch: number, options: { batchSize: number; seed: number; shuffle: boolean; dropLast: boolean }): number[][] {
    const sampler = new DistributedSampler(datasetLength, { numReplicas: this.worldSize, rank: this.rank, shuffle: options.shuffle, seed: options.seed })
    sampler.setEpoch(epoch)
    const order = sampler.indices()
    const bs = options.batchSize
    const count = options.dropLast ? Math.floor(order.length / bs) : Math.ceil(order.length / bs)
    const batches: number[][] = []
    for (let b = 0; b < count; b++) batches.push(order.slice(b * bs, (b + 1) * bs))
    return batches
  }

  // ---- training --------------------------------------------------------------------

  /**
   * At the start of train(): all ranks agree on the model and the batch
   * setup, take rank 0's weights, and get a gradient reducer.
   */
  async setup(namedParams: Array<[string, Tensor]>, setupKeys: Record<string, string | number>, options: { bucketCapMb?: number } = {}): Promise<void> {
    await checkSameSetup(this.group, namedParams, setupKeys)
    await broadcastParameters(this.group, namedParams)
    this.reducer?.dispose()
    this.reducer = new GradientReducer(this.group, namedParams, { bucketCapMb: options.bucketCapMb })
  }

  /** Before a micro-batch's backward: only the last one of an optimizer step reduces (DDP's no_sync for the others). */
  beforeBackward(reduces: boolean): void {
    if (reduces) this.reducer!.prepareForBackward()
  }

  /** After it: the reduction finishes on the device; the optimizer step queued next sees averaged gradients. */
  afterBackward(reduces: boolean): void {
    if (reduces) this.reducer!.finishReduction()
  }

  /** The mean of a scalar over the ranks (the loss transformers logs), read on every rank. */
  async meanOverRanks(value: Tensor): Promise<number> {
    const t = empty([1], { device: value.device })
    try {
      native().axpby(1, 1 / this.worldSize, value.buffer, 0, t.buffer)
      await this.group.allReduce(t, 'sum')
      return t.item()
    } finally {
      t.dispose()
    }
  }

  /**
   * A rank that cannot go on leaves the group with the reason, so the others
   * stop with it instead of waiting for a collective; the group is gone after.
   */
  abort(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    this.reducer?.dispose()
    this.reducer = null
    if (this.group.failure === null) this.group.destroy(1, message.split("\n")[0])
  }

  /** Ends a failed or finished run's reducer; the group stays for evaluation. */
  dispose(): void {
    this.reducer?.dispose()
    this.reducer = null
  }

  // ---- evaluation --------------------------------------------------------------------

  /**
   * This rank's contiguous share of an evaluation set (as transformers'
   * SequentialDistributedSampler, but without evaluating the padding): rank r
   * predicts rows [r * per, (r + 1) * per) that exist, per = ceil(n / world),
   * so gathering in rank order gives dataset order back.
   */
  evalShard(datasetLength: number): number[] {
    const per = Math.ceil(datasetLength / this.worldSize)
    const indices: number[] = []
    for (let i = this.rank * per; i < Math.min((this.rank + 1) * per, datasetLength); i++) indices.push(i)
    return indices
  }

  /** Every rank's rows (row-major, `width` values each, up to `per` rows) in rank order, the first `total` rows kept. */
  private async gatherRows<A extends Float32Array | Int32Array>(values: A, width: number, per: number, total: number): Promise<A> {
    const int = values instanceof Int32Array
    const padded = int ? new Int32Array(per * width) : new Float32Array(per * width)
    padded.set(values.subarray(0, per * width))
    const device = this.group.device
    const mine = empty([padded.length], { dtype: int ? 'int32' : 'float32', device })
    const all = empty([padded.length * this.worldSize], { dtype: int ? 'int32' : 'float32', device })
    try {
      mine.buffer.write(padded)
      await this.group.allGatherIntoTensor(all, mine)
      const gathered = int ? all.toInt32Array() : all.toFloat32Array()
      return gathered.slice(0, total * width) as A
    } finally {
      mine.dispose()
      all.dispose()
    }
  }

  /** Element-wise max over the ranks of a few small integers. */
  private async maxOverRanks(values: number[]): Promise<number[]> {
    const t = empty([values.length], { dtype: 'int32', device: this.group.device })
    try {
      t.buffer.write(Int32Array.from(values))
      await this.group.allReduce(t, 'max')
      return Array.from(t.toInt32Array())
    } finally {
      t.dispose()
    }
  }

  /**
   * An evaluation's rows from every rank, in dataset order: logits, labels,
   * and the loss summed over rows (each row counting its batch's mean loss,
   * so the sum does not depend on how rows were batched).
   */
  async gatherEval(e: { predictions: Float32Array; labelIds: Int32Array | Float32Array | null; rowLosses: number[]; numLabels: number; rows: number }) {
    const here = this.evalShard(e.rows).length
    const per = Math.ceil(e.rows / this.worldSize)
    const labelWidth = e.labelIds && here ? e.labelIds.length / here : 0
    // A rank may hold no rows at all: the ranks agree on widths and kinds first.
    const [numLabels, width, intLabels, floatLabels, hasLoss] = await this.maxOverRanks([
      e.numLabels, labelWidth, e.labelIds instanceof Int32Array ? 1 : 0, e.labelIds instanceof Float32Array ? 1 : 0, e.rowLosses.length ? 1 : 0,
    ])
    const predictions = await this.gatherRows(e.predictions, numLabels, per, e.rows)
    let labelIds: Int32Array | Float32Array | null = null
    if (intLabels || floatLabels) {
      const mine = e.labelIds ?? (intLabels ? new Int32Array(0) : new Float32Array(0))
      labelIds = await this.gatherRows(mine, width, per, e.rows)
    }
    let lossSum = 0, lossCount = 0
    if (hasLoss) {
      const losses = await this.gatherRows(Float32Array.from(e.rowLosses), 1, per, e.rows)
      for (const v of losses) lossSum += v
      lossCount = losses.length
    }
    return { predictions, labelIds, lossSum, lossCount, numLabels }
  }

  // ---- checkpoints ---------------------------------------------------------------------

  /**
   * What a checkpoint records about the run that wrote it: the world size,
   * and every rank's random state (ranks draw different amounts, so each
   * resumes its own, as transformers' rng_state_<rank>.pth). Every rank calls it.
   */
  async checkpointState(mine: RandomState): Promise<Record<string, unknown>> {
    const words = encodeRandomState(mine)
    const all = await this.gatherRows(Int32Array.from(words), words.length, 1, this.worldSize)
    const rng = Array.from({ length: this.worldSize }, (_, r) => {
      const state = decodeRandomState(all.subarray(r * words.length, (r + 1) * words.length))
      return { seed: state.seed.toString(), offset: state.offset.toString(), host_state: state.hostState }
    })
    return { world_size: this.worldSize, backend: this.group.backend, sampler: 'torch.utils.data.DistributedSampler', rng }
  }

  /**
   * Refuses a checkpoint of another world size (each rank's data position
   * holds only for the same one); returns this rank's saved random state.
   */
  static checkResume(dir: string, dp: DataParallel | null): RandomState | null {
    const file = join(dir, DISTRIBUTED_STATE_FILE)
    let saved: { world_size?: unknown; rng?: Array<{ seed: string; offset: string; host_state: number[] }> } | null = null
    if (existsSync(file)) {
      try {
        saved = JSON.parse(readFileSync(file, 'utf8'))
      } catch (err) {
        throw new Error(`Trainer: cannot resume from ${dir}: ${file} is not valid JSON (${(err as Error).message})`)
      }
    }
    const savedWorld = typeof saved?.world_size === 'number' ? saved.world_size : null
    const now = dp ? dp.worldSize : null
    if (savedWorld !== now) {
      const what = (w: number | null) => (w === null ? 'a single process (no launcher)' : `${w} process${w > 1 ? 'es' : ''} (bertkit launch)`)
      throw new Error(
        `Trainer: cannot resume from ${dir}: it was written by a run of ${what(savedWorld)} but this run has ${what(now)}; ` +
          `each rank's position in the data holds only for the same world size. Resume with ${savedWorld === null ? 'no launcher' : `${savedWorld} processes in all (--nproc-per-node x --nnodes)`}, or start a new run`,
      )
    }
    const rng = dp && saved?.rng?.[dp.rank]
    if (!rng) return null
    return { seed: BigInt(rng.seed), offset: BigInt(rng.offset), hostState: rng.host_state }
  }
}

/** A random state as int32 words: seed and offset (64 bits each, low word first), then the host state. */
function encodeRandomState(s: RandomState): number[] {
  const words = (v: bigint) => [Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n))]
  return [...words(s.seed), ...words(s.offset), ...s.hostState.map((w) => w | 0)]
}

function decodeRandomState(w: Int32Array): RandomState {
  const u64 = (lo: number, hi: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)
  return { seed: u64(w[0], w[1]), offset: u64(w[2], w[3]), hostState: Array.from(w.subarray(4), (x) => x >>> 0) }

}
