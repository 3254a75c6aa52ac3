'use strict';
// The PNG chart of hand-off and contention results, drawn without any dependency: a small RGB
// raster, a 5x7 bitmap font, and a PNG encoder on node:zlib.

const fs = require('node:fs');
const zlib = require('node:zlib');
const font = require('./font5x7');
const { LIBS } = require('./libs');

const COLORS = {
  'redfour-native': [214, 39, 40],
  redfour: [31, 119, 180],
  ioredfour: [44, 160, 44],
  redlock: [148, 103, 189],
  'redis-semaphore': [255, 127, 14],
  floor: [127, 127, 127],
};
const INK = [40, 40, 40];
const GRID = [225, 225, 225];
const AXIS = [120, 120, 120];

class Canvas {
  constructor(width, height, bg = [255, 255, 255]) {
    this.width = width;
    this.height = height;
    this.px = Buffer.alloc(width * height * 3);
    for (let i = 0; i < width * height; i++) this.px.set(bg, i * 3);
  }

  set(x, y, c) {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.px.set(c, (y * this.width + x) * 3);
  }

  rect(x, y, w, h, c) {
    for (let j = Math.round(y); j < Math.round(y + h); j++) for (let i = Math.round(x); i < Math.round(x + w); i++) this.set(i, j, c);
  }

  line(x0, y0, x1, y1, c, thick = 1, dash = 0) {
    const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    const r = (thick - 1) / 2;
    for (let k = 0; k <= n; k++) {
      if (dash && Math.floor(k / dash) % 2 === 1) continue;
      const x = x0 + ((x1 - x0) * k) / n;
      const y = y0 + ((y1 - y0) * k) / n;
      this.rect(x - r, y - r, thick, thick, c);
    }
  }

  textWidth(s, scale = 2) {
    return s.length * (font.width + 1) * scale - scale;
  }

  text(s, x, y, c = INK, scale = 2, align = 'left') {
    if (align === 'center') x -= this.textWidth(s, scale) / 2;
    if (align === 'right') x -= this.textWidth(s, scale);
    for (const ch of String(s).toUpperCase()) {
      const g = font.glyphs[ch] || font.glyphs['?'];
      for (let row = 0; row < font.height; row++) {
        for (let col = 0; col < font.width; col++) {
          if (g[row][col] === '#') this.rect(x + col * scale, y + row * scale, scale, scale, c);
        }
      }
      x += (font.width + 1) * scale;
    }
  }

  png() {
    const raw = Buffer.alloc((this.width * 3 + 1) * this.height);
    for (let y = 0; y < this.height; y++) {
      raw[y * (this.width * 3 + 1)] = 0;
      this.px.copy(raw, y * (this.width * 3 + 1) + 1, y * this.width * 3, (y + 1) * this.width * 3);
    }
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(this.width, 0);
    ihdr.writeUInt32BE(this.height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    return Buffer.concat([
      Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  }
}

const CRC = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function niceLabel(v) {
  if (v >= 1000) return `${v / 1000}K`;
  if (v >= 1) return String(v);
  return String(v).replace(/^0/, '');
}

/** A log-scale y axis over [lo, hi] covering the values, with decade grid lines. */
function logAxis(values) {
  const vs = values.filter((v) => v > 0 && Number.isFinite(v));
  let lo = 10 ** Math.floor(Math.log10(Math.min(...vs)));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...vs)));
  if (hi === lo) hi = lo * 10;
  return { lo, hi };
}

function panel(cv, { x, y, w, h, title, categories, series, kind, axis, refLine }) {
  const plotX = x + 70;
  const plotY = y + 40;
  const plotW = w - 90;
  const plotH = h - 110;
  cv.text(title, x + w / 2, y + 8, INK, 2, 'center');
  const { lo, hi } = axis;
  const ly = (v) => plotY + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.0001) continue;
      const yy = ly(v);
      cv.line(plotX, yy, plotX + plotW, yy, m === 1 ? GRID : [242, 242, 242]);
      if (m === 1 || hi / lo <= 100) cv.text(niceLabel(Number(v.toPrecision(3))), plotX - 8, yy - 7, AXIS, 2, 'right');
    }
  }
  cv.line(plotX, plotY, plotX, plotY + plotH, AXIS);
  cv.line(plotX, plotY + plotH, plotX + plotW, plotY + plotH, AXIS);
  const slot = plotW / categories.length;
  if (kind === 'bars') {
    // categories = libraries; series = [{name, values[], shade}]
    const barW = (slot * 0.7) / series.length;
    categories.forEach((lib, i) => {
      series.forEach((s, k) => {
        const v = s.values[i];
        if (!(v > 0)) return;
        const base = COLORS[lib] || INK;
        const c = s.light ? base.map((ch) => Math.round(ch + (255 - ch) * 0.55)) : base;
        const bx = plotX + i * slot + slot * 0.15 + k * barW;
        const top = Math.max(plotY, ly(Math.min(v, hi)));
        cv.rect(bx, top, barW - 3, plotY + plotH - top, c);
      });
      cv.text(
        lib.replace('redis-semaphore', 'semaphore').replace('redfour-native', 'native'),
        plotX + i * slot + slot / 2,
        plotY + plotH + 10 + (i % 2) * 18,
        INK,
        2,
        'center',
      );
    });
    cv.rect(plotX + 10, plotY + 6, 16, 16, [120, 120, 120]);
    cv.text('P50', plotX + 32, plotY + 9, INK, 2);
    cv.rect(plotX + 90, plotY + 6, 16, 16, [200, 200, 200]);
    cv.text('P99 (LIGHT)', plotX + 112, plotY + 9, INK, 2);
  } else {
    // categories = N values; series = [{lib, values[], timedOut[]}]
    categories.forEach((n, i) => cv.text(`N=${n}`, plotX + i * slot + slot / 2, plotY + plotH + 10, INK, 2, 'center'));
    for (const s of series) {
      const c = COLORS[s.lib] || INK;
      let prev = null;
      s.values.forEach((v, i) => {
        if (!(v > 0)) {
          prev = null;
          return;
        }
        const px = plotX + i * slot + slot / 2;
        const py = ly(Math.min(v, hi));
        if (prev) cv.line(prev[0], prev[1], px, py, c, 3);
        cv.rect(px - 4, py - 4, 9, 9, c);
        if (s.timedOut?.[i]) cv.text('>', px + 7, py - 7, c, 2);
        prev = [px, py];
      });
    }
    // legend
    let lx = x + 10;
    let lyy = y + h - 44;
    for (const s of series) {
      const label = s.lib.replace('redis-semaphore', 'semaphore');
      const width = 20 + cv.textWidth(label) + 18;
      if (lx + width > x + w) {
        lx = x + 10;
        lyy += 20;
      }
      cv.rect(lx, lyy + 3, 14, 8, COLORS[s.lib] || INK);
      cv.text(label, lx + 20, lyy, INK, 2);
      lx += width;
    }
  }
  if (refLine) {
    const yy = ly(refLine.value);
    cv.line(plotX, yy, plotX + plotW, yy, [200, 0, 0], 1, 6);
    const tw = cv.textWidth(refLine.label);
    const lx = refLine.left ? plotX + 6 : plotX + plotW - tw - 6;
    cv.rect(lx - 3, yy - 21, tw + 6, 18, [255, 255, 255]);
    cv.text(refLine.label, lx, yy - 19, [200, 0, 0], 2);
  }
}

function write(results, file) {
  const ho = results.handoff;
  const ct = results.contention;
  if (!ho && !ct) return null;
  const panels = [];
  if (ho) panels.push('handoff');
  if (ct) panels.push('wall', 'cmds');
  const pw = 560;
  const ph = 480;
  const cv = new Canvas(pw * panels.length, ph + 40);
  cv.text(
    `redfour-native vs peers - ${results.date}, ${results.machine.nproc} cores, Redis ${results.machine.redis}, log scales, > = stopped at the time cap`,
    12,
    10,
    INK,
    2,
  );
  panels.forEach((p, k) => {
    const x = k * pw;
    const y = 36;
    if (p === 'handoff') {
      const libs = [...LIBS, 'floor'].filter((l) => ho[l] && ho[l].p50 > 0);
      const p50 = libs.map((l) => ho[l].p50);
      const p99 = libs.map((l) => ho[l].p99);
      panel(cv, {
        x,
        y,
        w: pw,
        h: ph,
        title: 'Hand-off: release -> waiter holds, ms',
        categories: libs,
        kind: 'bars',
        series: [{ values: p50 }, { values: p99, light: true }],
        axis: logAxis([...p50, ...p99, 0.1]),
        refLine: { value: 0.25, label: 'target p50 0.25' },
      });
    } else {
      const ns = Object.keys(ct).map(Number);
      const series = LIBS.map((lib) => ({
        lib,
        values: ns.map((n) => {
          const c = ct[n][lib];
          if (!c || c.error || !c.done) return null;
          return p === 'wall' ? c.wallMs / 1000 : c.commandsPerSection;
        }),
        timedOut: ns.map((n) => Boolean(ct[n][lib]?.timedOut)),
      }));
      const all = series.flatMap((s) => s.values).filter((v) => v > 0);
      panel(cv, {
        x,
        y,
        w: pw,
        h: ph,
        title: p === 'wall' ? 'Contention on one id: wall, s' : 'Redis commands per section',
        categories: ns,
        kind: 'lines',
        series,
        axis: logAxis(p === 'wall' ? [...all, 0.01] : [...all, 1]),
        refLine: p === 'wall' && ns.includes(500) ? { value: 0.8, label: 'target N=500: 0.8 s', left: true } : null,
      });
    }
  });
  fs.writeFileSync(file, cv.png());
  return file;
}

module.exports = { write, Canvas };
