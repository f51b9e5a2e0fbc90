// The environment torchrun gives each worker, which `bertkit launch` sets the
// same way: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
// MASTER_ADDR, MASTER_PORT.

export interface DistributedEnv {
  rank: number | null
  localRank: number | null
  worldSize: number | null
  localWorldSize: number | null
  /** The node's index (torchrun's GROUP_RANK, the launcher's --node-rank). */
  nodeRank: number | null
  masterAddr: string | null
  masterPort: number | null
}

function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | null {
  const v = process.env[name]
  if (v === undefined || v === '') return null
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}], got "${v}"`)
  return n
}

export function readDistributedEnv(): DistributedEnv {
  return {
    rank: int('RANK', 0),
    localRank: int('LOCAL_RANK', 0),
    worldSize: int('WORLD_SIZE', 1),
    localWorldSize: int('LOCAL_WORLD_SIZE', 1),
    nodeRank: int('GROUP_RANK', 0),
    masterAddr: process.env.MASTER_ADDR || null,
    masterPort: int('MASTER_PORT', 1, 65535),
  }
}

/** True when this process was started as one of several ranks (WORLD_SIZE > 1). */
export function isDistributedLaunch(): boolean {
  const ws = readDistributedEnv().worldSize
  return ws !== null && ws > 1
}
