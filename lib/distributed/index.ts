export {
  initProcessGroup, destroyProcessGroup, getDefaultGroup, isInitialized, ProcessGroup, Work, ncclStatus,
  type Backend, type ReduceOp, type InitProcessGroupOptions,
} from './process_group.js'
export { readDistributedEnv, isDistributedLaunch, type DistributedEnv } from './env.js'
export { DistributedSampler, TorchGenerator, torchRandperm, type DistributedSamplerOptions } from './sampler.js'
export { GradientReducer, broadcastParameters, checkSameSetup, type GradientReducerOptions } from './reducer.js'
