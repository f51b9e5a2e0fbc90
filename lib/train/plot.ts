// Loss and metric curves as a dependency-free SVG: one panel per series,
// x = global step.
import { atomicWriteFile } from '../hub/safetensors.js'
import type { LogEntry } from './callbacks.js'

function panel(title: string, points: Array<[number, number]>, x0: number, y0: number, w: number, h: number): string {
  if (points.length === 0) return ''
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1])
  const [xmin, xmax] = [Math.min(...xs), Math.max(...xs)]
  let [ymin, ymax] = [Math.min(...ys), Math.max(...ys)]
  if (ymin === ymax) { ymin -= 0.5; ymax += 0.5 }
  const sx = (x: number) => x0 + 40 + ((x - xmin) / Math.max(1e-12, xmax - xmin)) * (w - 60)
  const sy = (y: number) => y0 + h - 30 - ((y - ymin) / (ymax - ymin)) * (h - 60)
  const path = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')
  const dots = points.length <= 60 ? points.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2"/>`).join('') : ''
  return `<g font-family="sans-serif" font-size="11">
<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="white" stroke="#ccc"/>
<text x="${x0 + w / 2}" y="${y0 + 16}" text-anchor="middle" font-size="13">${title}</text>
<text x="${x0 + 4}" y="${sy(ymax) + 4}">${ymax.toPrecision(3)}</text>
<text x="${x0 + 4}" y="${sy(ymin) + 4}">${ymin.toPrecision(3)}</text>
<text x="${sx(xmin)}" y="${y0 + h - 10}">${xmin}</text>
<text x="${sx(xmax)}" y="${y0 + h - 10}" text-anchor="end">step ${xmax}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${path}"/><g fill="#1f77b4">${dots}</g></g>`
}

/** Writes curves of every numeric series in the log history (loss, evalLoss, evalF1, …). */
export function writeCurvesSvg(path: string, history: LogEntry[]): void {
  const series = new Map<string, Array<[number, number]>>()
  for (const entry of history) {
    for (const [k, v] of Object.entries(entry)) {
      if (k === 'step' || k === 'epoch' || /Runtime|PerSecond|learningRate|gradNorm/.test(k) || !Number.isFinite(v)) continue
      if (!series.has(k)) series.set(k, [])
      series.get(k)!.push([entry.step, v])
    }
  }
  const names = [...series.keys()]
  const w = 420, h = 240, cols = 2
  const rows = Math.max(1, Math.ceil(names.length / cols))
  const body = names.map((n, i) => panel(n, series.get(n)!, (i % cols) * w, Math.floor(i / cols) * h, w, h)).join('\n')
  atomicWriteFile(path, `<svg xmlns="http://www.w3.org/2000/svg" width="${cols * w}" height="${rows * h}">\n${body}\n</svg>\n`)
}
