// A plain counting progress bar (a step count with optional loss / lr), used by
// SetFit's phases and sentence-transformers' encode; the Trainer has its own
// richer display in progress.ts.
import cliProgress from 'cli-progress'

export class CountProgress {
  private bar: cliProgress.SingleBar | null = null
  private lastLine = 0
  private readonly start = Date.now()

  constructor(private readonly total: number, private readonly enabled: boolean, private readonly label = 'train') {
    if (!enabled) return
    if (process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar({
        format: `${label} |{bar}| {value}/{total} | loss {loss} | lr {lr} | {rate} it/s | eta {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
      }, cliProgress.Presets.shades_classic)
      this.bar.start(total, 0, { loss: '-', lr: '-', rate: '-' })
    }
  }

  update(step: number, info: { loss?: number; lr?: number }): void {
    if (!this.enabled) return
    const elapsed = (Date.now() - this.start) / 1000
    const rate = step / Math.max(elapsed, 1e-9)
    const fields = {
      loss: info.loss === undefined ? '-' : info.loss.toFixed(4),
      lr: info.lr === undefined ? '-' : info.lr.toExponential(2),
      rate: rate.toFixed(2),
    }
    if (this.bar) {
      this.bar.update(step, fields)
      return
    }
    // Not a terminal: a line every 30 s and at the end.
    const now = Date.now()
    if (now - this.lastLine >= 30_000 || step === this.total) {
      this.lastLine = now
      const eta = rate > 0 ? (this.total - step) / rate : 0
      process.stderr.write(`${this.label}: step ${step}/${this.total} loss ${fields.loss} lr ${fields.lr} ${fields.rate} it/s eta ${eta.toFixed(0)}s\n`)
    }
  }

  stop(): void {
    this.bar?.stop()
    this.bar = null
  }
}
