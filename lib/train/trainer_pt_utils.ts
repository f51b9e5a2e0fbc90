// Which parameters get weight decay, as transformers' Trainer decides it
// (Trainer.get_decay_parameter_names with trainer_pt_utils.get_parameter_names):
// none for any parameter inside a LayerNorm module, found by module type, and
// none for a parameter whose lowercased name matches one of the name patterns
// below (biases, and norms named in other ways). Everything else decays.
import { Module } from '../nn/module.js'
import { LayerNorm } from '../nn/layers.js'
import type { Tensor } from '../tensor/tensor.js'

// transformers 5.x's forbidden_name_patterns, searched in the lowercased dotted name.
// (4.x excluded names containing "bias" only; the module-type rule catches the same
// LayerNorms in every bertkit model, so both releases agree on them.)
const NO_DECAY_NAME_PATTERNS = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/]

/** Whether transformers' name rule alone exempts `name` from weight decay. */
export function noDecayByName(name: string): boolean {
  const lower = name.toLowerCase()
  return NO_DECAY_NAME_PATTERNS.some((p) => p.test(lower))
}

/** What the rule needs of a model: its parameters, and (for a Module) its modules to find LayerNorms by type. */
export interface NamedParameters {
  namedParameters(): Iterable<[string, Tensor]>
}

/**
 * Names of the parameters weight decay applies to, in namedParameters()
 * order: those not inside any LayerNorm module (at any depth: a LayerNorm
 * that peft wraps in a ModulesToSaveWrapper is still one) and whose name
 * does not match the no-decay patterns.
 */
export function getDecayParameterNames(model: NamedParameters): string[] {
  const inNorm = new Set<Tensor>()
  if (model instanceof Module) {
    for (const [, m] of model.namedModules()) {
      if (m instanceof LayerNorm) for (const p of m.parameters()) inNorm.add(p)
    }
  }
  const names: string[] = []
  for (const [name, p] of model.namedParameters()) {
    if (!inNorm.has(p) && !noDecayByName(name)) names.push(name)
  }
  return names
}
