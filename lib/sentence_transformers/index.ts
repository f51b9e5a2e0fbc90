// sentence-transformers: embedding models built from modules.json.
export { SentenceTransformer, type Embeddings, type EncodeOptions, type SentenceTransformerOptions, type SentenceTransformerModule } from './SentenceTransformer.js'
export { Transformer, type TransformerFeatures, type AutoModel } from './models/Transformer.js'
export { Pooling } from './models/Pooling.js'
export { Dense } from './models/Dense.js'
export { Normalize } from './models/Normalize.js'
export { pool, concatFeatures, normalize, cosineSimilarity, mseLoss, POOLING_MODES, type PoolingMode } from './functional.js'
