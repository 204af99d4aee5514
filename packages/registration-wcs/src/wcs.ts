/**
 * FITS World Coordinate Systems for celestial images: the gnomonic (TAN) projection with optional SIP
 * distortion polynomials (Shupe et al. 2005), in the CD-matrix, PC + CDELT and legacy CROTA2 forms.
 * Pixel coordinates here are 0-based with pixel centres at integers (x along NAXIS1), as everywhere in
 * tile-compile; FITS's 1-based CRPIX is converted on the way in. Sky coordinates are degrees (RA, Dec).
 *
 * pixel → sky: (u, v) = pixel + 1 − CRPIX; SIP adds A/B polynomials; CD maps to intermediate world
 * coordinates (x, y) in degrees; TAN deprojection gives native (φ, θ); the spherical rotation with the
 * pole at (CRVAL1, CRVAL2) and LONPOLE (default 180°) gives (α, δ) (Calabretta & Greisen 2002, §2.3, §5.1.3).
 * sky → pixel reverses each step; the SIP inverse uses the AP/BP polynomials when the header has them
 * (as astrometry.net does), otherwise Newton iterations on A/B.
 */
import type { FitsHeader } from "@tile-compile/core";

const D2R = Math.PI / 180;
const R2D = 180 / Math.PI;

export interface Sip {
  a: number[][]; // a[p][q]
  b: number[][];
  ap?: number[][];
  bp?: number[][];
}

export interface WcsParams {
  crpix: [number, number]; // FITS 1-based
  crval: [number, number]; // degrees
  cd: [number, number, number, number]; // CD1_1, CD1_2, CD2_1, CD2_2 in degrees/pixel
  lonpole?: number;
  sip?: Sip;
}

function poly(c: number[][] | undefined, u: number, v: number): number {
  if (!c) return 0;
  let s = 0;
  for (let p = 0; p < c.length; p++) {
    const row = c[p]!;
    let up = 1;
    for (let i = 0; i < p; i++) up *= u;
    let vq = 1;
    for (let q = 0; q < row.length; q++) {
      if (row[q]) s += row[q]! * up * vq;
      vq *= v;
    }
  }
  return s;
}

export class Wcs {
  readonly crpix: [number, number];
  readonly crval: [number, number];
  readonly cd: [number, number, number, number];
  readonly cdInv: [number, number, number, number];
  readonly lonpole: number;
  readonly sip?: Sip;

  constructor(p: WcsParams) {
    this.crpix = p.crpix;
    this.crval = p.crval;
    this.cd = p.cd;
    const [a, b, c, d] = p.cd;
    const det = a * d - b * c;
    if (!Number.isFinite(det) || det === 0) throw new RangeError("the CD matrix is singular");
    this.cdInv = [d / det, -b / det, -c / det, a / det];
    this.lonpole = p.lonpole ?? 180;
    if (p.sip) this.sip = p.sip;
  }

  /** Pixel scale in arcseconds per pixel (√|det CD|). */
  get scaleArcsec(): number {
    const [a, b, c, d] = this.cd;
    return Math.sqrt(Math.abs(a * d - b * c)) * 3600;
  }

  /** True when east is counter-clockwise from north in pixel coordinates (det CD < 0, the sky's parity). */
  get parityNormal(): boolean {
    const [a, b, c, d] = this.cd;
    return a * d - b * c < 0;
  }

  pixelToSky(x: number, y: number): [number, number] {
    let u = x + 1 - this.crpix[0];
    let v = y + 1 - this.crpix[1];
    if (this.sip) {
      const du = poly(this.sip.a, u, v),
        dv = poly(this.sip.b, u, v);
      u += du;
      v += dv;
    }
    const [a, b, c, d] = this.cd;
    const xw = (a * u + b * v) * D2R,
      yw = (c * u + d * v) * D2R;
    const r = Math.hypot(xw, yw);
    const phi = r === 0 ? 0 : Math.atan2(xw, -yw);
    const theta = Math.atan2(1, r);
    const ap = this.crval[0] * D2R,
      dp = this.crval[1] * D2R,
      pp = this.lonpole * D2R;
    const sinT = Math.sin(theta),
      cosT = Math.cos(theta),
      dphi = phi - pp;
    const ra = ap + Math.atan2(-cosT * Math.sin(dphi), sinT * Math.cos(dp) - cosT * Math.sin(dp) * Math.cos(dphi));
    const dec = Math.asin(Math.max(-1, Math.min(1, sinT * Math.sin(dp) + cosT * Math.cos(dp) * Math.cos(dphi))));
    let raDeg = ra * R2D;
    raDeg = ((raDeg % 360) + 360) % 360;
    return [raDeg, dec * R2D];
  }

  /** Sky (degrees) → 0-based pixel; NaN for points on the far hemisphere (θ ≤ 0). */
  skyToPixel(raDeg: number, decDeg: number): [number, number] {
    const ra = raDeg * D2R,
      dec = decDeg * D2R;
    const ap = this.crval[0] * D2R,
      dp = this.crval[1] * D2R,
      pp = this.lonpole * D2R;
    const da = ra - ap;
    const phi = pp + Math.atan2(-Math.cos(dec) * Math.sin(da), Math.sin(dec) * Math.cos(dp) - Math.cos(dec) * Math.sin(dp) * Math.cos(da));
    const theta = Math.asin(Math.max(-1, Math.min(1, Math.sin(dec) * Math.sin(dp) + Math.cos(dec) * Math.cos(dp) * Math.cos(da))));
    if (theta <= 0) return [NaN, NaN];
    const r = Math.cos(theta) / Math.sin(theta);
    const xw = r * Math.sin(phi) * R2D,
      yw = -r * Math.cos(phi) * R2D;
    const [ia, ib, ic, id] = this.cdInv;
    const U = ia * xw + ib * yw,
      V = ic * xw + id * yw;
    let u = U,
      v = V;
    if (this.sip) {
      if (this.sip.ap && this.sip.bp) {
        u = U + poly(this.sip.ap, U, V);
        v = V + poly(this.sip.bp, U, V);
      } else {
        // Newton: solve (u + f(u, v), v + g(u, v)) = (U, V).
        for (let it = 0; it < 20; it++) {
          const fu = u + poly(this.sip.a, u, v) - U,
            fv = v + poly(this.sip.b, u, v) - V;
          if (Math.abs(fu) < 1e-10 && Math.abs(fv) < 1e-10) break;
          const h = 1e-3;
          const j11 = 1 + (poly(this.sip.a, u + h, v) - poly(this.sip.a, u - h, v)) / (2 * h);
          const j12 = (poly(this.sip.a, u, v + h) - poly(this.sip.a, u, v - h)) / (2 * h);
          const j21 = (poly(this.sip.b, u + h, v) - poly(this.sip.b, u - h, v)) / (2 * h);
          const j22 = 1 + (poly(this.sip.b, u, v + h) - poly(this.sip.b, u, v - h)) / (2 * h);
          const det = j11 * j22 - j12 * j21;
          u -= (j22 * fu - j12 * fv) / det;
          v -= (-j21 * fu + j11 * fv) / det;
        }
      }
    }
    return [u + this.crpix[0] - 1, v + this.crpix[1] - 1];
  }

  /** Read a celestial TAN or TAN-SIP WCS from a header; undefined when the header has none. */
  static fromHeader(h: FitsHeader): Wcs | undefined {
    const t1 = h.get("CTYPE1"),
      t2 = h.get("CTYPE2");
    if (typeof t1 !== "string" || typeof t2 !== "string") return undefined;
    const c1 = t1.trim().toUpperCase(),
      c2 = t2.trim().toUpperCase();
    if (!c1.startsWith("RA---TAN") || !c2.startsWith("DEC--TAN")) {
      if (c1.startsWith("RA--") || c2.startsWith("DEC-"))
        throw new RangeError(`projection ${c1}/${c2} is not supported (TAN and TAN-SIP are)`);
      return undefined;
    }
    const num = (k: string) => h.getNumber(k);
    const crpix1 = num("CRPIX1"),
      crpix2 = num("CRPIX2"),
      crval1 = num("CRVAL1"),
      crval2 = num("CRVAL2");
    if ([crpix1, crpix2, crval1, crval2].some((v) => v === undefined)) throw new RangeError("CRPIX1/2 or CRVAL1/2 is missing");
    let cd: [number, number, number, number];
    if (num("CD1_1") !== undefined || num("CD2_2") !== undefined) {
      cd = [num("CD1_1") ?? 0, num("CD1_2") ?? 0, num("CD2_1") ?? 0, num("CD2_2") ?? 0];
    } else {
      const cdelt1 = num("CDELT1"),
        cdelt2 = num("CDELT2");
      if (cdelt1 === undefined || cdelt2 === undefined) throw new RangeError("neither CDi_j nor CDELT1/2 is present");
      if (num("PC1_1") !== undefined || num("PC2_2") !== undefined) {
        cd = [cdelt1 * (num("PC1_1") ?? 1), cdelt1 * (num("PC1_2") ?? 0), cdelt2 * (num("PC2_1") ?? 0), cdelt2 * (num("PC2_2") ?? 1)];
      } else {
        const rho = (num("CROTA2") ?? 0) * D2R;
        cd = [cdelt1 * Math.cos(rho), -cdelt2 * Math.sin(rho), cdelt1 * Math.sin(rho), cdelt2 * Math.cos(rho)];
      }
    }
    let sip: Sip | undefined;
    if (c1.endsWith("-SIP")) {
      const read = (p: string): number[][] | undefined => {
        const order = num(`${p}_ORDER`);
        if (order === undefined) return undefined;
        const c: number[][] = [];
        for (let i = 0; i <= order; i++) {
          c.push([]);
          for (let j = 0; j + i <= order; j++) c[i]!.push(num(`${p}_${i}_${j}`) ?? 0);
        }
        return c;
      };
      const a = read("A"),
        b = read("B");
      if (!a || !b) throw new RangeError("a -SIP projection without A_ORDER/B_ORDER");
      const ap = read("AP"),
        bp = read("BP");
      sip = { a, b, ...(ap && bp ? { ap, bp } : {}) };
    }
    const lonpole = num("LONPOLE");
    return new Wcs({
      crpix: [crpix1!, crpix2!],
      crval: [crval1!, crval2!],
      cd,
      ...(lonpole !== undefined ? { lonpole } : {}),
      ...(sip ? { sip } : {}),
    });
  }
}
