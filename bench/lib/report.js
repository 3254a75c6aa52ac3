'use strict';
// Console tables, the targets of issue 3, and bench/RESULTS.md.

const { fmt, fmtRatio } = require('./stats');
const { LIBS, PEERS, PUBLISH_FLOOR } = require('./libs');

const OURS = 'redfour-native';
/** The last line of RESULTS.md (and RESULTS-quick.md, written next to it). */
const DIAGNOSIS_LINK = 'Where redfour-native loses, and what would fix it (written by hand): [DIAGNOSIS.md](DIAGNOSIS.md).';

function ok(row) {
  return row && !row.error && !row.skipped;
}

/** Best (lowest or highest) value of `get` among the peers with a result. */
function bestPeer(section, get, lower = true) {
  let best = null;
  for (const lib of PEERS) {
    const row = section?.[lib];
    if (!ok(row)) continue;
    const v = get(row);
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    if (!best || (lower ? v < best.value : v > best.value)) best = { lib, value: v };
  }
  return best;
}

function targets(r) {
  const t = [];
  const add = (scenario, target, value, met, detail) => t.push({ scenario, target, value, met, detail });
  const lat = r.latency;
  if (lat && ok(lat[OURS])) {
    const ours = lat[OURS].p50;
    if (ok(lat.floor)) {
      const x = ours / lat.floor.p50;
      add(
        '1 latency',
        'p50 within 10% of the two-round-trip floor',
        `${fmt(ours)} µs vs floor ${fmt(lat.floor.p50)} µs (${fmtRatio(x)} of floor)`,
        x <= 1.1,
      );
    }
    const best = bestPeer(lat, (row) => row.p50);
    if (best) {
      const x = best.value / ours;
      add('1 latency', 'p50 at least 1.2x faster than the best peer', `${fmtRatio(x)} vs ${best.lib} (${fmt(best.value)} µs)`, x >= 1.2);
    }
  }
  const tp = r.throughput;
  if (tp && ok(tp[OURS])) {
    const best = bestPeer(tp, (row) => row.pairsPerSec, false);
    if (best) {
      const x = tp[OURS].pairsPerSec / best.value;
      add(
        '2 throughput',
        'at least 2x the best peer',
        `${fmt(tp[OURS].pairsPerSec)} pairs/s, ${fmtRatio(x)} ${best.lib} (${fmt(best.value)})`,
        x >= 2,
      );
    }
    if (ok(tp.redfour)) {
      const x = tp[OURS].pairsPerSec / tp.redfour.pairsPerSec;
      add(
        '2 throughput (issue 15)',
        "at least 1.3x redfour's pairs/s at 64 loops",
        `${fmtRatio(x)} redfour (${fmt(tp.redfour.pairsPerSec)})`,
        x >= 1.3,
      );
    }
  }
  const ho = r.handoff?.[OURS];
  if (ok(ho)) {
    // What this machine allows at all: the publish-heard floor, on bare sockets.
    const least = r.handoff[PUBLISH_FLOOR];
    const floorNote = (q) => (ok(least) ? ` (this machine's ${PUBLISH_FLOOR}: ${fmt(least[q])} ms)` : '');
    add('3 hand-off', 'p50 under 0.25 ms', `${fmt(ho.p50)} ms${floorNote('p50')}`, ho.p50 < 0.25);
    add('3 hand-off', 'p99 under 0.6 ms', `${fmt(ho.p99)} ms${floorNote('p99')}`, ho.p99 < 0.6);
    if (ok(least)) {
      const x = ho.p50 / least.p50;
      const floor = r.handoff.floor;
      const floorRatio = ok(floor) ? `; the floor (publish heard + one round trip): ${fmtRatio(floor.p50 / least.p50)}` : '';
      add(
        '3 hand-off (issue 15)',
        'p50 at most 1.15x the publish-heard floor',
        `${fmt(ho.p50)} ms vs ${fmt(least.p50)} ms (${fmtRatio(x)}${floorRatio})`,
        x <= 1.15,
      );
    }
    const peer = r.handoff.redfour;
    if (ok(peer)) {
      add(
        '3 hand-off (issue 15)',
        "p99 no higher than redfour's",
        `${fmt(ho.p99)} ms vs ${fmt(peer.p99)} ms (${fmtRatio(ho.p99 / peer.p99)} of redfour)`,
        ho.p99 <= peer.p99,
      );
    }
  }
  if (r.contention) {
    const cells = Object.values(r.contention)
      .map((byLib) => byLib[OURS])
      .filter(ok);
    if (cells.length) {
      const worst = cells.reduce((a, c) => (c.scriptsPerSection > a.scriptsPerSection ? c : a));
      add(
        '4 contention',
        'at most 3 script calls per critical section at every N',
        `max ${fmt(worst.scriptsPerSection)} (at N=${worst.n}); ${cells.map((c) => `N=${c.n}: ${fmt(c.scriptsPerSection)}`).join(', ')}`,
        cells.every((c) => c.scriptsPerSection <= 3 && !c.timedOut),
      );
      const n500 = r.contention[500]?.[OURS];
      if (ok(n500))
        add('4 contention', 'N=500 finishes in under 0.8 s', `${fmt(n500.wallMs / 1000)} s`, !n500.timedOut && n500.wallMs < 800);
      add(
        '4 contention',
        'mutual exclusion (counter = sections, no overlap)',
        cells.map((c) => `N=${c.n}: ${c.counter}/${c.done}`).join(', '),
        cells.every((c) => c.counterOk && c.violations === 0 && c.overlaps === 0),
      );
    }
  }
  for (const [rate, byLib] of Object.entries(r.openloop?.rates || {})) {
    const ours = byLib[OURS];
    const peer = byLib.redfour;
    if (!ok(ours) || !ok(peer)) continue;
    const scenario = `8 open loop ${Number(rate).toLocaleString('en-US')}/s (issue 15)`;
    add(
      scenario,
      'p50 no higher than redfour',
      `${fmt(ours.p50)} µs vs ${fmt(peer.p50)} µs (${fmtRatio(ours.p50 / peer.p50)} of redfour)`,
      ours.p50 <= peer.p50,
    );
    add(
      scenario,
      'p99 no higher than redfour',
      `${fmt(ours.p99)} µs vs ${fmt(peer.p99)} µs (${fmtRatio(ours.p99 / peer.p99)} of redfour)`,
      ours.p99 <= peer.p99,
    );
    const limit = Number(rate) <= 200 ? 1 : 0.8;
    const x = ours.cpuUsPerPair / peer.cpuUsPerPair;
    add(
      scenario,
      `client CPU per pair at most ${limit === 1 ? "redfour's" : `${limit}x redfour's`}`,
      `${fmt(ours.cpuUsPerPair)} µs vs ${fmt(peer.cpuUsPerPair)} µs (${fmtRatio(x)} of redfour)`,
      x <= limit,
    );
  }
  const sw = r.scale?.waiters?.[OURS];
  if (ok(sw))
    add(
      '5 scale',
      '10,000 waiters under 50 MB RSS over baseline',
      `${fmt(sw.rssOverBaseMB)} MB (peak ${fmt(sw.peakOverBaseMB)} MB)`,
      sw.rssOverBaseMB < 50 && sw.peakOverBaseMB < 50,
    );
  const si = r.scale?.instances?.[OURS];
  if (ok(si))
    add(
      '5 scale',
      '1,000 Lock instances on one URL open at most 2 sockets',
      `${si.sockets} sockets (${si.instances.toLocaleString('en-US')} instances${si.instances < 1000 ? ', quick mode' : ''})`,
      si.sockets <= 2,
    );
  return t;
}

// --- plain-text tables ----------------------------------------------------------------------

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(String(h).length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? String(c ?? '').padEnd(widths[i]) : String(c ?? '').padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** `numeric`: right-align every column but the first (figures); otherwise all left (text). */
function mdTable(headers, rows, { numeric = true } = {}) {
  const esc = (c) => String(c ?? '').replace(/\|/g, '\\|');
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `| ${headers.map((_, i) => (i === 0 || !numeric ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

// Each builder returns { title, note, headers, rows } so the console and Markdown share them.
function sections(r) {
  const out = [];
  const lat = r.latency;
  if (lat) {
    const ours = lat[OURS];
    const rows = [...LIBS, 'floor']
      .filter((l) => lat[l])
      .map((lib) => {
        const row = lat[lib];
        if (!ok(row)) return [lib, 'error', '', '', '', '', ''];
        const vs =
          lib === OURS
            ? ''
            : ok(ours)
              ? lib === 'floor'
                ? `ours ${fmtRatio(ours.p50 / row.p50)} of floor`
                : fmtRatio(row.p50 / ours.p50)
              : '';
        const vs99 = lib === OURS || lib === 'floor' || !ok(ours) ? '' : fmtRatio(row.p99 / ours.p99);
        return [lib, fmt(row.p50), fmt(row.p99), fmt(row.mean), (row.roundsP50 || []).map((v) => fmt(v)).join(' / '), vs, vs99];
      });
    out.push({
      title: '1. Latency: one client, sequential acquire + release of distinct ids (µs per pair)',
      note: `${lat[OURS]?.n ?? ''} pairs per library after warm-up, in ${r.params.latency.rounds} round(s) of fresh processes, libraries in alternating order. "ours faster" = peer / redfour-native. floor = two EVALSHA round trips of a trivial script with ioredis.`,
      headers: ['library', 'p50 µs', 'p99 µs', 'mean µs', 'p50 per round', 'ours faster (p50)', 'ours faster (p99)'],
      rows,
    });
  }
  const tp = r.throughput;
  if (tp) {
    const ours = tp[OURS];
    const rows = [...LIBS, 'floor']
      .filter((l) => tp[l])
      .map((lib) => {
        const row = tp[lib];
        if (!ok(row)) return [lib, 'error', '', '', '', '', ''];
        const vs =
          lib === OURS || !ok(ours)
            ? ''
            : lib === 'floor'
              ? `ours ${fmtRatio(ours.pairsPerSec / row.pairsPerSec)} of floor`
              : fmtRatio(ours.pairsPerSec / row.pairsPerSec);
        return [
          lib,
          fmt(row.pairsPerSec),
          (row.roundsPairsPerSec || []).map((v) => fmt(v)).join(' / '),
          fmt(row.p50),
          fmt(row.p99),
          fmt(row.commandsPerPair),
          vs,
        ];
      });
    out.push({
      title: '2. Throughput: one process, 64 concurrent acquire + release loops on distinct ids',
      note: `${r.params.throughput.rounds} round(s) of ${fmt(r.params.throughput.durationMs / 1000)} s measured after ${fmt(r.params.throughput.warmupMs / 1000)} s warm-up, fresh process each, libraries in alternating order. "ours more" = redfour-native pairs/s / peer pairs/s. Redis commands per pair from INFO commandstats.`,
      headers: ['library', 'pairs/s', 'pairs/s per round', 'pair p50 µs', 'pair p99 µs', 'Redis cmds/pair', 'ours more'],
      rows,
    });
  }
  const ho = r.handoff;
  if (ho) {
    const ours = ho[OURS];
    const rows = [...LIBS, 'floor', PUBLISH_FLOOR]
      .filter((l) => ho[l])
      .map((lib) => {
        const row = ho[lib];
        if (!ok(row)) return [lib, 'error', '', '', '', ''];
        if (lib === 'floor' || lib === PUBLISH_FLOOR)
          return [
            lib,
            fmt(row.p50),
            fmt(row.p99),
            fmt(row.max),
            ok(ours) ? `ours ${fmtRatio(ours.p50 / row.p50)} of floor` : '',
            ok(ours) ? `ours ${fmtRatio(ours.p99 / row.p99)} of floor` : '',
          ];
        return [
          lib,
          fmt(row.p50),
          fmt(row.p99),
          fmt(row.max),
          lib === OURS || !ok(ours) ? '' : fmtRatio(row.p50 / ours.p50),
          lib === OURS || !ok(ours) ? '' : fmtRatio(row.p99 / ours.p99),
        ];
      });
    out.push({
      title: '3. Hand-off: process A calls release, process B (waiting in waitAcquireLock) holds the lock (ms)',
      note: `${r.params.handoff.iterations} hand-offs per library in ${r.params.handoff.rounds} round(s); B starts waiting ${r.params.handoff.settleMs} ms before A releases. Both timestamps from process.hrtime.bigint() (CLOCK_MONOTONIC, one clock for the machine; cross-process order checked: ${r.clock?.verified ? 'verified' : 'NOT verified'}). redlock and redis-semaphore poll every ${r.params.pollMs} ms. floor = A PUBLISHes, B's subscriber hears it and makes one EVALSHA round trip of a trivial script, both on bare sockets with a minimal RESP parser (the least a wake-then-acquire hand-off needs); floor (publish heard) = the same without the round trip: B is done when it hears the PUBLISH, the least any pub/sub hand-off can take, whatever the design. Both processes are idle for the settle time before each hand-off, as real waiters are, so wake-up latency of idle CPUs and threads is part of every figure.`,
      headers: ['library', 'p50 ms', 'p99 ms', 'max ms', 'ours faster (p50)', 'ours faster (p99)'],
      rows,
    });
  }
  if (r.contention) {
    for (const [n, byLib] of Object.entries(r.contention)) {
      const ours = byLib[OURS];
      const rows = LIBS.filter((l) => byLib[l]).map((lib) => {
        const c = byLib[lib];
        if (!ok(c)) return [lib, 'error', '', '', '', '', '', '', ''];
        const wall = c.timedOut ? `> ${fmt(c.wallMs / 1000)} s (${c.done}/${c.n} done)` : `${fmt(c.wallMs / 1000)} s`;
        const exclusion =
          c.counterOk === null
            ? `unknown (a worker did not report)`
            : c.counterOk && c.violations === 0 && c.overlaps === 0
              ? `ok ${c.counter}/${c.done}`
              : `BROKEN ${c.counter}/${c.done}, ${c.violations + c.overlaps} overlaps`;
        const vs =
          lib === OURS || !ok(ours)
            ? ''
            : fmtRatio(c.timedOut && !ours.timedOut ? c.wallMs / c.done / (ours.wallMs / ours.done) : c.wallMs / ours.wallMs);
        return [
          lib,
          wall,
          fmt(c.sectionsPerSec),
          fmt(c.scriptsPerSection),
          fmt(c.commandsPerSection),
          fmt(c.gapP50),
          fmt(c.gapP99),
          exclusion,
          vs,
        ];
      });
      out.push({
        title: `4. Contention: N = ${n} waiters over ${r.params.contentionSetup.processes} processes on ONE id, ${r.params.contentionSetup.sectionMs} ms critical section`,
        note: `floor (sum of redfour-native's critical sections, mean ${fmt(ours?.sectionMsMean)} ms each) = ${fmt((ours?.floorMs ?? 0) / 1000)} s. gap = end of one section to start of the next (ms). Lock TTL ${r.params.contentionSetup.lockTtl} ms; capped at ${fmt(r.params.contention.capMs / 1000)} s. "ours faster" = peer wall / redfour-native wall (per section when the peer hit the cap).`,
        headers: [
          'library',
          'wall',
          'sections/s',
          'scripts/section',
          'Redis cmds/section',
          'gap p50 ms',
          'gap p99 ms',
          'mutual exclusion',
          'ours faster',
        ],
        rows,
      });
    }
  }
  const sw = r.scale?.waiters;
  if (sw) {
    const ours = sw[OURS];
    const rows = LIBS.filter((l) => sw[l]).map((lib) => {
      const s = sw[lib];
      if (!ok(s)) return [lib, 'error', '', '', '', '', '', ''];
      return [
        lib,
        fmt(s.rssOverBaseMB),
        fmt(s.jsHeapOverBaseMB),
        fmt(s.peakOverBaseMB),
        fmt(s.commandsPerSecWhileWaiting),
        s.drainedWithinLimit ? fmt(s.drainMs) : `${s.acquired}/${s.waiters} in ${fmt(r.params.scale.drainLimitMs / 1000)} s`,
        lib === OURS || !ok(ours) ? '' : fmtRatio(s.rssOverBaseMB / ours.rssOverBaseMB),
      ];
    });
    out.push({
      title: `5a. Scale: ${r.params.scale.waiters.toLocaleString('en-US')} waiters on distinct ids in one process`,
      note: 'RSS after gc over the same process before the waiters started (peak sampled every 100 ms); JS heap = V8 heapUsed + external, the rest of the RSS growth is native memory (or freed memory the allocator keeps). Redis commands/s over 1 s while all of them wait, after their first attempts; then the holder (another process) releases all, and drain = time until the last waiter holds its lock.',
      headers: [
        'library',
        'RSS over base MB',
        'of which JS heap MB',
        'peak over base MB',
        'Redis cmds/s while waiting',
        'drain ms',
        'ours smaller (RSS)',
      ],
      rows,
    });
  }
  const si = r.scale?.instances;
  if (si) {
    const rows = LIBS.filter((l) => si[l]).map((lib) => {
      const s = si[lib];
      if (!ok(s)) return [lib, 'error', '', ''];
      return [
        lib,
        String(s.sockets),
        fmt(s.rssMB),
        s.sharedClient ? 'takes a client: all share one ioredis client the caller made' : 'URL',
      ];
    });
    out.push({
      title: `5b. Scale: ${r.params.scale.instances.toLocaleString('en-US')} Lock instances on one URL`,
      note: 'Sockets = CLIENT LIST delta after every instance made one acquire/release and one waitAcquire. RSS after gc over the process before the instances.',
      headers: ['library', 'sockets', 'RSS MB', 'constructed from'],
      rows,
    });
  }
  const ov = r.overhead;
  if (ov) {
    const rows = [];
    const nl = ov.node.latency;
    const nt = ov.node.throughput;
    const add = (layer, lat, tp) =>
      rows.push([layer, ok(lat) ? fmt(lat.p50) : 'n/a', ok(lat) ? fmt(lat.p99) : 'n/a', ok(tp) ? fmt(tp.pairsPerSec) : 'n/a']);
    const rustOk = ov.rust && !ov.rust.skipped;
    if (rustOk) {
      add(`Rust: core driven from Rust (tokio, ${ov.rust.workerThreads} worker)`, ov.rust.latency, ov.rust.throughput);
      if (ov.rust.scriptFloor) add("Rust: the core's two scripts on a plain redis-rs connection", ov.rust.scriptFloor, null);
      add('Rust: floor, 2 x EVALSHA of a trivial script on redis-rs', ov.rust.floor, null);
    }
    add(
      "Node: the core's call path (napi class, no facade: how waits and the other modes' calls go)",
      nl['redfour-native (napi only)'],
      nt['redfour-native (napi only)'],
    );
    add('Node: redfour-native (plain calls on the JS thread, lib/plain-calls.js)', nl[OURS], nt[OURS]);
    add('Node: floor, 2 x EVALSHA on ioredis', nl.floor, nt.floor);
    const b = ov.node.boundary;
    if (ok(b))
      rows.push([
        'Node: boundary alone, no-op native call (one call, not a pair)',
        fmt(b.p50),
        fmt(b.p99),
        `${fmt(b.callsPerSec)} calls/s`,
      ]);
    const notes = [];
    if (rustOk) {
      notes.push(
        `Rust in-process hand-off (release to the woken wait_acquire): p50 ${fmt(ov.rust.handoff.p50 / 1000)} ms, p99 ${fmt(ov.rust.handoff.p99 / 1000)} ms.`,
      );
      if (ov.rust.scale) {
        const f = ov.rust.scale.futureBytes;
        notes.push(
          `${ov.rust.scale.waiters.toLocaleString('en-US')} waiters driven from Rust: ${fmt(ov.rust.scale.rssOverBaseMB)} MB RSS over base (drain ${fmt(ov.rust.scale.drainMs)} ms); future sizes: acquire ${f.acquire} B, release ${f.release} B, wait_acquire ${f.waitAcquire} B.`,
        );
      }
    } else {
      notes.push(`Rust side: ${ov.rust?.skipped}.`);
    }
    if (ok(nl[OURS]) && ok(nl['redfour-native (napi only)'])) {
      notes.push(
        `A single-server Lock's plain calls skip the core's path: ${fmt(nl['redfour-native (napi only)'].p50 - nl[OURS].p50)} µs less per pair (p50) than through the napi class.`,
      );
    }
    if (rustOk && ok(nl['redfour-native (napi only)'])) {
      const scripts = ov.rust.scriptFloor
        ? ` (the engine over its own scripts on a raw connection: ${fmt(ov.rust.latency.p50 - ov.rust.scriptFloor.p50)} µs; the rest is the scripts' work in Redis)`
        : '';
      notes.push(
        `Boundary cost per pair (napi p50 - Rust p50): ${fmt(nl['redfour-native (napi only)'].p50 - ov.rust.latency.p50)} µs. In Rust, the core over the trivial-script floor: ${fmt(ov.rust.latency.p50 - ov.rust.floor.p50)} µs${scripts}.`,
      );
    }
    out.push({
      title: '6. The native boundary: the same core driven from Rust and from Node',
      note: `Same sequential and 64-loop workloads as scenarios 1 and 2. ${notes.join(' ')}`,
      headers: ['layer', 'pair p50 µs', 'pair p99 µs', 'pairs/s (64 loops)'],
      rows,
    });
  }
  const topo = r.topologies;
  if (topo && Object.keys(topo.rows || {}).length) {
    const single = topo.rows['single:redfour-native'];
    const rows = Object.values(topo.rows).map((row) => {
      const head = [`${row.lib} (${row.mode})`, row.nodes ?? ''];
      if (!ok(row)) return [...head, 'error', '', '', '', '', '', '', ''];
      const l = row.latency;
      const t = row.throughput;
      const h = row.handoff;
      const vsSingle = ok(single) && row !== single ? fmtRatio(l.p50 / single.latency.p50) : '';
      return [
        ...head,
        fmt(l.p50),
        fmt(l.p99),
        vsSingle,
        fmt(t.pairsPerSec),
        fmt(t.commandsPerPair),
        fmt(t.scriptsPerPair),
        fmt(h.p50),
        h.failures ? `${fmt(h.p99)} (${h.failures} failed)` : fmt(h.p99),
      ];
    });
    const p = r.params.topologies;
    const vs = (n) => {
      const a = topo.rows[`quorum-${n}:redfour-native`];
      const b = topo.rows[`quorum-${n}:redlock`];
      if (!ok(a) || !ok(b)) return null;
      return `over ${n} masters a sequential redfour-native pair takes ${fmtRatio(a.latency.p50 / b.latency.p50)} redlock's time (p50), its 64 loops do ${fmtRatio(a.throughput.pairsPerSec / b.throughput.pairsPerSec)} redlock's pairs/s, and its hand-off is ${fmtRatio(b.handoff.p50 / a.handoff.p50)} faster (p50; pub/sub against polling)`;
    };
    const comparisons = [vs(3), vs(5)].filter(Boolean);
    const setupError = topo.setup?.clusterError ? ` Cluster setup failed: ${topo.setup.clusterError}.` : '';
    out.push({
      title:
        '7. Topologies: redfour-native on one server, a quorum of independent masters and a Redis Cluster; redlock@4 on the same masters',
      note:
        'The single-server row is the reference: one script round trip per acquire and one per release. ' +
        'In quorum (Redlock) mode an acquire takes 2 parallel rounds: the acquire script on every master at once, then, once a majority granted, the fencing token (the largest counter the granting nodes returned) is committed on every node that granted (at least a majority; all of them for a free lock); a release is one parallel round on every master. ' +
        'A pair therefore costs 3 round trips (each as slow as the slowest node it waits for) instead of 2, and its Redis work grows with the number of masters: 3 script calls per master per pair. ' +
        'redlock@4 acquires in one round (SET NX PX in a script on every master) and releases in one, but gives no fencing token, and a waiter polls (retry every ' +
        `${r.params.pollMs} ms ± ${r.params.pollMs / 2} ms) instead of hearing the release. In Cluster mode each lock lives on the one shard its hash tag maps to, so a pair costs what it costs on a single server; waiters hear the release through sharded pub/sub. ` +
        `All servers are private redis-servers on loopback ports on this same machine (the quorum rows share the first 3 of 5 masters; no replicas), so a round trip costs the same on every node and the figures show the protocol's cost, not network distance. ` +
        `Per row and round: a fresh process; ${Math.ceil(p.count / p.rounds).toLocaleString('en-US')} sequential acquire + release pairs on distinct ids after ${p.warmup} warm-up; ${p.loops} concurrent loops for ${fmt(p.durationMs / 1000)} s after ${fmt(p.warmupMs / 1000)} s warm-up; then ${Math.ceil(p.handoffs / p.rounds)} hand-offs within the process between two Lock instances (two Redlock instances on the same ioredis clients for redlock): the waiter starts waiting, ${p.settleMs} ms later the holder releases, and the figure is release call → waiter holds. ${p.rounds} round(s), rows in alternating order. ` +
        `Redis cmds/pair = INFO commandstats deltas summed over every node of the row (commands run inside scripts included, INFO excluded), over the throughput phase, divided by the pairs done; scripts/pair counts EVALSHA/EVAL calls only. "vs single" = row p50 / single-server p50 (how many times slower).` +
        (comparisons.length ? ` In this run ${comparisons.join('; ')}.` : '') +
        (topo.seconds ? ` The section took ${fmt(topo.seconds)} s, its servers and cluster included.` : '') +
        setupError,
      headers: [
        'lock (mode)',
        'nodes',
        'pair p50 µs',
        'pair p99 µs',
        'p50 vs single',
        'pairs/s (64 loops)',
        'Redis cmds/pair (all nodes)',
        'scripts/pair',
        'hand-off p50 ms',
        'hand-off p99 ms',
      ],
      rows,
    });
  }
  const ol = r.openloop;
  if (ol && Object.keys(ol.rates || {}).length) {
    const p = r.params.openloop;
    const rows = [];
    const threadRows = [];
    for (const [rate, byLib] of Object.entries(ol.rates)) {
      const peer = byLib.redfour;
      for (const [lib, row] of Object.entries(byLib)) {
        const head = [Number(rate).toLocaleString('en-US'), lib];
        if (!ok(row)) {
          rows.push([...head, 'error', '', '', '', '', '', '', '', '', '', '']);
          continue;
        }
        const mine = lib.startsWith(OURS) && ok(peer);
        const vs = (a, b) => (mine ? fmtRatio(a / b) : '');
        const trouble =
          row.failures || row.errors || row.incomplete
            ? ` (${row.failures} failed, ${row.errors} errors, ${row.incomplete} incomplete)`
            : '';
        rows.push([
          ...head,
          `${fmt(row.achieved)}${trouble}`,
          fmt(row.cpuUsPerPair),
          `${fmt(row.coreShare * 100)} %`,
          fmt(row.redisCpuUsPerPair),
          fmt(row.switchesPerPair),
          fmt(row.p50),
          fmt(row.p99),
          `${fmt(row.serviceP50)} / ${fmt(row.serviceP99)}`,
          vs(peer?.cpuUsPerPair, row.cpuUsPerPair),
          vs(peer?.p50, row.p50),
          vs(peer?.p99, row.p99),
        ]);
        const t = row.threads || {};
        const cell = (x) => (x ? `${fmt(x.cpuUsPerPair)} / ${fmt(x.voluntaryPerPair)} / ${fmt(x.involuntaryPerPair)}` : '');
        const others = ['nodeBoot', 'nodeLater'].map((k) => t[k]).filter(Boolean);
        const otherCpu = others.reduce((a, x) => a + x.cpuUsPerPair, 0) + (row.exited?.cpuUsPerPair || 0);
        const otherSw = others.reduce((a, x) => a + x.voluntaryPerPair + x.involuntaryPerPair, 0) + (row.exited?.switchesPerPair || 0);
        threadRows.push([
          ...head,
          cell(t.js),
          cell(t.runtime),
          `${fmt(otherCpu)} / ${fmt(otherSw)}`,
          fmt(Object.values(t).reduce((a, x) => a + x.runQueueUsPerPair, 0)),
        ]);
      }
    }
    const loads = Object.values(ol.rates)
      .flatMap((byLib) => Object.values(byLib).flatMap((row) => (row.rounds || []).map((x) => x.load1)))
      .filter(Number.isFinite);
    const loadNote = loads.length
      ? ` Load average (1 min) when its processes started: ${fmt(Math.min(...loads))} to ${fmt(Math.max(...loads))} (the scenario's own processes account for up to about 1 of it at 10,000/s; the machine is shared, and more than that means other work ran and the figures are noisy).`
      : '';
    out.push({
      title: '8. Open loop: Poisson arrivals of acquire + release pairs on fresh ids at fixed rates, one process (per pair)',
      note:
        `Arrivals come from a generator process through a pipe (as requests reach a service), on the same schedule for every library; each starts a pair at once, whatever is still in flight (open loop). ` +
        `Per rate and library: ${p.rounds} round(s) of ${fmt(p.durationMs / 1000)} s measured after ${fmt(p.warmupMs / 1000)} s of warm-up at that rate, a fresh process each, libraries in alternating order. ` +
        `Latency p50/p99 from the arrival's scheduled time to the release's completion (the time a request waits unread counts: no coordinated omission); service = from the moment the pair was started. ` +
        `Client CPU = user + system time of the whole process (every thread, getrusage; /proc/self/stat agrees), over the measured window, divided by the pairs completed in it, and as a share of one core; Redis CPU = redis-server's threads (/proc/<pid>/task/*/schedstat); context switches = voluntary + involuntary of the whole process (getrusage, exited threads included). ` +
        `"vs redfour" = redfour's figure / this row's (above 1: better than redfour). Targets of issue 15: p50 and p99 no higher than redfour's at every rate, client CPU no more than redfour's at 200/s and at most 0.8x at 2,000 and 10,000/s.${loadNote}`,
      headers: [
        'pairs/s offered',
        'library',
        'achieved pairs/s',
        'client CPU µs/pair',
        'client CPU (of a core)',
        'Redis CPU µs/pair',
        'ctx switches/pair',
        'p50 µs',
        'p99 µs',
        'service p50 / p99 µs',
        'vs redfour: CPU',
        'vs redfour: p50',
        'vs redfour: p99',
      ],
      rows,
    });
    out.push({
      title: "8b. Open loop: where the client's CPU and context switches go (per pair, by thread)",
      note: "From /proc/self/task/*/schedstat (CPU, run-queue wait) and /status (switches), over the same windows: CPU µs / voluntary switches (the thread went to sleep and had to be woken) / involuntary (preempted). JS = the main thread; runtime = redfour-native's tokio thread; other = Node's other threads (V8 platform workers, libuv threadpool) and any that exited (CPU µs / all switches). Run-queue wait = time the process's threads were ready to run but waited for a CPU.",
      headers: ['pairs/s offered', 'library', 'JS thread', 'runtime thread', 'other threads', 'run-queue wait µs/pair'],
      rows: threadRows,
    });
  }
  return out;
}

function targetRows(r) {
  return (r.targets || []).map((t) => [t.scenario, t.target, t.value, t.met ? 'met' : 'NOT met']);
}

function consoleTables(r) {
  const parts = [];
  for (const s of sections(r)) parts.push(`\n${s.title}\n${table(s.headers, s.rows)}`);
  parts.push(`\nTargets (issues 3 and 15)\n${table(['scenario', 'target', 'value', 'verdict'], targetRows(r))}`);
  return parts.join('\n');
}

/** Whether the figures are those of the commit, and whether the build changed during the run. */
function buildNote(start, end) {
  const dirty = (b) => (b.uncommitted.length ? `uncommitted changes in ${b.uncommitted.join(', ')}` : 'library sources as committed');
  let text = `at start: ${dirty(start)}`;
  if (end && JSON.stringify(end) !== JSON.stringify(start)) {
    text += `; **changed during the run** (addon built ${end.addonBuilt} at the end; ${dirty(end)}): processes started after the change used the new build`;
  } else {
    text += '; unchanged during the run';
  }
  return text;
}

function markdown(r, { jsonPath }) {
  const m = r.machine;
  const lines = [];
  lines.push('# redfour-native benchmark results');
  lines.push('');
  lines.push(
    `Generated by \`npm run ${r.quick ? 'bench:quick' : 'bench'}\` (bench/run.js${r.quick ? ' --quick' : ''}) on ${r.date}, in ${fmt(r.seconds)} s. Raw figures: [${jsonPath}](${jsonPath}).`,
  );
  lines.push(
    `Every library ran in the same run, against the same private redis-server (loopback, no persistence), each in fresh Node processes${r.topologies ? '; scenario 7 also on private independent masters and a Redis Cluster started the same way' : ''}.`,
  );
  lines.push('');
  lines.push('## Machine');
  lines.push('');
  lines.push(
    mdTable(
      ['item', 'value'],
      [
        ['cores (nproc)', m.nproc],
        ['CPU', `${m.cpu}${m.cpuMHz ? ` (${fmt(m.cpuMHz)} MHz)` : ''}`],
        ['memory', `${m.memoryGiB} GiB`],
        ['kernel', m.kernel],
        ['Node.js', m.node],
        ['Redis', m.redis],
        ['Rust', m.rustc],
        [
          'load average (1, 5, 15 min)',
          `${(m.loadAverage || []).join(', ')} at start; ${(m.loadAverageAtEnd || []).join(', ')} at end (other sessions share this machine)`,
        ],
        ...(r.calibration
          ? [
              [
                'loopback PING round trip (ioredis)',
                `${fmt(r.calibration.pingHot.p50)} µs p50 / ${fmt(r.calibration.pingHot.p99)} µs p99 back to back; ${fmt(r.calibration.pingAfterIdle.p50)} µs p50 / ${fmt(r.calibration.pingAfterIdle.p99)} µs p99 after ${r.calibration.idleMs} ms idle`,
              ],
            ]
          : []),
        ['redfour-native', `${m.versions['redfour-native']} (commit ${m.commit}, addon built ${m.addonBuilt})`],
        ...(m.buildAtStart ? [['working tree', buildNote(m.buildAtStart, m.buildAtEnd)]] : []),
        [
          'peers',
          `redfour ${m.versions.redfour}, ioredfour ${m.versions.ioredfour}, redlock ${m.versions.redlock}, redis-semaphore ${m.versions['redis-semaphore']}, ioredis ${m.versions.ioredis}`,
        ],
      ],
      { numeric: false },
    ),
  );
  lines.push('');
  lines.push(r.openloop ? '## Targets of issues 3 and 15' : '## Targets of issue 3');
  lines.push('');
  lines.push(
    mdTable(
      ['scenario', 'target', 'measured', 'verdict'],
      targetRows(r).map((row) => [...row.slice(0, 3), row[3] === 'met' ? '**met**' : '**not met**']),
      { numeric: false },
    ),
  );
  lines.push('');
  if (r.chart) {
    lines.push(`![hand-off and contention](${r.chart})`);
    lines.push('');
  }
  lines.push('## Figures');
  lines.push('');
  lines.push('Ratios are "how many times better redfour-native is" (above 1: redfour-native wins; below 1: it loses).');
  lines.push('');
  for (const s of sections(r)) {
    lines.push(`### ${s.title}`);
    lines.push('');
    if (s.note) {
      lines.push(s.note);
      lines.push('');
    }
    lines.push(mdTable(s.headers, s.rows));
    lines.push('');
  }
  lines.push('## Method');
  lines.push('');
  lines.push(`- Clock: ${r.clock?.source}; ${r.clock?.rounds} parent→child→parent round trips, ${r.clock?.outOfOrder} out of order.`);
  lines.push(
    `- Waiting: redfour-native, redfour and ioredfour wait on pub/sub (their waitAcquireLock); redlock (retryCount -1, retryDelay ${r.params.pollMs} ms, jitter ${r.params.pollMs / 2} ms) and redis-semaphore (Mutex, retryInterval ${r.params.pollMs} ms, its default) poll.`,
  );
  lines.push(
    '- Contention: the critical section reads a counter file, marks it busy, works for 1 ms (Atomics.wait, a timed futex sleep that uses no CPU, checked against hrtime; setTimeout(1) takes 1-2 ms and spinning would take a core from Redis), checks nobody touched it, writes count+1; a lost update or an overlap would show as counter ≠ sections or as a violation. Script calls and commands per section are INFO commandstats deltas over the whole run (INFO itself excluded), divided by the sections completed.',
  );
  lines.push(
    '- Scale: redlock and redis-semaphore take a client instead of a URL, so their 1,000 instances share one ioredis client made by the caller; redfour, ioredfour and redfour-native are given the URL.',
  );
  lines.push('');
  // A link, not a copy: DIAGNOSIS.md is written by hand and kept current on its own.
  lines.push(DIAGNOSIS_LINK);
  return `${lines.join('\n')}\n`;
}

module.exports = { targets, consoleTables, markdown, sections };
