'use strict';
// Turns whatever the user passed as `options.redis` into one redis:// or rediss:// URL for the
// Rust core. Unlike redfour, credentials, database and TLS of an existing client are kept, so
// every connection we open (commands and the subscriber) authenticates the same way.

const { invalidArg } = require('./errors');

const SCHEMES = new Set(['redis:', 'rediss:', 'redis+unix:', 'unix:']);

function checkUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw invalidArg(`options.redis is not a valid Redis URL: ${redact(text)}`);
  }
  if (!SCHEMES.has(url.protocol)) {
    throw invalidArg(`options.redis must be a redis:// or rediss:// URL, got scheme ${url.protocol}`);
  }
  if ((url.protocol === 'redis:' || url.protocol === 'rediss:') && !url.hostname) {
    throw invalidArg(`options.redis has no host: ${redact(text)}`);
  }
  if (url.pathname && url.pathname !== '/' && url.protocol !== 'unix:' && url.protocol !== 'redis+unix:') {
    const db = url.pathname.slice(1);
    if (!/^\d+$/.test(db)) throw invalidArg(`options.redis has a database that is not a number: ${redact(text)}`);
  }
  return text;
}

/** Replaces the password in a URL so it can go into an error message. */
function redact(text) {
  return String(text).replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

function isUnset(value) {
  return value === undefined || value === null || value === '';
}

/** A port or database number given as a number or a numeric string (never coerced from objects). */
function wholeNumber(value, fallback, name) {
  if (isUnset(value)) return fallback;
  const number = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(number) || number < 0) {
    throw invalidArg(`${name} must be a non-negative integer, got ${typeof value === 'symbol' ? 'a symbol' : typeof value}`);
  }
  return number;
}

function buildUrl({ host, port, username, password, db, tls }) {
  if (!isUnset(host) && typeof host !== 'string') throw invalidArg(`Redis host must be a string, got ${typeof host}`);
  host = isUnset(host) ? '127.0.0.1' : host;
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  port = wholeNumber(port, 6379, 'Redis port');
  if (port < 1 || port > 65535) throw invalidArg(`Redis port must be 1-65535, got ${port}`);
  db = wholeNumber(db, 0, 'Redis database');
  if (username !== undefined && username !== null && typeof username !== 'string') {
    throw invalidArg('Redis username must be a string');
  }
  if (password !== undefined && password !== null && typeof password !== 'string') {
    throw invalidArg('Redis password must be a string');
  }
  let auth = '';
  if (username || password) {
    auth = `${username ? encodeURIComponent(username) : ''}${password ? `:${encodeURIComponent(password)}` : ''}@`;
  }
  return checkUrl(`${tls ? 'rediss' : 'redis'}://${auth}${host}:${port}/${db}`);
}

/** A unix socket: redis-rs's `redis+unix:///path?db=N&user=U&pass=P`. */
function unixUrl(path, { username, password, db }) {
  if (typeof path !== 'string' || path === '') throw invalidArg('Redis socket path must be a non-empty string');
  const query = new URLSearchParams();
  if (!isUnset(db)) query.set('db', String(wholeNumber(db, 0, 'Redis database')));
  if (username) query.set('user', username);
  if (password) query.set('pass', password);
  const search = query.toString();
  return `redis+unix://${encodeURI(path)}${search ? `?${search}` : ''}`;
}

/** node-redis v4 allows `url` plus separate credentials and database; the separate ones win. */
function mergeUrl(text, { username, password, db }) {
  checkUrl(text);
  const url = new URL(text);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return text;
  if (username) url.username = encodeURIComponent(username);
  if (password) url.password = encodeURIComponent(password);
  if (!isUnset(db)) url.pathname = `/${wholeNumber(db, 0, 'Redis database')}`;
  return checkUrl(url.toString());
}

function fromOptionsObject(options) {
  const socket = options.socket && typeof options.socket === 'object' ? options.socket : {};
  const credentials = {
    username: options.username ?? options.user,
    password: options.password ?? options.auth_pass,
    db: options.db ?? options.database,
  };
  if (typeof options.url === 'string') return mergeUrl(options.url, credentials); // node-redis v4 style
  const path = options.path ?? socket.path;
  if (path !== undefined) return unixUrl(path, credentials);
  return buildUrl({
    ...credentials,
    host: options.host ?? socket.host,
    port: options.port ?? socket.port,
    tls: Boolean(options.tls || socket.tls),
  });
}

function fromClient(client) {
  // node-redis 2.x/3.x: `address` is "host:port"; the options object has the credentials.
  if (typeof client.address === 'string') {
    const opts = client.options || {};
    const sep = client.address.lastIndexOf(':');
    return buildUrl({
      host: client.connection_options?.host ?? client.address.slice(0, sep),
      port: client.connection_options?.port ?? client.address.slice(sep + 1),
      username: opts.user ?? opts.username,
      password: opts.password ?? opts.auth_pass,
      db: client.selected_db ?? opts.db,
      tls: Boolean(opts.tls),
    });
  }
  // ioredis and node-redis 4.x both keep their constructor options on `.options`.
  return fromOptionsObject(client.options);
}

function isClient(value) {
  return typeof value.address === 'string' || (typeof value.duplicate === 'function' && value.options && typeof value.options === 'object');
}

function connectionUrl(redis) {
  if (typeof redis === 'string') return checkUrl(redis);
  if (redis && typeof redis === 'object') return isClient(redis) ? fromClient(redis) : fromOptionsObject(redis);
  throw invalidArg('options.redis must be a URL string, an options object, or a Redis client');
}

/**
 * The URLs of `options.redis`: one for a single server, or one per independent master when an
 * array is given (quorum mode; an odd number of at least three is the sensible choice).
 */
function connectionUrls(redis) {
  if (!Array.isArray(redis)) return [connectionUrl(redis)];
  if (redis.length === 0) throw invalidArg('options.redis must not be an empty array');
  const urls = redis.map(connectionUrl);
  if (new Set(urls).size !== urls.length) throw invalidArg('options.redis lists the same server twice');
  return urls;
}

function pem(value, name) {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) {
    const parts = value.map((v) => pem(v, name));
    if (parts.some((part) => part === undefined)) throw invalidArg(`${name} must not contain empty entries`);
    return Buffer.concat(parts);
  }
  if (typeof value === 'string') return Buffer.from(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value);
  throw invalidArg(`${name} must be PEM text (string or Buffer)`);
}

/**
 * TLS settings from the Lock's `tls` option, or else from `from` (by default the `redis` option:
 * an ioredis-style `tls` object, or node-redis `socket` fields) or the client instance it names.
 */
function tlsOptions(options, from = options.redis) {
  const redis = from && typeof from === 'object' && !Array.isArray(from) ? from : {};
  const source = redis.options && typeof redis.options === 'object' ? redis.options : redis;
  const candidates = [options.tls, source.tls, source.socket];
  const found = candidates.find((c) => c && typeof c === 'object' && (c.ca || c.cert || c.key || c.rejectUnauthorized === false));
  if (options.tls !== undefined && options.tls !== null && typeof options.tls !== 'object') {
    throw invalidArg('options.tls must be an object with ca, cert, key, rejectUnauthorized');
  }
  if (!found) return {};
  return {
    tlsCa: pem(found.ca, 'tls.ca'),
    tlsCert: pem(found.cert, 'tls.cert'),
    tlsKey: pem(found.key, 'tls.key'),
    insecure: found.rejectUnauthorized === false,
  };
}

/** redis-rs skips certificate checks for a `rediss://` URL ending in `#insecure`. */
function markInsecure(url) {
  return url.startsWith('rediss://') && !url.includes('#') ? `${url}#insecure` : url;
}

/**
 * Sentinel mode (ioredis's option names): `{ sentinels: [{ host, port }, ...], name,
 * sentinelPassword?, sentinelUsername?, password?, username?, db?, tls? }`. Returns the native
 * options: the sentinels' URLs, the master's name, and a URL whose host the core replaces with
 * the master's address (it carries the master's credentials, database and scheme).
 */
function sentinelOptions(redis) {
  if (!redis || typeof redis !== 'object' || Array.isArray(redis) || redis.sentinels === undefined) return null;
  if (!Array.isArray(redis.sentinels) || redis.sentinels.length === 0) {
    throw invalidArg('options.redis.sentinels must be a non-empty array of { host, port } or URLs');
  }
  if (typeof redis.name !== 'string' || redis.name === '') {
    throw invalidArg('options.redis.name must name the master the sentinels monitor');
  }
  const sentinels = redis.sentinels.map((s) =>
    typeof s === 'string'
      ? checkUrl(s)
      : buildUrl({ host: s && s.host, port: s && s.port, username: redis.sentinelUsername, password: redis.sentinelPassword }),
  );
  const { sentinels: _s, name: _n, ...master } = redis;
  const url = buildUrl({
    host: 'sentinel-master',
    port: 6379,
    username: master.username ?? master.user,
    password: master.password,
    db: master.db ?? master.database,
    tls: Boolean(master.tls),
  });
  return { url, sentinels, sentinelMaster: redis.name };
}

/** A cluster seed as ioredis takes it: `{ host, port }`, a port number, `'host:port'` or a URL. */
function seedNode(node, redisOptions) {
  if (typeof node === 'number') node = { port: node };
  if (typeof node === 'string') {
    if (node.includes('://')) return node;
    const sep = node.lastIndexOf(':');
    node = sep < 0 ? { host: node } : { host: node.slice(0, sep), port: node.slice(sep + 1) };
  }
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    throw invalidArg('options.cluster seed nodes must be { host, port } objects, ports or redis:// URLs');
  }
  const { username, password, tls } = redisOptions;
  return { username, password, tls, ...node };
}

function clusterSeeds(nodes, clusterOptions, name) {
  if (!Array.isArray(nodes) || nodes.length === 0) throw invalidArg(`${name} must be a non-empty array of seed nodes`);
  const redisOptions =
    clusterOptions && typeof clusterOptions === 'object' && clusterOptions.redisOptions && typeof clusterOptions.redisOptions === 'object'
      ? clusterOptions.redisOptions
      : {};
  return { redis: nodes.map((node) => seedNode(node, redisOptions)), cluster: true, tlsSource: redisOptions };
}

/**
 * Where to connect and in which mode, from the constructor's options, ioredfour's forms
 * included: `redisConnection` is an alias of `redis` (and wins, as in ioredfour), and cluster
 * mode is `cluster: true` with the seed(s) in `redis`, or ioredfour's `cluster: [{ host, port },
 * ...]` (ioredis Cluster options in `clusterOptions`) or `cluster: { nodes, options }`, or an
 * ioredis Cluster client as `redis`. Credentials and TLS of the seeds come from the Cluster
 * options' `redisOptions`. Returns `{ redis, cluster, tlsSource }`, or `redis: undefined` when
 * nothing says where Redis is. `tlsSource` is what `tlsOptions` reads TLS settings from.
 */
function resolveTarget(options) {
  const redis = options.redisConnection || options.redis;
  const { cluster } = options;
  if (redis && typeof redis === 'object' && redis.isCluster === true && Array.isArray(redis.startupNodes)) {
    return clusterSeeds(redis.startupNodes, redis.options, "the Cluster client's startupNodes");
  }
  if (cluster === undefined || cluster === null || typeof cluster === 'boolean') {
    return { redis, cluster: cluster === true, tlsSource: redis };
  }
  // An existing client wins over cluster seeds, as in ioredfour.
  if (redis && typeof redis === 'object' && isClient(redis)) return { redis, cluster: true, tlsSource: redis };
  if (Array.isArray(cluster)) return clusterSeeds(cluster, options.clusterOptions, 'options.cluster');
  if (typeof cluster === 'object') {
    return clusterSeeds(cluster.nodes || cluster.startupNodes, cluster.options || options.clusterOptions, 'options.cluster.nodes');
  }
  throw invalidArg(`options.cluster must be a boolean, an array of seed nodes or { nodes, options }, got ${typeof cluster}`);
}

/**
 * What a URL built above says, read back: `where` (`host:port` or a socket path, never
 * credentials: what messages and events name it by), `socket` (net.connect's options),
 * `username`, `password`, `db`, and `secure` / `insecure` (rediss://, and `#insecure` for no
 * certificate check, as redis-rs reads it).
 */
function parseUrl(text) {
  const url = new URL(text);
  if (url.protocol === 'redis+unix:' || url.protocol === 'unix:') {
    const path = decodeURI(url.pathname);
    const q = url.searchParams;
    return {
      where: path,
      socket: { path },
      username: q.get('user') || undefined,
      password: q.get('pass') || undefined,
      db: Number(q.get('db') || 0),
      secure: false,
      insecure: false,
    };
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = Number(url.port || 6379);
  return {
    where: `${url.hostname}:${port}`,
    socket: { host, port },
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: Number(url.pathname.slice(1) || 0),
    secure: url.protocol === 'rediss:',
    insecure: url.hash === '#insecure',
  };
}

/**
 * Where the Lock connects, for error messages ("Redis at 127.0.0.1:6379"): `host:port` of each
 * URL (never credentials), a socket path, or a sentinel master's name and its sentinels.
 */
function describeEndpoints(urls, { sentinels, sentinelMaster, cluster } = {}) {
  const where = (text) => {
    try {
      return parseUrl(text).where;
    } catch {
      return 'an unparsable address';
    }
  };
  if (sentinels) return `Redis master "${sentinelMaster}" via sentinels ${sentinels.map(where).join(', ')}`;
  const list = urls.map(where).join(', ');
  if (cluster) return `Redis Cluster seeds ${list}`;
  return urls.length > 1 ? `Redis nodes ${list}` : `Redis at ${list}`;
}

module.exports = {
  connectionUrl,
  connectionUrls,
  sentinelOptions,
  tlsOptions,
  markInsecure,
  redact,
  resolveTarget,
  describeEndpoints,
  parseUrl,
};
