/**
 * Aperture photometry at fixed positions — twin of native/src/photometry.rs (the same f64 additions in the
 * same order, so both give the same bits).
 */
import { median } from "./stats.js";

/**
 * Per star (xs[k], ys[k]): the sum over the disc of radius `aperture` minus its pixel count times the median
 * of the annulus [annIn, annOut] (NaN when a disc pixel is not finite or the annulus has fewer than 8 finite
 * pixels) into flux[k]; with inner > 0 also the sky-subtracted sum inside the disc of radius `inner` into
 * innerFlux[k]. Positions at least ⌈annOut⌉ + 1 px inside the plane (the caller checks).
 */
export function aperturePhotometry(
  plane: Float32Array,
  width: number,
  xs: ArrayLike<number>,
  ys: ArrayLike<number>,
  aperture: number,
  annIn: number,
  annOut: number,
  inner: number,
  flux: Float64Array,
  innerFlux: Float64Array,
): void {
  const R = Math.ceil(annOut);
  const a2 = aperture * aperture,
    i2 = annIn * annIn,
    o2 = annOut * annOut,
    r2 = inner > 0 ? inner * inner : -1;
  const bg = new Float64Array((2 * R + 1) ** 2);
  for (let k = 0; k < xs.length; k++) {
    const sx = xs[k]!,
      sy = ys[k]!;
    let sum = 0,
      cnt = 0,
      nb = 0,
      bad = false,
      sumIn = 0,
      cntIn = 0;
    const cx = Math.round(sx),
      cy = Math.round(sy);
    for (let y = cy - R; y <= cy + R; y++) {
      const dy = y - sy,
        dy2 = dy * dy,
        row = y * width;
      for (let x = cx - R; x <= cx + R; x++) {
        const dx = x - sx,
          d2 = dx * dx + dy2,
          v = plane[row + x]!;
        if (d2 <= a2) {
          if (v - v === 0) {
            sum += v;
            cnt++;
            if (d2 <= r2) {
              sumIn += v;
              cntIn++;
            }
          } else bad = true;
        } else if (d2 >= i2 && d2 <= o2 && v - v === 0) bg[nb++] = v;
      }
    }
    if (bad || nb < 8) {
      flux[k] = NaN;
      if (inner > 0) innerFlux[k] = NaN;
      continue;
    }
    const sky = median(bg, nb);
    flux[k] = sum - cnt * sky;
    if (inner > 0) innerFlux[k] = sumIn - cntIn * sky;
  }
}
