// SetFit (setfit v1.x): few-shot classification with a sentence-transformers body.
export { SetFitModel, SetFitHead, MODEL_HEAD_NAME, CONFIG_NAME, pickledHeadMessage, type ModelHead, type SetFitLabel, type SetFitModelOptions, type SetFitHeadParams, type FitOptions } from './modeling.js'
export { Trainer, SetFitTrainer, type TrainerOptions, type Metric, type LogEntry, type SetFitTrainOutput } from './trainer.js'
export { TrainingArguments, type TrainingArgumentsInit } from './training_args.js'
export { sampleDataset, type SampleDatasetOptions } from './data.js'
export { ContrastiveDataset, shuffleCombinations, SAMPLING_STRATEGIES, type SamplingStrategy, type SentencePair, type ContrastiveDatasetOptions } from './sampler.js'
export { randomStatePermutation, defaultRngPermutation, torchRandperm, MT19937, PCG64, seedSequenceState } from './random.js'
