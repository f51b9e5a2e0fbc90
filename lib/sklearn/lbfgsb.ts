// scipy.optimize.minimize(method="L-BFGS-B") for problems without bounds, the
// path scikit-learn's LogisticRegression(solver="lbfgs") takes. It follows
// L-BFGS-B 3.0's decisions one for one — the first step of length 1 along
// -g, the Moré–Thuente line search with L-BFGS-B's constants (ftol 1e-3,
// gtol 0.9, xtol 0.1, at most maxls evaluations), the skipped-update rule
// (s·y <= eps·(-g·s)), restarts with an empty memory when a line search
// fails, and the stopping tests in the same order (projected gradient, then
// relative decrease of f, then scipy's iteration count) — so it stops at the
// iteration scipy stops at, with the same iterate. Why this matters: with
// sklearn's tol 1e-4 the fit stops after a handful of iterations, 1e-3 to 1e-2
// (relative) away from the exact optimum; matching sklearn means matching the path.
//
// Without bounds, L-BFGS-B's Cauchy point plus subspace minimisation is the
// full quasi-Newton step x - B⁻¹g, B the compact limited-memory BFGS matrix
// with B0 = θI; its inverse is the two-loop recursion's H with H0 = I/θ over
// the same (s, y) pairs, which is what is computed here (equal up to rounding).

const EPS = 2.220446049250313e-16

export interface LbfgsbOptions {
  /** Number of (s, y) pairs kept (scipy's maxcor). Default 10. */
  maxcor?: number
  /** Stop when (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol. Default 2.2e-9. */
  ftol?: number
  /** Stop when max |g_i| <= gtol. Default 1e-5. */
  gtol?: number
  /** Iterations (accepted steps). Default 15000. */
  maxiter?: number
  /** Function evaluations (checked after each iteration, as scipy). Default 15000. */
  maxfun?: number
  /** Evaluations per line search. Default 20. */
  maxls?: number
}

export interface LbfgsbResult {
  x: Float64Array
  fun: number
  jac: Float64Array
  /** Iterations, as scipy's OptimizeResult.nit (sklearn's n_iter_). */
  nit: number
  nfev: number
  /** 0 converged, 1 iteration / evaluation limit, 2 abnormal line-search termination. */
  status: 0 | 1 | 2
  success: boolean
  message: string
}

/** f and its gradient at x (the gradient array is the caller's to keep). */
export type Objective = (x: Float64Array) => { f: number; g: Float64Array }

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * b[i]
  return s
}

function maxAbs(a: Float64Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i])
    if (v > m || Number.isNaN(v)) m = v
  }
  return m
}

type SearchStatus = 'fg' | 'converged' | 'warning' | 'error'

/**
 * The Moré–Thuente line search (MINPACK-2's dcsrch): finds a step satisfying
 * f(stp) <= f(0) + ftol·stp·f'(0) and |f'(stp)| <= gtol·|f'(0)| by safeguarded
 * cubic / quadratic interpolation. Call start(), then step(f, g) after each
 * evaluation at `stp` until it says converged or warning.
 */
class MoreThuente {
  stp: number
  private bracketed = false
  private stage = 1
  private ginit = 0
  private gtest = 0
  private finit = 0
  private stx = 0
  private fx = 0
  private gx = 0
  private sty = 0
  private fy = 0
  private gy = 0
  private stmin = 0
  private stmax = 0
  private width = 0
  private width1 = 0

  constructor(stp: number, private readonly ftol: number, private readonly gtol: number, private readonly xtol: number,
    private readonly stpmin: number, private readonly stpmax: number) {
    this.stp = stp
  }

  start(f: number, g: number): SearchStatus {
    if (this.stp < this.stpmin || this.stp > this.stpmax || g >= 0) return 'error'
    this.bracketed = false
    this.stage = 1
    this.finit = f
    this.ginit = g
    this.gtest = this.ftol * g
    this.width = this.stpmax - this.stpmin
    this.width1 = this.width / 0.5
    this.stx = 0
    this.fx = f
    this.gx = g
    this.sty = 0
    this.fy = f
    this.gy = g
    this.stmin = 0
    this.stmax = this.stp + 4 * this.stp
    return 'fg'
  }

  step(f: number, g: number): SearchStatus {
    const ftest = this.finit + this.stp * this.gtest
    if (this.stage === 1 && f <= ftest && g >= 0) this.stage = 2
    let status: SearchStatus | null = null
    if (this.bracketed && (this.stp <= this.stmin || this.stp >= this.stmax)) status = 'warning'
    if (this.bracketed && this.stmax - this.stmin <= this.xtol * this.stmax) status = 'warning'
    if (this.stp === this.stpmax && f <= ftest && g <= this.gtest) status = 'warning'
    if (this.stp === this.stpmin && (f > ftest || g >= this.gtest)) status = 'warning'
    if (f <= ftest && Math.abs(g) <= this.gtol * -this.ginit) status = 'converged'
    if (status) return status

    if (this.stage === 1 && f <= this.fx && f > ftest) {
      // Work on the modified function ψ(stp) = f(stp) - f(0) - ftol·stp·f'(0) until a step gives ψ <= 0 and f' >= 0.
      const gt = this.gtest
      const r = interpolate(this.stx, this.fx - this.stx * gt, this.gx - gt, this.sty, this.fy - this.sty * gt, this.gy - gt,
        this.stp, f - this.stp * gt, g - gt, this.bracketed, this.stmin, this.stmax)
      this.take(r)
      this.fx = r.fx + this.stx * gt
      this.fy = r.fy + this.sty * gt
      this.gx = r.dx + gt
      this.gy = r.dy + gt
    } else {
      const r = interpolate(this.stx, this.fx, this.gx, this.sty, this.fy, this.gy, this.stp, f, g, this.bracketed, this.stmin, this.stmax)
      this.take(r)
      this.fx = r.fx
      this.fy = r.fy
      this.gx = r.dx
      this.gy = r.dy
    }
    if (this.bracketed) {
      // Force a bisection when the interval does not shrink enough.
      if (Math.abs(this.sty - this.stx) >= 0.66 * this.width1) this.stp = this.stx + 0.5 * (this.sty - this.stx)
      this.width1 = this.width
      this.width = Math.abs(this.sty - this.stx)
      this.stmin = Math.min(this.stx, this.sty)
      this.stmax = Math.max(this.stx, this.sty)
    } else {
      this.stmin = this.stp + 1.1 * (this.stp - this.stx)
      this.stmax = this.stp + 4 * (this.stp - this.stx)
    }
    this.stp = Math.min(Math.max(this.stp, this.stpmin), this.stpmax)
    if (this.bracketed && (this.stp <= this.stmin || this.stp >= this.stmax || this.stmax - this.stmin <= this.xtol * this.stmax)) {
      this.stp = this.stx
    }
    return 'fg'
  }

  private take(r: Interpolated): void {
    this.stx = r.stx
    this.sty = r.sty
    this.stp = r.stp
    this.bracketed = r.bracketed
  }
}

interface Interpolated { stx: number; fx: number; dx: number; sty: number; fy: number; dy: number; stp: number; bracketed: boolean }

/**
 * One safeguarded step of the Moré–Thuente search (MINPACK-2's dcstep): from
 * the best step so far (stx), the other end of the interval (sty) and the
 * trial (stp), with values f and derivatives d, the next trial step and the
 * updated interval. The four cases are those of Moré and Thuente (1994).
 */
function interpolate(stx: number, fx: number, dx: number, sty: number, fy: number, dy: number,
  stp: number, fp: number, dp: number, bracketed: boolean, stpmin: number, stpmax: number): Interpolated {
  const sgnd = dp * (dx / Math.abs(dx))
  let stpf: number
  if (fp > fx) {
    // Case 1: higher value. The minimum is bracketed; take the cubic step if closer to stx, else the average.
    const theta = 3 * (fx - fp) / (stp - stx) + dx + dp
    const s = Math.max(Math.abs(theta), Math.abs(dx), Math.abs(dp))
    let gamma = s * Math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
    if (stp < stx) gamma = -gamma
    const p = (gamma - dx) + theta
    const q = ((gamma - dx) + gamma) + dp
    const stpc = stx + (p / q) * (stp - stx)
    const stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2) * (stp - stx)
    stpf = Math.abs(stpc - stx) < Math.abs(stpq - stx) ? stpc : stpc + (stpq - stpc) / 2
    bracketed = true
  } else if (sgnd < 0) {
    // Case 2: lower value, derivatives of opposite sign. Bracketed; the step farther from stp of cubic and secant.
    const theta = 3 * (fx - fp) / (stp - stx) + dx + dp
    const s = Math.max(Math.abs(theta), Math.abs(dx), Math.abs(dp))
    let gamma = s * Math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
    if (stp > stx) gamma = -gamma
    const p = (gamma - dp) + theta
    const q = ((gamma - dp) + gamma) + dx
    const stpc = stp + (p / q) * (stx - stp)
    const stpq = stp + (dp / (dp - dx)) * (stx - stp)
    stpf = Math.abs(stpc - stp) > Math.abs(stpq - stp) ? stpc : stpq
    bracketed = true
  } else if (Math.abs(dp) < Math.abs(dx)) {
    // Case 3: lower value, same sign, the derivative decreases in magnitude.
    const theta = 3 * (fx - fp) / (stp - stx) + dx + dp
    const s = Math.max(Math.abs(theta), Math.abs(dx), Math.abs(dp))
    let gamma = s * Math.sqrt(Math.max(0, (theta / s) ** 2 - (dx / s) * (dp / s)))
    if (stp > stx) gamma = -gamma
    const p = (gamma - dp) + theta
    const q = (gamma + (dx - dp)) + gamma
    const r = p / q
    let stpc: number
    if (r < 0 && gamma !== 0) stpc = stp + r * (stx - stp)
    else if (stp > stx) stpc = stpmax
    else stpc = stpmin
    const stpq = stp + (dp / (dp - dx)) * (stx - stp)
    if (bracketed) {
      stpf = Math.abs(stpc - stp) < Math.abs(stpq - stp) ? stpc : stpq
      stpf = stp > stx ? Math.min(stp + 0.66 * (sty - stp), stpf) : Math.max(stp + 0.66 * (sty - stp), stpf)
    } else {
      stpf = Math.abs(stpc - stp) > Math.abs(stpq - stp) ? stpc : stpq
      stpf = Math.max(stpmin, Math.min(stpmax, stpf))
    }
  } else if (bracketed) {
    // Case 4: lower value, same sign, the derivative does not decrease: cubic step towards sty.
    const theta = 3 * (fp - fy) / (sty - stp) + dy + dp
    const s = Math.max(Math.abs(theta), Math.abs(dy), Math.abs(dp))
    let gamma = s * Math.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
    if (stp > sty) gamma = -gamma
    const p = (gamma - dp) + theta
    const q = ((gamma - dp) + gamma) + dy
    stpf = stp + (p / q) * (sty - stp)
  } else {
    stpf = stp > stx ? stpmax : stpmin
  }
  // The new interval: the end with the lower value stays the best step.
  if (fp > fx) {
    sty = stp
    fy = fp
    dy = dp
  } else {
    if (sgnd < 0) {
      sty = stx
      fy = fx
      dy = dx
    }
    stx = stp
    fx = fp
    dx = dp
  }
  return { stx, fx, dx, sty, fy, dy, stp: stpf, bracketed }
}

/** The limited memory: the last `m` (s, y) pairs, oldest first, and the scaling θ = y·y / s·y of the newest. */
class Memory {
  s: Float64Array[] = []
  y: Float64Array[] = []
  sy: number[] = []
  theta = 1

  constructor(private readonly m: number) {}

  get size(): number {
    return this.s.length
  }

  reset(): void {
    this.s = []
    this.y = []
    this.sy = []
    this.theta = 1
  }

  push(s: Float64Array, y: Float64Array, sy: number, yy: number): void {
    if (this.s.length === this.m) {
      this.s.shift()
      this.y.shift()
      this.sy.shift()
    }
    this.s.push(s)
    this.y.push(y)
    this.sy.push(sy)
    this.theta = yy / sy
  }

  /** -H·g by the two-loop recursion with H0 = I/θ. */
  direction(g: Float64Array): Float64Array {
    const k = this.s.length
    const q = Float64Array.from(g, (v) => -v)
    const alpha = new Float64Array(k)
    for (let i = k - 1; i >= 0; i--) {
      alpha[i] = dot(this.s[i], q) / this.sy[i]
      const yi = this.y[i]
      for (let j = 0; j < q.length; j++) q[j] -= alpha[i] * yi[j]
    }
    const h0 = 1 / this.theta
    for (let j = 0; j < q.length; j++) q[j] *= h0
    for (let i = 0; i < k; i++) {
      const beta = dot(this.y[i], q) / this.sy[i]
      const si = this.s[i]
      for (let j = 0; j < q.length; j++) q[j] += (alpha[i] - beta) * si[j]
    }
    return q
  }
}

export function minimizeLbfgsb(fun: Objective, x0: ArrayLike<number>, options: LbfgsbOptions = {}): LbfgsbResult {
  const m = options.maxcor ?? 10
  const ftol = options.ftol ?? 2.2204460492503131e-9
  const pgtol = options.gtol ?? 1e-5
  const maxiter = options.maxiter ?? 15000
  const maxfun = options.maxfun ?? 15000
  const maxls = options.maxls ?? 20
  if (!(maxls > 0)) throw new RangeError('minimizeLbfgsb: maxls must be positive')
  if (!(m > 0)) throw new RangeError('minimizeLbfgsb: maxcor must be positive')
  if (!(ftol >= 0) || !(pgtol >= 0)) throw new RangeError('minimizeLbfgsb: ftol and gtol must be >= 0')
  const n = x0.length
  if (n === 0) throw new RangeError('minimizeLbfgsb: x0 is empty')
  // scipy passes factr = ftol / eps and L-BFGS-B multiplies it back.
  const tol = (ftol / EPS) * EPS

  let nfev = 0
  const evaluate = (x: Float64Array) => {
    nfev++
    const { f, g } = fun(x)
    if (g.length !== n) throw new RangeError(`minimizeLbfgsb: the gradient has ${g.length} entries for ${n} variables`)
    return { f, g: Float64Array.from(g) }
  }
  const done = (x: Float64Array, f: number, g: Float64Array, nit: number, status: 0 | 1 | 2, message: string): LbfgsbResult =>
    ({ x, fun: f, jac: g, nit, nfev, status, success: status === 0, message })

  let x = Float64Array.from(x0)
  let { f, g } = evaluate(x)
  if (maxAbs(g) <= pgtol) return done(x, f, g, 0, 0, 'CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL')

  const memory = new Memory(m)
  let iter = 0 // L-BFGS-B's count, which decides the first step's length
  let nit = 0 // scipy's count of accepted iterates
  for (;;) {
    // The quasi-Newton point z; with an empty memory (θ = 1) the Cauchy point x - g.
    let z: Float64Array
    if (memory.size === 0) {
      z = Float64Array.from(x, (xi, i) => xi + -g[i])
    } else {
      const step = memory.direction(g)
      z = Float64Array.from(x, (xi, i) => xi + step[i])
    }
    const d = Float64Array.from(z, (zi, i) => zi - x[i])

    // Line search from (x, f, g) along d.
    const dnorm = Math.sqrt(dot(d, d))
    const stpmx = 1e10
    const search = new MoreThuente(iter === 0 ? Math.min(1 / dnorm, stpmx) : 1, 1e-3, 0.9, 0.1, 0, stpmx)
    const xOld = x, gOld = g, fOld = f
    const gdOld = dot(g, d)
    let gd = gdOld
    let failed = gdOld >= 0
    let status: SearchStatus = failed ? 'error' : search.start(f, gdOld)
    let evaluations = 0
    while (!failed && status === 'fg') {
      if (evaluations >= maxls) {
        failed = true
        break
      }
      evaluations++
      x = search.stp === 1 ? Float64Array.from(z) : Float64Array.from(xOld, (t, i) => search.stp * d[i] + t)
      ;({ f, g } = evaluate(x))
      gd = dot(g, d)
      status = search.step(f, gd)
    }
    if (failed || status === 'error') {
      x = xOld
      g = gOld
      f = fOld
      if (memory.size === 0) return done(x, f, g, nit, 2, 'ABNORMAL: ')
      // Start again from steepest descent with an empty memory.
      memory.reset()
      continue
    }

    iter++
    nit++
    if (nit >= maxiter) return done(x, f, g, nit, 1, 'STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT')
    if (nfev > maxfun) return done(x, f, g, nit, 1, 'STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT')
    if (maxAbs(g) <= pgtol) return done(x, f, g, nit, 0, 'CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL')
    if (fOld - f <= tol * Math.max(Math.abs(fOld), Math.abs(f), 1)) {
      return done(x, f, g, nit, 0, 'CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH')
    }

    // The new pair: s = stp·d, y = g - g_old, s·y from the directional derivatives as L-BFGS-B takes it.
    const stp = search.stp
    const y = Float64Array.from(g, (gi, i) => gi - gOld[i])
    const yy = dot(y, y)
    let sy: number, ddum: number
    let s: Float64Array
    if (stp === 1) {
      sy = gd - gdOld
      ddum = -gdOld
      s = d
    } else {
      sy = (gd - gdOld) * stp
      ddum = -gdOld * stp
      s = Float64Array.from(d, (v) => v * stp)
    }
    if (sy <= EPS * ddum) continue // not positive enough: keep the old memory
    memory.push(s, y, sy, yy)
  }
}
