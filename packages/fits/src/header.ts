/**
 * FITS headers: 80-character cards in 2880-byte blocks (FITS Standard 4.0, §4).
 *
 * A `FitsHeader` keeps every card in file order, with its comment and, for cards read from a file, the
 * original card images, so a header that is read and written back unchanged is byte-identical, and a
 * changed header keeps the order and comments of everything it did not touch. Supported: fixed- and
 * free-format values, strings with `''` escapes, long strings by the CONTINUE convention, HIERARCH
 * keywords (ESO convention), logical, integer (beyond 2^53 as bigint), float (incl. `D` exponents),
 * complex (kept as text), undefined values, COMMENT/HISTORY/blank commentary cards.
 */

/** A header value. `null` is an undefined value (`KEY =` with nothing after it). */
export type FitsValue = string | number | bigint | boolean | null;

export interface FitsCard {
  /** Keyword as written (upper case); for HIERARCH cards the part after `HIERARCH `. */
  key: string;
  /** Absent for commentary cards (COMMENT, HISTORY, blank, or any card without `= `). */
  value?: FitsValue;
  /** Comment after `/`, or the text of a commentary card. */
  comment?: string;
  /** How a number was (or will be) written: `float` keeps a decimal point for integral values. */
  numberFormat?: "int" | "float";
  /** Complex values and other forms we keep verbatim. */
  rawValue?: string;
  hierarch?: boolean;
  /** Original 80-character card images (more than one with CONTINUE); dropped when the card changes. */
  images?: string[];
  /**
   * A non-standard value read leniently, and how (e.g. `decimal comma`: ZWO ASIImg writes
   * `EXPTIME = 6,4E-05`). Such a card has no `images`, so it is written back in standard form.
   */
  repaired?: string;
}

export const BLOCK = 2880;
export const CARD = 80;
const COMMENTARY = new Set(["COMMENT", "HISTORY", ""]);

/** Error thrown by the pure parser; readers wrap it into a FitsError naming the file. */
export class HeaderSyntaxError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

function parseValueField(
  text: string,
  key: string,
): { value: FitsValue; comment?: string; numberFormat?: "int" | "float"; rawValue?: string; repaired?: string } {
  let i = 0;
  while (i < text.length && text[i] === " ") i++;
  if (text[i] === "'") {
    let out = "";
    let j = i + 1;
    for (;;) {
      if (j >= text.length) throw new HeaderSyntaxError(`unterminated string value`, key);
      const ch = text[j]!;
      if (ch === "'") {
        if (text[j + 1] === "'") {
          out += "'";
          j += 2;
          continue;
        }
        j++;
        break;
      }
      out += ch;
      j++;
    }
    const rest = text.slice(j);
    const slash = rest.indexOf("/");
    const comment = slash >= 0 ? rest.slice(slash + 1).trim() : undefined;
    // Trailing spaces in a string value are not significant (Standard §4.2.1.1); leading ones are.
    return { value: out.replace(/ +$/, ""), ...(comment !== undefined && comment !== "" ? { comment } : {}) };
  }
  const slash = text.indexOf("/", i);
  const token = (slash >= 0 ? text.slice(i, slash) : text.slice(i)).trim();
  const comment = slash >= 0 ? text.slice(slash + 1).trim() : undefined;
  const withComment = <T extends object>(o: T) => (comment !== undefined && comment !== "" ? { ...o, comment } : o);
  if (token === "") return withComment({ value: null });
  if (token === "T" || token === "F") return withComment({ value: token === "T" });
  if (/^[+-]?\d+$/.test(token)) {
    const n = Number(token);
    if (Number.isSafeInteger(n)) return withComment({ value: n, numberFormat: "int" as const });
    return withComment({ value: BigInt(token), numberFormat: "int" as const });
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$/.test(token)) {
    return withComment({ value: Number(token.replace(/[Dd]/, "E")), numberFormat: "float" as const });
  }
  if (/^\(.*\)$/.test(token)) return withComment({ value: token, rawValue: token });
  // A decimal comma (locale-formatted numbers, e.g. ZWO ASIImg's `6,4E-05`): not FITS, but unambiguous.
  if (/^[+-]?(\d+,\d*|,\d+)([EeDd][+-]?\d+)?$/.test(token)) {
    return withComment({
      value: Number(token.replace(",", ".").replace(/[Dd]/, "E")),
      numberFormat: "float" as const,
      repaired: `decimal comma (${token})`,
    });
  }
  throw new HeaderSyntaxError(`cannot parse value "${token}"`, key);
}

/** Parse the cards of a header (without the trailing END); `text` is a multiple of 80 characters. */
export function parseCards(text: string): FitsCard[] {
  const cards: FitsCard[] = [];
  for (let off = 0; off + CARD <= text.length; off += CARD) {
    const image = text.slice(off, off + CARD);
    const key = image.slice(0, 8).trimEnd();
    if (key === "END") break;
    if (key === "CONTINUE") {
      const prev = cards[cards.length - 1];
      const parsed = parseValueField(image.slice(8), "CONTINUE");
      if (prev && typeof prev.value === "string" && prev.value.endsWith("&") && typeof parsed.value === "string") {
        prev.value = prev.value.slice(0, -1) + parsed.value;
        if (parsed.comment) prev.comment = prev.comment ? `${prev.comment} ${parsed.comment}` : parsed.comment;
        prev.images!.push(image);
        continue;
      }
      // A CONTINUE without a string to continue: keep it as commentary so nothing is lost.
      cards.push({ key, comment: image.slice(8).trimEnd(), images: [image] });
      continue;
    }
    if (key === "HIERARCH") {
      const eq = image.indexOf("=", 9);
      if (eq < 0) {
        cards.push({ key, comment: image.slice(8).trimEnd(), images: [image] });
        continue;
      }
      const hkey = image.slice(9, eq).trim().toUpperCase();
      const parsed = parseValueField(image.slice(eq + 1), hkey);
      cards.push(parsed.repaired ? { key: hkey, hierarch: true, ...parsed } : { key: hkey, hierarch: true, ...parsed, images: [image] });
      continue;
    }
    if (COMMENTARY.has(key) || image.slice(8, 10) !== "= ") {
      cards.push({ key, comment: image.slice(8).trimEnd(), images: [image] });
      continue;
    }
    if (!/^[A-Z0-9_-]+$/.test(key)) throw new HeaderSyntaxError(`illegal keyword "${key}"`, key);
    const parsed = parseValueField(image.slice(10), key);
    cards.push(parsed.repaired ? { key, ...parsed } : { key, ...parsed, images: [image] });
  }
  return cards;
}

function formatNumber(v: number, format: "int" | "float" | undefined): string {
  if (!Number.isFinite(v)) throw new HeaderSyntaxError(`non-finite number ${v} cannot be written to a FITS header`);
  if (Number.isInteger(v) && format !== "float") return v.toFixed(0);
  // Shortest round-trip representation; FITS needs a decimal point or an exponent (upper-case E).
  let t = String(v).toUpperCase();
  if (!/[.E]/.test(t)) t += ".0";
  else if (/^[+-]?\d+E/.test(t)) t = t.replace("E", ".0E");
  return t;
}

/**
 * FITS headers are printable ASCII (Standard §4.1.2.1). Text from users and from our own messages (job
 * names with accents, "×", "−", "°C") is transliterated: accents dropped (NFKD), a few symbols spelled,
 * anything else '?'. Applied to every value and comment we write, so no written file is unreadable.
 */
export function asciiText(s: string): string {
  if (/^[\x20-\x7e]*$/.test(s)) return s;
  const spelled = s
    .replace(/×/g, "x")
    .replace(/[−–—]/g, "-")
    .replace(/°/g, "deg")
    .replace(/[·•]/g, ".")
    .replace(/[‘’]/g, "'")
    .replace(/[“”]/g, '"')
    .replace(/…/g, "...")
    .replace(/σ/g, "sigma")
    .replace(/µ|μ/g, "u")
    .replace(/²/g, "2")
    .replace(/ß/g, "ss");
  return spelled
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^\x20-\x7e]/g, "?");
}

function quote(s: string): string {
  const q = s.replace(/'/g, "''");
  return `'${q.padEnd(8, " ")}'`;
}

function pad80(s: string): string {
  if (s.length > CARD) throw new HeaderSyntaxError(`card longer than 80 characters: ${s.slice(0, 20)}…`);
  return s.padEnd(CARD, " ");
}

function withComment(head: string, comment: string | undefined): string {
  if (!comment) return pad80(head);
  const room = CARD - head.length - 3;
  if (room <= 0) return pad80(head);
  return pad80(`${head} / ${comment.slice(0, room)}`);
}

/** Render one card to one or more 80-character card images. */
export function formatCard(raw: FitsCard): string[] {
  if (raw.images) return raw.images;
  const card: FitsCard = {
    ...raw,
    ...(raw.comment !== undefined ? { comment: asciiText(raw.comment) } : {}),
    ...(typeof raw.value === "string" && raw.rawValue === undefined ? { value: asciiText(raw.value) } : {}),
  };
  const key = card.key;
  if (card.value === undefined) {
    const text = card.comment ?? "";
    if (!COMMENTARY.has(key)) return [pad80(`${key.padEnd(8)}${text}`)];
    // Split long commentary text into several cards of 72 characters.
    const out: string[] = [];
    for (let i = 0; i === 0 || i < text.length; i += 72) out.push(pad80(`${key.padEnd(8)}${text.slice(i, i + 72)}`));
    return out;
  }
  const prefix = card.hierarch ? `HIERARCH ${key} = ` : `${key.padEnd(8)}= `;
  const v = card.value;
  if (typeof v === "string" && card.rawValue === undefined) {
    const q = quote(v);
    if (prefix.length + q.length <= CARD) return [withComment(prefix + q, card.comment)];
    // CONTINUE long-string convention: pieces end in '&', the last one does not.
    const out: string[] = [];
    let rest = v;
    let first = true;
    while (rest.length > 0) {
      const head = first ? prefix : "CONTINUE  ";
      // Room inside the quotes, leaving space for the '&'; each ' in the text costs two characters.
      const room = CARD - head.length - 3;
      let take = Math.min(rest.length, room);
      while (rest.slice(0, take).replace(/'/g, "''").length > room) take--;
      if (take < rest.length && rest[take - 1] === "'" && rest[take - 2] !== "'") {
        /* keep '' pairs whole */
      }
      const piece = rest.slice(0, take);
      rest = rest.slice(take);
      const body = `'${piece.replace(/'/g, "''")}${rest.length > 0 ? "&" : ""}'`;
      out.push(rest.length > 0 ? pad80(head + body) : withComment(head + body, card.comment));
      first = false;
    }
    return out;
  }
  let text: string;
  if (card.rawValue !== undefined) text = card.rawValue;
  else if (v === null) text = "";
  else if (typeof v === "boolean") text = v ? "T" : "F";
  else if (typeof v === "bigint") text = v.toString();
  else text = formatNumber(v as number, card.numberFormat);
  // Fixed format: right-justified ending in column 30.
  const head = card.hierarch ? prefix + text : prefix + text.padStart(20, " ");
  return [withComment(head, card.comment)];
}

/** Keys whose value we treat as the header's structure; writers own them. */
export const STRUCTURAL_KEYS = new Set([
  "SIMPLE",
  "XTENSION",
  "BITPIX",
  "NAXIS",
  "EXTEND",
  "PCOUNT",
  "GCOUNT",
  "BZERO",
  "BSCALE",
  "BLANK",
  "END",
  "CHECKSUM",
  "DATASUM",
  "TFIELDS",
  "THEAP",
  "ZIMAGE",
  "ZBITPIX",
  "ZNAXIS",
  "ZCMPTYPE",
  "ZQUANTIZ",
  "ZDITHER0",
  "ZSIMPLE",
  "ZEXTEND",
  "ZBLANK",
  "ZPCOUNT",
  "ZGCOUNT",
  "ZHECKSUM",
  "ZDATASUM",
  "ZTENSION",
  "EXTNAME",
]);

/** True for keywords that describe data layout (NAXISn, TFORMn, ZTILEn, …) rather than the observation. */
export function isStructuralKey(key: string): boolean {
  return STRUCTURAL_KEYS.has(key) || /^(NAXIS|ZNAXIS|ZTILE|ZNAME|ZVAL|TFORM|TTYPE|TUNIT|TDIM|TSCAL|TZERO|TNULL|TDISP)\d+$/.test(key);
}

export class FitsHeader {
  readonly cards: FitsCard[];

  constructor(cards: FitsCard[] = []) {
    this.cards = cards;
  }

  static parse(text: string): FitsHeader {
    return new FitsHeader(parseCards(text));
  }

  private index(key: string): number {
    const k = key.toUpperCase();
    return this.cards.findIndex((c) => c.key === k && c.value !== undefined);
  }

  has(key: string): boolean {
    return this.index(key) >= 0;
  }

  /** The value of the first card with this keyword, or undefined. */
  get(key: string): FitsValue | undefined {
    const i = this.index(key);
    return i >= 0 ? this.cards[i]!.value : undefined;
  }

  card(key: string): FitsCard | undefined {
    const i = this.index(key);
    return i >= 0 ? this.cards[i] : undefined;
  }

  getString(key: string): string | undefined {
    const v = this.get(key);
    return typeof v === "string" ? v.trim() : undefined;
  }

  /** Numbers, including numbers written as strings by some capture programs (`'10.0'`). */
  getNumber(key: string): number | undefined {
    const v = this.get(key);
    if (typeof v === "number") return v;
    if (typeof v === "bigint") return Number(v);
    if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
    return undefined;
  }

  getBoolean(key: string): boolean | undefined {
    const v = this.get(key);
    return typeof v === "boolean" ? v : undefined;
  }

  /** Set a value, keeping the card's position (and comment unless a new one is given) if it exists. */
  set(key: string, value: FitsValue, comment?: string, options?: { numberFormat?: "int" | "float"; after?: string }): this {
    const k = key.toUpperCase();
    const i = this.index(k);
    const hierarch = k.length > 8 || /[^A-Z0-9_-]/.test(k);
    const numberFormat = options?.numberFormat ?? (typeof value === "number" ? (Number.isInteger(value) ? "int" : "float") : undefined);
    if (i >= 0) {
      const old = this.cards[i]!;
      const next: FitsCard = { key: k, value };
      if (comment ?? old.comment) next.comment = comment ?? old.comment;
      if (numberFormat) next.numberFormat = numberFormat;
      if (old.hierarch || hierarch) next.hierarch = true;
      this.cards[i] = next;
    } else {
      const card: FitsCard = { key: k, value };
      if (comment) card.comment = comment;
      if (numberFormat) card.numberFormat = numberFormat;
      if (hierarch) card.hierarch = true;
      const after = options?.after ? this.index(options.after) : -1;
      if (after >= 0) this.cards.splice(after + 1, 0, card);
      else this.cards.push(card);
    }
    return this;
  }

  delete(key: string): boolean {
    const k = key.toUpperCase();
    const before = this.cards.length;
    for (let i = this.cards.length - 1; i >= 0; i--)
      if (this.cards[i]!.key === k && this.cards[i]!.value !== undefined) this.cards.splice(i, 1);
    return this.cards.length !== before;
  }

  addHistory(text: string): this {
    this.cards.push({ key: "HISTORY", comment: text });
    return this;
  }

  addComment(text: string): this {
    this.cards.push({ key: "COMMENT", comment: text });
    return this;
  }

  /** COMMENT or HISTORY texts, in order. */
  commentary(key: "COMMENT" | "HISTORY"): string[] {
    return this.cards.filter((c) => c.key === key && c.value === undefined).map((c) => c.comment ?? "");
  }

  /** A copy without the structural keywords, for carrying observation metadata into a new file. */
  withoutStructure(): FitsHeader {
    return new FitsHeader(this.cards.filter((c) => !(c.value !== undefined && isStructuralKey(c.key))).map((c) => ({ ...c })));
  }

  clone(): FitsHeader {
    return new FitsHeader(this.cards.map((c) => ({ ...c, ...(c.images ? { images: [...c.images] } : {}) })));
  }

  /** Card images with END, padded with blanks to a whole number of 2880-byte blocks. */
  toString(): string {
    const lines: string[] = [];
    for (const c of this.cards) lines.push(...formatCard(c));
    lines.push(pad80("END"));
    let text = lines.join("");
    const rem = text.length % BLOCK;
    if (rem !== 0) text += " ".repeat(BLOCK - rem);
    return text;
  }

  toBuffer(): Buffer {
    return Buffer.from(this.toString(), "latin1");
  }

  /** Plain key → value view (first occurrence wins), for JSON output. */
  toRecord(): Record<string, FitsValue> {
    const out: Record<string, FitsValue> = {};
    for (const c of this.cards)
      if (c.value !== undefined && !(c.key in out)) out[c.key] = typeof c.value === "bigint" ? c.value.toString() : c.value;
    return out;
  }
}
