'use strict';

/** Sorted copy. */
function sorted(values) {
  return Float64Array.from(values).sort();
}

/** Nearest-rank percentile of an ascending array. */
function pct(asc, p) {
  if (asc.length === 0) return null;
  const rank = Math.ceil((p / 100) * asc.length);
  return asc[Math.min(asc.length - 1, Math.max(0, rank - 1))];
}

function summary(values) {
  const asc = sorted(values);
  if (asc.length === 0) return { n: 0, p50: null, p99: null, min: null, max: null, mean: null };
  let sum = 0;
  for (const v of asc) sum += v;
  return {
    n: asc.length,
    p50: pct(asc, 50),
    p90: pct(asc, 90),
    p99: pct(asc, 99),
    min: asc[0],
    max: asc[asc.length - 1],
    mean: sum / asc.length,
  };
}

function round(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** A number for a table: 3 significant digits, thousands kept whole. */
function fmt(v, unit = '') {
  if (v === null || v === undefined) return 'n/a';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  let s;
  if (a >= 1000) s = Math.round(v).toLocaleString('en-US');
  else if (a >= 100) s = v.toFixed(0);
  else if (a >= 10) s = v.toFixed(1);
  else if (a >= 1) s = v.toFixed(2);
  else if (a === 0) s = '0';
  else s = v.toPrecision(2);
  return unit ? `${s} ${unit}` : s;
}

/** "2.31x" ; ratio > 1 means redfour-native is better. */
function fmtRatio(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return 'n/a';
  return `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}x`;
}

module.exports = { summary, pct, sorted, round, fmt, fmtRatio };
