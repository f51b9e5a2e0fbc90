// Parameter-efficient fine-tuning (LoRA) with peft's names and files.
export { LoraConfig, loraConfigFromSpec, PEFT_FORMAT_VERSION, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, type LoraConfigInit, type LoraBias, type PeftTaskType } from './config.js'
export { LoraLinear, ModulesToSaveWrapper, ModuleDict, DEFAULT_ADAPTER } from './layers.js'
export { PeftModel, PeftModelForSequenceClassification, LoraModel, getPeftModel, planInjection, isAdapterDir, DEFAULT_TARGET_MODULES, type PeftBaseModel, type GetPeftModelOptions, type InjectionPlan } from './peft_model.js'
export { AutoPeftModelForSequenceClassification } from './auto.js'
