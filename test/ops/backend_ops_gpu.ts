// placeholder
import type { OpCase, PerfCase, Verdict } from './backend_ops.js'
export function PERF_CASES(_: { rehearsal: boolean }): PerfCase[] { return [] }
export function deviceChecks(_: { device: number; rehearsal: boolean; quick: boolean }): Array<{ op: string; label: string; verdict: Verdict }> { return [] }
export type { OpCase }
