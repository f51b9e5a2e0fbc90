export { AdamW, type AdamWOptions, type ParamGroup } from './adamw.js'
export { clipGradNorm, type ClipResult } from './clip.js'
