/**
 * Star-pattern matching between a frame and the reference, independent of rotation (any angle,
 * including the 180° of a meridian flip), small scale changes and translation:
 *
 * 1. Triangles from each bright star and pairs of its nearest neighbours (local triangles survive a
 *    partial overlap of the fields). A triangle's shape is described by the ratios of its sorted sides
 *    (b/c, a/c) — invariant under similarity — and its vertices are labelled by the side opposite, so a
 *    matched triangle pairs three stars. Its orientation (sign of the cross product) tells a mirrored
 *    frame from a rotated one.
 * 2. Every matched triangle votes for its three star pairs; pairs are ranked by votes.
 * 3. RANSAC over the best-voted pairs with two-pair similarity hypotheses (deterministic: hypotheses are
 *    enumerated in vote order, no random sampling), inliers within `tolerancePx`.
 * 4. Refinement: all detected stars are paired to their nearest reference star under the current
 *    transform, the requested model is fitted by least squares, and pairs beyond 3·RMS (and
 *    `tolerancePx`) are dropped; three rounds. The RMS of the final residuals is reported.
 */
import { apply, fitTransform, MIN_PAIRS, type Point, type TransformModel } from "./geometry.js";

export interface MatchOptions {
  model?: TransformModel;
  /** Brightest stars used for triangles (default 40). */
  brightest?: number;
  /** Neighbours per star forming triangles (default 7). */
  neighbours?: number;
  /** Maximal distance between a transformed star and its partner, in pixels (default 2). */
  tolerancePx?: number;
  /** Tolerance on the triangle side ratios (default 0.006). */
  shapeTolerance?: number;
  /** Fewest inlier pairs accepted (default 6; more where the star density makes chance pairs likely). */
  minMatches?: number;
}

export type MatchResult =
  | { ok: true; matrix: number[]; rmsPx: number; medianPx: number; pairs: number; src: Point[]; dst: Point[] }
  | { ok: false; reason: string; mirrored?: boolean };

interface Triangle {
  r1: number; // b / c
  r2: number; // a / c
  v: [number, number, number]; // star indices opposite the shortest, middle, longest side
  ccw: boolean;
}

function triangles(stars: readonly Point[], k: number): Triangle[] {
  const n = stars.length;
  const seen = new Set<string>();
  const out: Triangle[] = [];
  for (let i = 0; i < n; i++) {
    const nb = stars
      .map((p, j) => ({ j, d: Math.hypot(p.x - stars[i]!.x, p.y - stars[i]!.y) }))
      .filter((e) => e.j !== i)
      .sort((a, b) => a.d - b.d || a.j - b.j)
      .slice(0, k);
    for (let a = 0; a < nb.length; a++) {
      for (let b = a + 1; b < nb.length; b++) {
        const ids = [i, nb[a]!.j, nb[b]!.j].sort((x, y) => x - y) as [number, number, number];
        const key = ids.join(",");
        if (seen.has(key)) continue;
        seen.add(key);
        const [p, q, r] = ids.map((id) => stars[id]!) as [Point, Point, Point];
        // Sides opposite each vertex.
        const sides = [
          { len: Math.hypot(q.x - r.x, q.y - r.y), opp: ids[0] },
          { len: Math.hypot(p.x - r.x, p.y - r.y), opp: ids[1] },
          { len: Math.hypot(p.x - q.x, p.y - q.y), opp: ids[2] },
        ].sort((x, y) => x.len - y.len);
        const [sa, sb, sc] = sides as [{ len: number; opp: number }, { len: number; opp: number }, { len: number; opp: number }];
        if (sc.len < 8 || sa.len < 0.1 * sc.len) continue; // tiny or needle triangles are unstable
        // Distinct side lengths are needed to label the vertices reliably.
        if (sb.len - sa.len < 0.02 * sc.len || sc.len - sb.len < 0.02 * sc.len) continue;
        const A = stars[sa.opp]!,
          B = stars[sb.opp]!,
          C = stars[sc.opp]!;
        const cross = (B.x - A.x) * (C.y - A.y) - (B.y - A.y) * (C.x - A.x);
        out.push({ r1: sb.len / sc.len, r2: sa.len / sc.len, v: [sa.opp, sb.opp, sc.opp], ccw: cross > 0 });
      }
    }
  }
  return out.sort((a, b) => a.r1 - b.r1);
}

/** Match `stars` (a frame, brightest first) to `ref` (the reference, brightest first). */
export function matchStars(stars: readonly Point[], ref: readonly Point[], options: MatchOptions = {}): MatchResult {
  const model = options.model ?? "similarity";
  const nBright = options.brightest ?? 40;
  const tol = options.tolerancePx ?? 2;
  const shapeTol = options.shapeTolerance ?? 0.006;
  const minMatches = Math.max(options.minMatches ?? 6, MIN_PAIRS[model] + 2);
  if (stars.length < 3)
    return { ok: false, reason: `only ${stars.length} stars detected (a frame of blank sky, clouds or a wrong exposure?)` };
  if (ref.length < 3) return { ok: false, reason: `only ${ref.length} stars in the reference frame` };
  const fs = stars.slice(0, nBright),
    rs = ref.slice(0, nBright);
  const tf = triangles(fs, options.neighbours ?? 7),
    tr = triangles(rs, options.neighbours ?? 7);
  // Vote for star pairs; count orientation agreement to detect mirrored frames.
  const votes = new Map<number, number>();
  let same = 0,
    flipped = 0;
  let lo = 0;
  for (const t of tf) {
    while (lo < tr.length && tr[lo]!.r1 < t.r1 - shapeTol) lo++;
    for (let j = lo; j < tr.length && tr[j]!.r1 <= t.r1 + shapeTol; j++) {
      const u = tr[j]!;
      if (Math.abs(u.r2 - t.r2) > shapeTol) continue;
      if (u.ccw !== t.ccw) {
        flipped++; // a mirror image of the pattern: counted, but it does not vote for a rotation
        continue;
      }
      same++;
      for (let k = 0; k < 3; k++) {
        const key = t.v[k]! * 65536 + u.v[k]!;
        votes.set(key, (votes.get(key) ?? 0) + 1);
      }
    }
  }
  const ranked = [...votes.entries()]
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .slice(0, 60)
    .map(([key]) => ({ s: Math.floor(key / 65536), r: key % 65536 }));
  if (flipped >= 10 && flipped > 3 * same)
    return {
      ok: false,
      mirrored: true,
      reason: "the frame is mirrored relative to the reference (flipped optics or a wrong FLIP setting); it is not registered",
    };
  if (ranked.length < 2)
    return { ok: false, reason: `no star pattern in common with the reference (${stars.length} stars detected; a different field?)` };
  // Deterministic RANSAC over similarity hypotheses from pairs of the best-voted pairs.
  let best: { inliers: { s: number; r: number }[]; matrix: number[] } | undefined;
  const top = ranked.slice(0, 25);
  for (let i = 0; i < top.length; i++) {
    for (let j = i + 1; j < top.length; j++) {
      const a = top[i]!,
        b = top[j]!;
      if (a.s === b.s || a.r === b.r) continue;
      const m = fitTransform([fs[a.s]!, fs[b.s]!], [rs[a.r]!, rs[b.r]!], "similarity");
      if (!m) continue;
      const inliers = ranked.filter((p) => {
        const q = apply(m, fs[p.s]!);
        return Math.hypot(q.x - rs[p.r]!.x, q.y - rs[p.r]!.y) <= tol;
      });
      if (!best || inliers.length > best.inliers.length) best = { inliers, matrix: m };
    }
  }
  if (!best || best.inliers.length < 3)
    return {
      ok: false,
      reason: `no consistent star pattern in common with the reference (${stars.length} stars detected; a different field?)`,
    };
  return refineMatch(stars, ref, best.matrix, { model, tolerancePx: tol, minMatches });
}

/**
 * The smallest k with P(Poisson(λ) ≥ k) ≤ p, from the bound P(X ≥ k) ≤ P(X = k) / (1 − λ/(k + 1))
 * (the tail's terms shrink at least geometrically once k + 1 > λ), in logarithms.
 */
export function chanceCount(lambda: number, p: number): number {
  if (!(lambda > 0)) return 1;
  let logFact = 0;
  for (let k = 1; k < 1_000_000; k++) {
    logFact += Math.log(k);
    if (k + 1 <= lambda) continue;
    const logTerm = -lambda + k * Math.log(lambda) - logFact;
    if (logTerm - Math.log(1 - lambda / (k + 1)) <= Math.log(p)) return k;
  }
  return Infinity;
}

/** Distance of each pair's transformed frame star from its reference partner (px). */
function residuals(m: readonly number[], pairs: readonly { s: Point; r: Point }[]): number[] {
  return pairs.map((p) => {
    const q = apply(m, p.s);
    return Math.hypot(q.x - p.r.x, q.y - p.r.y);
  });
}

/**
 * Least-squares refinement of an initial transform: every star (the 500 brightest) is paired with its
 * nearest reference star under the current transform and the model is fitted, in rounds until the pairs
 * repeat; then the worst pairs are judged by the fit of the others, and the match must pass the chance
 * test and the shared-star share (see below). Also used to refine a WCS-derived first guess.
 */
export function refineMatch(
  stars: readonly Point[],
  ref: readonly Point[],
  initial: number[],
  options: { model?: TransformModel; tolerancePx?: number; minMatches?: number } = {},
): MatchResult {
  const model = options.model ?? "similarity";
  const tol = options.tolerancePx ?? 2;
  const minMatches = Math.max(options.minMatches ?? 6, MIN_PAIRS[model] + 2);
  // Refinement on all stars (the 500 brightest), nearest reference star found through a grid.
  const cell = Math.max(tol, 1);
  const grid = new Map<number, number[]>();
  const keyOf = (cx: number, cy: number) => cx * 100003 + cy;
  ref.forEach((p, k) => {
    const key = keyOf(Math.floor(p.x / cell), Math.floor(p.y / cell));
    const list = grid.get(key);
    if (list) list.push(k);
    else grid.set(key, [k]);
  });
  const nearest = (q: Point): [number, number] => {
    let bi = -1,
      bd = Infinity;
    const cx = Math.floor(q.x / cell),
      cy = Math.floor(q.y / cell);
    for (let dy = -1; dy <= 1; dy++)
      for (let dx = -1; dx <= 1; dx++) {
        for (const k of grid.get(keyOf(cx + dx, cy + dy)) ?? []) {
          const d = Math.hypot(q.x - ref[k]!.x, q.y - ref[k]!.y);
          if (d < bd || (d === bd && k < bi)) {
            bd = d;
            bi = k;
          }
        }
      }
    return [bi, bd];
  };
  const candidates = stars.slice(0, 500);
  let m = initial;
  let pairs: { s: Point; r: Point }[] = [];
  let rms = Infinity;
  let limit = tol;
  // Rounds until the pairs repeat (at most 8): pair within the limit, fit, and set the next limit from
  // the median residual. Residual distances of good pairs are Rayleigh-distributed (median 1.18σ), so
  // 5 × the median lies beyond 5.9σ (chance 3·10⁻⁸ per pair): a wrong pair cannot hide behind the RMS
  // it inflates itself, as it did with a limit of 3·RMS (a cloudy 12-star frame kept a 2 px pair and
  // was off by 0.5 px).
  let previous = "";
  for (let round = 0; round < 8; round++) {
    const used = new Set<number>();
    pairs = [];
    for (const s of candidates) {
      const [bi, bd] = nearest(apply(m, s));
      if (bi >= 0 && bd <= limit && !used.has(bi)) {
        used.add(bi);
        pairs.push({ s, r: ref[bi]! });
      }
    }
    if (pairs.length < minMatches) break;
    const key = pairs.map((p) => `${p.s.x},${p.r.x}`).join(";");
    if (key === previous) break;
    previous = key;
    const fit = fitTransform(
      pairs.map((p) => p.s),
      pairs.map((p) => p.r),
      model,
    );
    if (!fit) break;
    m = fit;
    const d = residuals(m, pairs).sort((a, b) => a - b);
    rms = Math.sqrt(d.reduce((a, v) => a + v * v, 0) / d.length);
    limit = Math.min(tol, Math.max(5 * d[d.length >> 1]!, 0.05));
  }
  // A wrong pair pulls the fit towards itself, so its own residual understates it (and inflates every
  // other): judge the worst pair by the fit of the others. While its residual under that fit exceeds
  // 6 × the others' median residual (≈ 7σ for Rayleigh distances) and 0.05 px, it is dropped (at most a
  // third of the pairs). A star cut by the frame edge had a 2.5 px centroid error and hid at 1.7 px.
  for (let drop = 0; pairs.length > minMatches && drop < pairs.length / 3; drop++) {
    const res = residuals(m, pairs);
    let w = 0;
    for (let k = 1; k < res.length; k++) if (res[k]! > res[w]!) w = k;
    const others = pairs.filter((_, k) => k !== w);
    const fit = fitTransform(
      others.map((p) => p.s),
      others.map((p) => p.r),
      model,
    );
    if (!fit) break;
    const out = residuals(fit, [pairs[w]!])[0]!;
    const od = residuals(fit, others).sort((a, b) => a - b);
    if (!(out > Math.max(6 * od[od.length >> 1]!, 0.05))) break;
    pairs = others;
    m = fit;
    rms = Math.sqrt(od.reduce((a, v) => a + v * v, 0) / od.length);
  }
  if (pairs.length < minMatches || !Number.isFinite(rms))
    return { ok: false, reason: `only ${pairs.length} stars matched the reference (need ${minMatches})` };
  // Never accepted by luck: could a wrong transform have collected these pairs by chance? Under a wrong
  // transform each frame star lands within r of some reference star with probability ρ·π·r² (ρ: the
  // reference's star density over its stars' extent; r: the largest residual of the accepted pairs), so
  // chance pairs are Poisson(λ = n·ρ·π·r²); the model's own minimum pairs fit exactly whatever they are.
  // The pairs beyond that minimum must be a count a chance alignment reaches with probability ≤ 10⁻⁹
  // (hundreds of hypotheses per frame). With nebula knots taken for stars, 10 pairs at 2 px in a dense
  // list were a false match with a wrong rotation; 8 pairs at 0.2 px among 12 stars are not.
  const xs = ref.map((p) => p.x),
    ys = ref.map((p) => p.y);
  const area = Math.max(1, (Math.max(...xs) - Math.min(...xs)) * (Math.max(...ys) - Math.min(...ys)));
  const dist = residuals(m, pairs).sort((a, b) => a - b);
  const rMax = Math.max(0.1, dist[dist.length - 1]!);
  const lambda = Math.min(candidates.length, ref.length) * Math.min(1, (ref.length / area) * Math.PI * rMax * rMax);
  const needed = chanceCount(lambda, 1e-9) + MIN_PAIRS[model];
  if (pairs.length < needed)
    return {
      ok: false,
      reason: `only ${pairs.length} stars matched the reference within ${rMax.toFixed(2)} px, which a chance alignment of stars this dense could give (${needed} needed); not registered`,
    };
  const share = pairs.length / Math.min(candidates.length, ref.length);
  if (share < 0.25)
    return {
      ok: false,
      reason: `only ${pairs.length} of the ${Math.min(candidates.length, ref.length)} stars the frame and the reference could share matched (${(100 * share).toFixed(0)} %, need 25 %): a false match or a different field; not registered`,
    };
  // A rotation and scale the stars do not show are not fitted: with a dozen stars of 0.2 px centroid
  // noise a similarity fit invents a rotation that moves the corners of a real frame by up to 1.5 px
  // (IRAF's star-gate set). Nested F-test, similarity (4 parameters) against a pure shift (2): keep the
  // similarity only when the residuals it removes are significant at p = 10⁻³. For 2 extra parameters the
  // F distribution's tail is closed-form, P(F > f) = (1 + 2f/d₂)^(−d₂/2), so f_crit = d₂/2·(p^(−2/d₂) − 1).
  if (model === "similarity" && pairs.length >= 4) {
    const shift = fitTransform(
      pairs.map((p) => p.s),
      pairs.map((p) => p.r),
      "shift",
    );
    if (shift) {
      const rss = (t: readonly number[]) => residuals(t, pairs).reduce((a, d) => a + d * d, 0);
      const rssSim = rss(m),
        rssShift = rss(shift);
      const d2 = 2 * pairs.length - 4;
      const fCrit = (d2 / 2) * (1e-3 ** (-2 / d2) - 1);
      const f = rssSim > 0 ? (rssShift - rssSim) / 2 / (rssSim / d2) : Infinity;
      if (f < fCrit) {
        m = shift;
        rms = Math.sqrt(rssShift / pairs.length);
      }
    }
  }
  const final = residuals(m, pairs).sort((a, b) => a - b);
  const h = final.length >> 1;
  const medianPx = final.length % 2 ? final[h]! : (final[h - 1]! + final[h]!) / 2;
  return { ok: true, matrix: m, rmsPx: rms, medianPx, pairs: pairs.length, src: pairs.map((p) => p.s), dst: pairs.map((p) => p.r) };
}
