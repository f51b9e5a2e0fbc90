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
  static async fromEnvironment(device: DeviceName): Promise<DataParallel | null> {
    let group = getDefaultGroup()
    if (!group) {
      const env = readDistributedEnv()
      if (env.rank === null || env.worldSize === null || env.masterAddr === null || env.masterPort === null) return null
      group = await initProcessGroup({ device })
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

  /** Ends a failed or finished run's reducer; the group stays for evaluation. */
  dispose(): void {
    this.reducer?.dispose()
    this.reducer = null
  }

  // ---- evaluation --------------------------------------------------------------------

  /**
   * This rank's contiguous share of an evaluation set (as transformers'
   * SequentialDistributedSampler): equal shares, the last padded with the
   * first rows, so gathering in rank order restores dataset order.
   */
  evalShard(datasetLength: number): { indices: number[]; real: number } {
    const per = Math.ceil(datasetLength / this.worldSize)
    const indices: number[] = []
    for (let i = this.rank * per; i < (this.rank + 1) * per; i++) indices.push(i % datasetLength)
    const real = Math.max(0, Math.min(per, datasetLength - this.rank * per))
    return { indices, real }
  }

  /** Gathers every rank's rows (row-major, `width` values per row, equal counts) in rank order and keeps the first `total`. */
  async gatherRows<A extends Float32Array | Int32Array>(rows: A, width: number, total: number): Promise<A> {
    const int = rows instanceof Int32Array
    const device = this.group.device
    const mine = empty([rows.length], { dtype: int ? 'int32' : 'float32', device })
    const all = empty([rows.length * this.worldSize], { dtype: int ? 'int32' : 'float32', device })
    try {
      mine.buffer.write(rows)
      await this.group.allGatherIntoTensor(all, mine)
      const values = (int ? all.toInt32Array() : all.toFloat32Array()) as A
      return values.subarray(0, total * width) as A
    } finally {
      mine.dispose()
      all.dispose()
    }
  }

  // ---- checkpoints ---------------------------------------------------------------------

  /** What a checkpoint records about the run that wrote it. */
  checkpointState(): Record<string, unknown> {
    return { world_size: this.worldSize, sampler: 'torch.utils.data.DistributedSampler', backend: this.group.backend }
  }

  /** Refuses a checkpoint of another world size (its data position would point elsewhere). */
  static checkResume(dir: string, dp: DataParallel | null): void {
    const file = join(dir, DISTRIBUTED_STATE_FILE)
    const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { world_size?: number }) : null
    const savedWorld = saved?.world_size ?? null
    const now = dp ? dp.worldSize : null
    if (savedWorld === now) return
    const what = (w: number | null) => (w === null ? 'a single process (no launcher)' : `${w} process${w > 1 ? 'es' : ''} (bertkit launch)`)
    throw new Error(
      `Trainer: ${dir} was written by a run of ${what(savedWorld)} but this run has ${what(now)}; each rank's data position ` +
        `only holds for the same world size. Resume with ${savedWorld === null ? 'no launcher' : `--nproc-per-node x --nnodes = ${savedWorld}`}, or start a new run`,
    )
  }
}
