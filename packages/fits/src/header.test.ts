import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FitsHeader, formatCard, parseCards } from "./header.js";

const card = (s: string) => s.padEnd(80, " ");
const text = (...cards: string[]) => cards.map(card).join("") + card("END");

describe("FITS header cards", () => {
  it("parses every value type, comments and commentary cards", () => {
    const h = FitsHeader.parse(
      text(
        "SIMPLE  =                    T / conforms",
        "BITPIX  =                  -32",
        "OBJECT  = 'M 94    '           / target",
        "OBSERVER= 'O''Brien'",
        "EXPTIME =                 10.0 / [s]",
        "GAINX   =             1.25D+02",
        "SMALL   =              -3.5E-7",
        "BIG     = 123456789012345678901",
        "FLAG    =                    F",
        "UNDEF   =",
        "CPLX    = (1.5, -2)",
        "COMMENT   a comment card",
        "HISTORY calibrated with bias",
        "",
        "HIERARCH ESO DET CHIP TEMP = -95.5 / detector",
      ),
    );
    expect(h.get("SIMPLE")).toBe(true);
    expect(h.get("BITPIX")).toBe(-32);
    expect(h.get("OBJECT")).toBe("M 94");
    expect(h.card("OBJECT")?.comment).toBe("target");
    expect(h.get("OBSERVER")).toBe("O'Brien");
    expect(h.get("EXPTIME")).toBe(10);
    expect(h.card("EXPTIME")?.numberFormat).toBe("float");
    expect(h.get("GAINX")).toBe(125);
    expect(h.get("SMALL")).toBeCloseTo(-3.5e-7, 15);
    expect(h.get("BIG")).toBe(123456789012345678901n);
    expect(h.get("FLAG")).toBe(false);
    expect(h.get("UNDEF")).toBeNull();
    expect(h.get("CPLX")).toBe("(1.5, -2)");
    expect(h.commentary("COMMENT")).toEqual(["  a comment card"]);
    expect(h.commentary("HISTORY")).toEqual(["calibrated with bias"]);
    expect(h.get("ESO DET CHIP TEMP")).toBe(-95.5);
    expect(h.cards.some((c) => c.key === "" && c.value === undefined)).toBe(true);
  });

  it("joins CONTINUE long strings", () => {
    const h = FitsHeader.parse(
      text(
        "LONGSTR = 'This is a long string value that is continued over&'",
        "CONTINUE  ' more than one card&' / first comment",
        "CONTINUE  ' (three).'",
      ),
    );
    expect(h.get("LONGSTR")).toBe("This is a long string value that is continued over more than one card (three).");
  });

  it("writes a header read from a file back byte for byte, and keeps order and comments after a change", () => {
    const src = text(
      "SIMPLE  =                    T",
      "BITPIX  =                   16",
      "NAXIS   =                    0",
      "EXPTIME =                 10.0 / exposure [s]",
      "LONGSTR = 'abc&'",
      "CONTINUE  'def'",
      "COMMENT keep me",
      "FILTER  = 'IRCUT   '           / filter name",
    );
    const h = FitsHeader.parse(src);
    expect(h.toString()).toBe(src.padEnd(2880, " "));
    h.set("EXPTIME", 20.5);
    const again = FitsHeader.parse(h.toString());
    expect(again.cards.map((c) => c.key)).toEqual(["SIMPLE", "BITPIX", "NAXIS", "EXPTIME", "LONGSTR", "COMMENT", "FILTER"]);
    expect(again.get("EXPTIME")).toBe(20.5);
    expect(again.card("EXPTIME")?.comment).toBe("exposure [s]");
    expect(again.get("LONGSTR")).toBe("abcdef");
    // Untouched cards keep their exact images.
    expect(h.toString().slice(7 * 80, 8 * 80)).toBe(card("FILTER  = 'IRCUT   '           / filter name"));
  });

  it("pads headers to whole 2880-byte blocks with END", () => {
    const s = new FitsHeader().set("SIMPLE", true).toString();
    expect(s.length).toBe(2880);
    expect(s.slice(80, 83)).toBe("END");
  });

  it("writes floats that stay floats and integers in fixed format", () => {
    const [f] = formatCard({ key: "EXPTIME", value: 10, numberFormat: "float" });
    expect(f!.slice(10, 30).trim()).toBe("10.0");
    const [i] = formatCard({ key: "NAXIS1", value: 1080 });
    expect(i!.slice(10, 30)).toBe("1080".padStart(20));
    const [e] = formatCard({ key: "TINY", value: 1e-20, numberFormat: "float" });
    expect(Number(e!.slice(10, 30))).toBe(1e-20);
  });

  it("round-trips any string value, long ones through CONTINUE (property)", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."abc XYZ'&/=0123456789".split("")), maxLength: 300 }), (s) => {
        const h = new FitsHeader().set("KEY", s, "a comment");
        const back = FitsHeader.parse(h.toString());
        // Trailing blanks are not significant in FITS strings.
        expect(back.get("KEY")).toBe(s.replace(/ +$/, ""));
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips numbers exactly (property)", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (v) => {
        const back = FitsHeader.parse(new FitsHeader().set("V", v, undefined, { numberFormat: "float" }).toString());
        expect(back.get("V")).toBe(v === 0 ? 0 : v);
      }),
      { numRuns: 500 },
    );
  });

  it("rejects an illegal keyword and an unparsable value with the keyword named", () => {
    expect(() => parseCards(text("BAD KEY =                    1"))).toThrow(/illegal keyword/);
    expect(() => parseCards(text("NAXIS   =                 ten"))).toThrow(/cannot parse value "ten"/);
  });
});
