// What a person watching the run sees (TrainingArguments.disableTqdm turns it
// off). On a terminal: a training bar redrawn with a smoothed loss, the
// learning rate, it/s and ETA from the first step; an evaluation bar while
// evaluating; each evaluation's metrics printed above the bars as they
// arrive. Piped (CI logs, files): plain lines, one per logging step and one
// per evaluation, no carriage returns. At the end, a compact summary table.
import cliProgress from 'cli-progress'
import type { LogEntry } from './callbacks.js'

/** Where the output goes: stderr, or anything with write() (tests). */
export interface ProgressStream {
  write(text: string): unknown
  isTTY?: boolean
}

/** Bias-corrected exponential moving average (as Adam's moments): the first value shows as itself. */
export class Smoothed {
  private m = 0
  private weight = 0
  constructor(private readonly beta: number) {}

  add(x: number): void {
    this.m = this.beta * this.m + (1 - this.beta) * x
    this.weight = this.beta * this.weight + (1 - this.beta)
  }

  get value(): number | null {
    return this.weight > 0 ? this.m / this.weight : null
  }
}

/** 45s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

const fmtLoss = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(4))
const fmtLr = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toExponential(2))

/** Metric keys as people read them: evalF1 → f1 (the runtime / throughput keys are left out). */
export function metricsForDisplay(metrics: Record<string, number>): Array<[string, number]> {
  const shown: Array<[string, number]> = []
  for (const [k, v] of Object.entries(metrics)) {
    if (k === 'epoch' || k === 'step' || /(Runtime|PerSecond)$/.test(k)) continue
    const name = k.replace(/^(eval|test)/, '')
    shown.push([name.charAt(0).toLowerCase() + name.slice(1), v])
  }
  return shown
}

interface TrainingView {
  total: number
  step: number
  epoch: number
  lr: number | null
  lastLoss: number | null
  loss: Smoothed
  /** Smoothed seconds per step, from the steps run in this process. */
  stepTime: Smoothed
  lastStepAt: number
  startedAt: number
  lastLineAt: number
}

export class Progress {
  private readonly stream: ProgressStream
  private readonly tty: boolean
  private multibar: cliProgress.MultiBar | null = null
  private trainBar: cliProgress.SingleBar | null = null
  private evalBar: cliProgress.SingleBar | null = null
  private training: TrainingView | null = null
  private evalStartedAt = 0
  private evalRows = 0

  constructor(private readonly enabled: boolean, stream: ProgressStream = process.stderr, private readonly now: () => number = () => performance.now()) {
    this.stream = stream
    this.tty = stream.isTTY === true
  }

  /** Training of `total` optimizer steps begins (at `step` when resuming). */
  startTraining(total: number, step: number, epoch: number): void {
    const t = this.now()
    this.training = { total, step, epoch, lr: null, lastLoss: null, loss: new Smoothed(0.9), stepTime: new Smoothed(0.9), lastStepAt: t, startedAt: t, lastLineAt: t }
    if (!this.enabled || !this.tty) return
    this.trainBar = this.bars().create(total, step, this.trainPayload())
  }

  /**
   * An optimizer step finished. `loss` is that step's loss when it was read
   * (every step on the CPU; on CUDA about once a second, to avoid a
   * synchronisation per step), `lr` the rate it used.
   */
  step(step: number, epoch: number, values: { loss?: number | null; lr: number }): void {
    const v = this.training
    if (!v) return
    const t = this.now()
    v.stepTime.add((t - v.lastStepAt) / 1000 / Math.max(1, step - v.step))
    v.lastStepAt = t
    v.step = step
    v.epoch = epoch
    v.lr = values.lr
    if (values.loss !== undefined && values.loss !== null && Number.isFinite(values.loss)) {
      v.lastLoss = values.loss
      v.loss.add(values.loss)
    }
    if (!this.enabled) return
    if (this.trainBar) {
      this.trainBar.update(step, this.trainPayload())
    } else if (t - v.lastLineAt >= 60_000) {
      // Piped and nothing printed for a minute (logging steps far apart): one line to say where the run is.
      this.line(`train ${this.position(v.step, v.epoch)} | loss ${fmtLoss(v.loss.value)} (smoothed) | lr ${fmtLr(v.lr)} | ${this.speed()}`)
    }
  }

  /** Evaluations and checkpoints are not steps: the next step is timed from here. */
  resumeTiming(): void {
    if (this.training) this.training.lastStepAt = this.now()
  }

  /** A logging step's entry (loss averaged since the last one, grad norm, rate): a line when piped. */
  logged(entry: LogEntry): void {
    const v = this.training
    if (!this.enabled || !v || this.trainBar || entry.loss === undefined) return
    const norm = entry.gradNorm !== undefined ? ` | grad_norm ${entry.gradNorm.toPrecision(4)}` : ''
    this.line(`train ${this.position(entry.step, entry.epoch)} | loss ${fmtLoss(entry.loss)} | lr ${fmtLr(entry.learningRate)}${norm} | ${this.speed(entry.step)}`)
  }

  startEval(batches: number, rows: number, label: 'eval' | 'predict'): void {
    this.evalStartedAt = this.now()
    this.evalRows = rows
    if (!this.enabled || !this.tty) return
    this.evalBar = this.bars().create(batches, 0, { label: label.padEnd(5), fields: `${rows} rows` })
  }

  evalBatch(done: number): void {
    this.evalBar?.update(done)
  }

  /** Evaluation finished: its metrics, printed at once (above the bars on a terminal). */
  endEval(metrics: Record<string, number> | null, at: { step: number; epoch: number } | null): void {
    if (this.evalBar) {
      this.multibar?.remove(this.evalBar)
      this.evalBar = null
    }
    // Outside training the bars close first: a line logged above them would be dropped with them.
    if (!this.training) this.closeBars()
    if (this.enabled && metrics) {
      const seconds = (this.now() - this.evalStartedAt) / 1000
      const where = at && at.step > 0 ? ` step ${at.step} (epoch ${at.epoch.toFixed(2)})` : ''
      const shown = metricsForDisplay(metrics).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`).join(' | ')
      this.line(`eval${where} | ${shown} | ${this.evalRows} rows in ${seconds.toFixed(1)}s`)
    }
  }

  /** Training ended: the bars close and the summary table follows. */
  endTraining(history: LogEntry[], summary: { trainLoss: number; runtime: number; steps: number }): void {
    if (this.trainBar && this.training) this.trainBar.update(this.training.step, this.trainPayload())
    this.closeBars()
    this.training = null
    if (!this.enabled) return
    this.stream.write(summaryTable(history, summary) + '\n')
  }

  /** Closes any bar (an error ends the run). */
  stop(): void {
    this.closeBars()
    this.training = null
  }

  private bars(): cliProgress.MultiBar {
    if (!this.multibar) {
      this.multibar = new cliProgress.MultiBar({
        format: '{label} |{bar}| {value}/{total} | {fields}',
        stream: this.stream as NodeJS.WriteStream,
        hideCursor: true,
        clearOnComplete: false,
        barsize: 24,
        fps: 8,
        autopadding: true,
      }, cliProgress.Presets.shades_classic)
    }
    return this.multibar
  }

  private closeBars(): void {
    this.multibar?.stop()
    this.multibar = null
    this.trainBar = null
    this.evalBar = null
  }

  private trainPayload(): { label: string; fields: string } {
    const v = this.training!
    return { label: 'train', fields: `epoch ${v.epoch.toFixed(2)} | loss ${fmtLoss(v.loss.value)} | lr ${fmtLr(v.lr)} | ${this.speed()}` }
  }

  private position(step: number, epoch: number): string {
    return `step ${step}/${this.training!.total} (epoch ${epoch.toFixed(2)})`
  }

  /** it/s and ETA from the smoothed step time; "--" before the first step has been timed. */
  private speed(step = this.training!.step): string {
    const v = this.training!
    const perStep = v.stepTime.value
    const elapsed = formatDuration((this.now() - v.startedAt) / 1000)
    if (perStep === null || perStep <= 0 || step > v.total) return `${perStep ? (1 / perStep).toFixed(2) : '-'} it/s | ${elapsed} | eta --`
    return `${(1 / perStep).toFixed(2)} it/s | ${elapsed} | eta ${formatDuration((v.total - step) * perStep)}`
  }

  private line(text: string): void {
    if (this.training) this.training.lastLineAt = this.now()
    if (this.multibar) this.multibar.log(text + '\n')
    else this.stream.write(text + '\n')
  }
}

/**
 * The evaluations of the run, one row each, with the train loss logged last
 * before them; then the run's totals.
 */
export function summaryTable(history: LogEntry[], summary: { trainLoss: number; runtime: number; steps: number }): string {
  const evals = history.filter((e) => Object.keys(e).some((k) => /^eval[A-Z]/.test(k) && !/(Runtime|PerSecond)$/.test(k)))
  const metricNames = [...new Set(evals.flatMap((e) => Object.keys(e).filter((k) => /^eval[A-Z]/.test(k) && !/(Runtime|PerSecond)$/.test(k))))]
  const lines: string[] = []
  if (evals.length) {
    const header = ['step', 'epoch', 'train loss', ...metricNames.map((k) => metricsForDisplay({ [k]: 0 })[0][0].replace(/^loss$/, 'eval loss'))]
    const rows = evals.map((e) => {
      const before = history.filter((h) => h.loss !== undefined && h.step <= e.step).pop()
      return [String(e.step), e.epoch.toFixed(2), fmtLoss(before?.loss), ...metricNames.map((k) => (e[k] === undefined ? '-' : e[k].toFixed(4)))]
    })
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
    const fmt = (cells: string[]) => '  ' + cells.map((c, i) => c.padStart(widths[i])).join('  ')
    lines.push(fmt(header), ...rows.map(fmt))
  }
  const rate = summary.runtime > 0 ? ` (${(summary.steps / summary.runtime).toFixed(2)} it/s)` : ''
  lines.push(`  train loss ${fmtLoss(summary.trainLoss)} over ${summary.steps} steps in ${formatDuration(summary.runtime)}${rate}`)
  return lines.join('\n')
}
