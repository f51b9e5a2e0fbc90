// The backend table: every case of every op family, in one list.
import type { OpCase } from '../backend_ops.js'
import { activationCases } from './activation.js'
import { adamwCases } from './adamw.js'
import { attentionCases } from './attention.js'
import { dropoutCases } from './dropout.js'
import { elementwiseCases } from './elementwise.js'
import { embeddingCases } from './embedding.js'
import { gemmCases } from './gemm.js'
import { layerNormCases } from './layernorm.js'
import { crossEntropyCases } from './loss.js'
import { poolingCases } from './pooling.js'
import { relativeAttentionCases } from './relative_attention.js'

export const ALL_CASES: OpCase[] = [
  ...gemmCases(),
  ...elementwiseCases(),
  ...activationCases(),
  ...dropoutCases(),
  ...layerNormCases(),
  ...embeddingCases(),
  ...attentionCases(),
  ...relativeAttentionCases(),
  ...poolingCases(),
  ...crossEntropyCases(),
  ...adamwCases(),
]
