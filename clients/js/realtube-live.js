/**
 * RealTube live client: the extension's local cache of flagged videos and channels, kept in
 * sync with the server (docs/protocol.md), plus an offline-safe vote queue.
 *
 * One ES module, no build step; its only dependency is the vendored MessagePack codec next to
 * it (vendor/msgpack-3.1.3.mjs). Works in a page and in an extension's background service
 * worker (it never touches `window` or `document`, and speaks SSE over `fetch`, which service
 * workers have, instead of `EventSource`, which they lack).
 *
 * What it promises:
 * - IndexedDB holds the server's synced dataset as of one cursor `(epoch, seq)`: store
 *   `flagged_videos` (keyed by videoId), `flagged_channels` (keyed by channelId) and the
 *   cursor (store `sync_state`). A batch of deltas and the cursor it leads to are written in
 *   one transaction, so a crash never leaves data and cursor disagreeing.
 * - First run (no cursor) and every `fullSyncIntervalMs` (24 h): full sync. Otherwise it
 *   resumes from the stored cursor: the server replays what was missed, so a reload costs no
 *   full download.
 * - Live: WebSocket (MessagePack frames) first, SSE second, REST polling last (a delta poll
 *   every `deltaIntervalMs`, 30 min, while neither live transport works). Reconnects use
 *   exponential backoff with full jitter; a `resync` answer triggers a full sync.
 * - Deltas are applied in seq order, exactly once: a frame (or the part of it) at or below the
 *   cursor is skipped, a frame that would leave a hole makes the client reconnect from its
 *   cursor instead.
 * - Votes are written to `pending_votes` (with their cast time) before they are sent, and
 *   deleted only once the server answered; while the server is unreachable they wait there
 *   and are sent when it is back. The server keeps the vote with the latest cast time, so an
 *   old queued vote never overrides a newer one cast elsewhere.
 * - In an extension's service worker every wait of a second or more is also a
 *   `chrome.alarms` alarm (names prefixed `realtube:`), and the backoff, the next try and the
 *   vote retry are stored in IndexedDB: a worker that Chrome stopped is started again by the
 *   alarm and carries on from its stored cursor and times (clients/js/README.md, "In a
 *   service worker").
 * - Cache misses can be looked up by hash prefix (`GET /api/videos/{prefix}`): ids are hashed
 *   with WebCrypto SHA-256, misses arriving within `lookupBatchMs` are grouped by prefix (one
 *   request answers every id sharing it) and the answer is filtered locally, so the server
 *   learns a prefix, never the video.
 *
 * @module realtube-live
 */

import { decode, encode } from './vendor/msgpack-3.1.3.mjs';

/** Protocol version spoken by this client. */
export const PROTOCOL_VERSION = 1;
/** WebSocket subprotocol for binary MessagePack frames. */
export const MSGPACK_SUBPROTOCOL = 'realtube.v1.msgpack';
/** IndexedDB object store names. */
export const STORES = Object.freeze({
  videos: 'flagged_videos',
  channels: 'flagged_channels',
  votes: 'pending_votes',
  state: 'sync_state',
});

const STATE_KEY = 'cursor';
/** `sync_state` key of the waits a stopped service worker must find again (see Schedule). */
const SCHEDULE_KEY = 'schedule';
/** Alarm names of the client start with this (an extension routes its alarms by it). */
export const ALARM_PREFIX = 'realtube:';
/** An alarm this much before its timer's due time still runs it (alarms are not exact). */
const ALARM_SLACK_MS = 1000;
/** Attempts in a row without a welcome before falling back to the next transport. */
const FALLBACK_AFTER = 2;
/** Added (at random) to a server's whole-second `Retry-After`, so a refused herd spreads. */
const RETRY_AFTER_JITTER_MS = 1000;
/** While live in a service worker, the watch alarm is renewed at most this often. */
const WATCH_RENEW_MS = 10_000;
/** A live session that lasted this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 10_000;
const DB_VERSION = 1;

/**
 * @typedef {object} Options
 * @property {string} [baseUrl] Server origin, e.g. `https://api.realtube.example`
 *   (default: the current origin).
 * @property {string} [userId] The extension's user id (64 lowercase hex chars, see
 *   {@link deriveUserId}); required to vote, and sent as `X-User-ID` on sync requests.
 * @property {string} [dbName] IndexedDB database name (default `realtube-live`).
 * @property {Array<'ws'|'sse'|'poll'>} [transports] Allowed transports, tried in the order
 *   ws, sse, poll (default all three).
 * @property {string[]|null} [buckets] Hash-prefix buckets (1-4 hex chars) to subscribe to;
 *   null (default) = everything.
 * @property {number} [fullSyncIntervalMs] Full sync period (default 24 h).
 * @property {number} [deltaIntervalMs] Delta poll period while live is down (default 30 min).
 * @property {number} [backoffInitialMs] First reconnect delay cap (default 500 ms).
 * @property {number} [backoffMaxMs] Largest reconnect delay cap (default 60 s).
 * @property {number} [upgradeIntervalMs] While on SSE, retry WebSocket this often
 *   (default 5 min).
 * @property {number} [connectTimeoutMs] A live transport that gives no `welcome` within this
 *   counts as failed (default 10 s).
 * @property {number} [lookupBatchMs] Window in which cache-miss lookups are grouped
 *   (default 20 ms).
 * @property {number} [prefixLength] Hash-prefix length of lookups, 4-8 (default 4: the
 *   most privacy and the most ids per request).
 * @property {number} [lookupTtlMs] How long a prefix answer is reused (default 5 min).
 * @property {number} [staleAfterMs] With `remote: 'auto'`, misses are looked up remotely only
 *   while the local data is older than this and live is down (default = deltaIntervalMs).
 * @property {{create: Function, clear: Function, getAll: Function}|null} [alarms] The
 *   `chrome.alarms` API (default: `globalThis.chrome.alarms` when it exists, as in an
 *   extension). With it every wait of a second or more also sets an alarm, so a service
 *   worker that Chrome stopped meanwhile is started again; forward alarms to
 *   {@link RealTubeLive#onAlarm}. `null`: timers only (a page).
 * @property {string} [alarmPrefix] Prefix of the client's alarm names (default `realtube:`).
 */

/**
 * @typedef {object} VideoEntry
 * @property {string} videoId
 * @property {number} score 0-100
 * @property {Object<string, {votes: number, weightedScore: number}>} categories
 * @property {string|null} channelId
 * @property {boolean} locked
 * @property {number} totalVotes
 * @property {string} lastUpdated RFC 3339
 */

/**
 * @typedef {object} ChannelEntry
 * @property {string} channelId
 * @property {number} score
 * @property {boolean} autoFlag New videos of this channel start flagged.
 * @property {boolean} locked
 * @property {number} totalVideos
 * @property {number} flaggedVideos
 * @property {string[]} topCategories
 * @property {string} lastUpdated
 */

/**
 * @typedef {object} SyncState
 * @property {string|null} epoch Log the cursor belongs to (null before the first full sync).
 * @property {number} seq Last applied seq.
 * @property {number} fullSyncAt Epoch ms of the last full sync.
 * @property {number} syncedAt Epoch ms when the data was last known current.
 * @property {string|null} etag ETag of the last full-sync document.
 */

/**
 * @typedef {object} Schedule What a restarted service worker needs to carry on where the
 *   stopped one was (stored in `sync_state` under `schedule`).
 * @property {number} failures Live rounds failed in a row (the backoff's exponent).
 * @property {number} retryAt Epoch ms before which the live loop does not try again.
 * @property {string} state Status shown while waiting (`offline`, `polling`, `connecting`).
 * @property {string|null} transport
 * @property {string|null} lastError
 * @property {number} voteAttempt Vote sends failed in a row.
 * @property {number} voteRetryAt Epoch ms of the next vote send (0: none waiting).
 */

/**
 * @typedef {object} PendingVote
 * @property {string} videoId
 * @property {string} category
 * @property {number} timestamp Cast time, epoch ms (sent as `timestamp`).
 * @property {string} [channelId]
 */

const DEFAULTS = Object.freeze({
  dbName: 'realtube-live',
  alarmPrefix: ALARM_PREFIX,
  transports: ['ws', 'sse', 'poll'],
  buckets: null,
  fullSyncIntervalMs: 24 * 60 * 60 * 1000,
  deltaIntervalMs: 30 * 60 * 1000,
  backoffInitialMs: 500,
  backoffMaxMs: 60 * 1000,
  upgradeIntervalMs: 5 * 60 * 1000,
  connectTimeoutMs: 10 * 1000,
  lookupBatchMs: 20,
  prefixLength: 4,
  lookupTtlMs: 5 * 60 * 1000,
});

/** An HTTP answer other than 2xx/304. */
export class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} code Contract error code (`RATE_LIMITED`, ...) or `HTTP_<status>`.
   * @param {string} message
   * @param {number|null} retryAfter Seconds, from `Retry-After`.
   */
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The server said the cursor cannot be served: a full sync is needed. */
class ResyncNeeded extends Error {}
/** A frame starts after the cursor: reconnect from the cursor so the server fills the hole. */
class GapError extends Error {}

// ---------------------------------------------------------------------------------------------
// Small helpers

/**
 * Lowercase hex SHA-256 of a string (WebCrypto).
 * @param {string} text
 * @returns {Promise<string>}
 */
export async function sha256Hex(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  let hex = '';
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

/**
 * The user id the API expects from an extension: SHA-256 of its local UUID, iterated
 * (`h = uuid; repeat: h = sha256hex(h)`), 5000 rounds by default.
 * @param {string} localUuid A random UUID the extension stores once.
 * @param {number} [rounds]
 * @returns {Promise<string>} 64 lowercase hex chars.
 */
export async function deriveUserId(localUuid, rounds = 5000) {
  let value = localUuid;
  for (let i = 0; i < rounds; i += 1) value = await sha256Hex(value);
  return value;
}

/**
 * Full-jitter exponential backoff: a random delay in [0, min(max, initial * 2^attempt)].
 * @param {number} attempt 0 for the first retry.
 * @param {number} initialMs
 * @param {number} maxMs
 * @returns {number}
 */
export function backoffDelay(attempt, initialMs, maxMs) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.random() * cap;
}

/** @param {IDBRequest} request @returns {Promise<any>} */
function requestDone(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** @param {IDBTransaction} tx @returns {Promise<void>} */
function transactionDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new DOMException('transaction aborted', 'AbortError'));
  });
}

/**
 * Open (creating or upgrading) the client's database.
 * @param {string} name
 * @returns {Promise<IDBDatabase>}
 */
export function openDatabase(name) {
  const request = indexedDB.open(name, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    if (!db.objectStoreNames.contains(STORES.videos)) {
      db.createObjectStore(STORES.videos, { keyPath: 'videoId' });
    }
    if (!db.objectStoreNames.contains(STORES.channels)) {
      db.createObjectStore(STORES.channels, { keyPath: 'channelId' });
    }
    if (!db.objectStoreNames.contains(STORES.votes)) {
      // one pending vote per video: voting again before it is sent replaces it (latest wins)
      const votes = db.createObjectStore(STORES.votes, { keyPath: 'videoId' });
      votes.createIndex('timestamp', 'timestamp');
    }
    if (!db.objectStoreNames.contains(STORES.state)) db.createObjectStore(STORES.state);
  };
  return requestDone(request);
}

/**
 * The stored form of a video delta / full-sync item.
 * @param {any} item
 * @returns {VideoEntry}
 */
function videoEntry(item) {
  return {
    videoId: item.videoId,
    score: item.score,
    categories: item.categories ?? {},
    channelId: item.channelId ?? null,
    locked: Boolean(item.locked),
    totalVotes: item.totalVotes ?? 0,
    lastUpdated: item.lastUpdated,
  };
}

/**
 * The stored form of a channel delta / full-sync item.
 * @param {any} item
 * @returns {ChannelEntry}
 */
function channelEntry(item) {
  return {
    channelId: item.channelId,
    score: item.score,
    autoFlag: Boolean(item.autoFlag),
    locked: Boolean(item.locked),
    totalVideos: item.totalVideos ?? 0,
    flaggedVideos: item.flaggedVideos ?? 0,
    topCategories: item.topCategories ?? [],
    lastUpdated: item.lastUpdated,
  };
}

/**
 * Parse a `text/event-stream` body incrementally.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(event: {event: string, data: string, id: string|null}) => void} onEvent
 * @param {() => void} onComment Called for every comment line (the server's `: ping`).
 * @returns {Promise<void>} Resolves when the stream ends.
 */
async function readEventStream(body, onEvent, onComment) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent({ event, data: data.join('\n'), id });
        event = 'message';
        data = [];
        continue;
      }
      if (line.startsWith(':')) {
        onComment();
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value2 = colon < 0 ? '' : line.slice(colon + 1);
      if (value2.startsWith(' ')) value2 = value2.slice(1);
      if (field === 'event') event = value2;
      else if (field === 'data') data.push(value2);
      else if (field === 'id') id = value2;
    }
  }
}

/**
 * A failure in plain words, for a status line.
 * @param {unknown} error
 * @param {string} baseUrl
 * @returns {string}
 */
export function plainError(error, baseUrl) {
  if (error instanceof HttpError) {
    const detail = `HTTP ${error.status} ${error.code}: ${error.message}`;
    if (error.status === 403) return `The server at ${baseUrl} refused this client (${detail})`;
    if (error.status === 429) return `The server at ${baseUrl} asks to slow down (${detail})`;
    if (error.status >= 500) return `The server at ${baseUrl} has a problem (${detail})`;
    return `The server at ${baseUrl} answered ${detail}`;
  }
  if (error instanceof TypeError) return `Cannot reach the server at ${baseUrl}`;
  return String(/** @type {any} */ (error)?.message ?? error);
}

/**
 * Named one-shot timers that survive a stopped service worker: each is a `setTimeout` and,
 * when `chrome.alarms` is there, an alarm of the same name (prefixed). Whichever comes first
 * runs it (and clears the other); in a packed extension an alarm fires 30 s after it was set
 * at the soonest, so for a short wait the timer wins unless the worker was stopped. An alarm that finds no
 * timer (the worker was stopped and started again meanwhile) does nothing here: the start
 * of the client already did what was due, from the times stored in IndexedDB.
 */
export class Scheduler {
  /** @type {Map<string, {when: number, fn: () => void, timer: ReturnType<typeof setTimeout>}>} */
  #timers = new Map();
  #alarms;
  #prefix;

  /**
   * @param {{alarms?: any, prefix?: string}} [options] `alarms`: the `chrome.alarms` API, or
   *   null for timers only.
   */
  constructor({ alarms = null, prefix = ALARM_PREFIX } = {}) {
    this.#alarms = alarms;
    this.#prefix = prefix;
  }

  /**
   * Run `fn` at `when` (epoch ms), replacing an earlier schedule of `name`.
   * @param {string} name
   * @param {number} when
   * @param {() => void} fn
   */
  at(name, when, fn) {
    this.cancel(name);
    const delay = Math.max(0, when - Date.now());
    const timer = setTimeout(() => this.#fire(name), Math.min(delay, 2 ** 31 - 1));
    this.#timers.set(name, { when, fn, timer });
    this.alarm(name, when);
  }

  /**
   * Set only the alarm `name` (no timer): it starts a stopped worker at `when`.
   * @param {string} name
   * @param {number} when
   */
  alarm(name, when) {
    if (!this.#alarms) return;
    try {
      Promise.resolve(this.#alarms.create(this.#prefix + name, { when })).catch(() => {});
    } catch {
      // an alarms API that refuses (a browser without it in this context): timers only
    }
  }

  /** @param {string} name @returns {boolean} whether `name` is scheduled. */
  has(name) {
    return this.#timers.has(name);
  }

  /** @param {string} name */
  cancel(name) {
    const entry = this.#timers.get(name);
    if (entry) clearTimeout(entry.timer);
    this.#timers.delete(name);
    this.#clearAlarm(name);
  }

  /**
   * Cancel every timer, and every alarm of this prefix (also those of an earlier worker).
   * Await it before another client sets its alarms, or this may clear them.
   * @returns {Promise<void>}
   */
  async cancelAll() {
    for (const entry of this.#timers.values()) clearTimeout(entry.timer);
    this.#timers.clear();
    if (!this.#alarms) return;
    try {
      const alarms = (await this.#alarms.getAll()) ?? [];
      await Promise.all(
        alarms.filter((a) => a.name.startsWith(this.#prefix)).map((a) => this.#alarms.clear(a.name)),
      );
    } catch {
      // see alarm()
    }
  }

  /**
   * An alarm fired: run its timer, unless that timer was set for later (then a newer
   * schedule replaced the alarm's).
   * @param {{name: string, scheduledTime?: number}} alarm
   * @returns {boolean} whether it was one of ours.
   */
  onAlarm(alarm) {
    if (!alarm.name.startsWith(this.#prefix)) return false;
    const name = alarm.name.slice(this.#prefix.length);
    const entry = this.#timers.get(name);
    if (entry && Date.now() >= entry.when - ALARM_SLACK_MS) this.#fire(name);
    return true;
  }

  #fire(name) {
    const entry = this.#timers.get(name);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#timers.delete(name);
    this.#clearAlarm(name);
    entry.fn();
  }

  #clearAlarm(name) {
    if (!this.#alarms) return;
    try {
      Promise.resolve(this.#alarms.clear(this.#prefix + name)).catch(() => {});
    } catch {
      // see alarm()
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * The client. Create one per extension (one per database), `start()` it, read with
 * {@link RealTubeLive#get}/{@link RealTubeLive#lookup}, vote with {@link RealTubeLive#vote}.
 *
 * Events (it is an `EventTarget`):
 * - `change`: `detail = {videos, channels, source, reset, cursor}`; `videos`/`channels` are
 *   the applied deltas (each with `action` "update" or "remove"), `source` is `ws`, `sse`,
 *   `poll`, `full` or `lookup`; `reset` is true after a full sync replaced everything.
 * - `status`: `detail = {state, transport, cursor, pendingVotes, lastError, nextRetryAt}`;
 *   `state` is one of `idle`, `syncing`, `connecting`, `live`, `polling`, `offline`,
 *   `stopped`; `lastError` is in plain words; `nextRetryAt` (epoch ms) is when the client
 *   tries again while it waits after a failure (null otherwise).
 * - `vote`: `detail = {videoId, category, timestamp, applied, newScore, error}` when a vote
 *   (queued or not) got its answer from the server.
 */
export class RealTubeLive extends EventTarget {
  /** @type {Required<Options>} */
  #opts;
  /** @type {IDBDatabase|null} */
  #db = null;
  /** @type {SyncState} */
  #state = { epoch: null, seq: 0, fullSyncAt: 0, syncedAt: 0, etag: null };
  #running = false;
  /** @type {Promise<unknown>} serializes every write of the dataset */
  #chain = Promise.resolve();
  #status = { state: 'idle', transport: null, lastError: null, nextRetryAt: null };
  /** @type {Schedule} */
  #schedule = {
    failures: 0,
    retryAt: 0,
    state: 'offline',
    transport: null,
    lastError: null,
    voteAttempt: 0,
    voteRetryAt: 0,
  };
  /** @type {Scheduler} */
  #scheduler;
  #watchRenewedAt = 0;
  #pendingVotes = 0;
  /** @type {Set<() => void>} wakers of sleeping loops */
  #sleepers = new Set();
  /** @type {(() => void)|null} closes the current live connection */
  #closeLive = null;
  /** @type {Promise<void>|null} */
  #loop = null;
  /** @type {Promise<void>|null} */
  #flushing = null;
  #flushAgain = false;
  /** @type {Map<string, {ids: Map<string, Array<(v: VideoEntry|null) => void>>}>} */
  #lookupBatch = new Map();
  /** @type {ReturnType<typeof setTimeout>|null} */
  #lookupTimer = null;
  /** @type {Map<string, {at: number, items: any[]}>} prefix -> answer */
  #prefixCache = new Map();
  #onOnline = () => this.#wakeAll();

  /** @param {Options} [options] */
  constructor(options = {}) {
    super();
    const baseUrl = options.baseUrl ?? globalThis.location?.origin;
    if (!baseUrl) throw new TypeError('baseUrl is required outside a page');
    const opts = { ...DEFAULTS, staleAfterMs: undefined, userId: null, ...options };
    opts.baseUrl = baseUrl.replace(/\/+$/, '');
    opts.staleAfterMs ??= opts.deltaIntervalMs;
    if (opts.prefixLength < 4 || opts.prefixLength > 8) throw new RangeError('prefixLength 4-8');
    this.#opts = /** @type {Required<Options>} */ (opts);
    const alarms = options.alarms !== undefined ? options.alarms : globalThis.chrome?.alarms;
    this.#scheduler = new Scheduler({ alarms: alarms ?? null, prefix: opts.alarmPrefix });
  }

  // -- lifecycle -------------------------------------------------------------------------------

  /**
   * Open the database, full-sync if needed, start the live loop and send queued votes.
   * Resolves once the local data is usable (after the first full sync, or at once when a
   * cursor was stored); a server that is down does not make it fail (the loop keeps trying).
   * @returns {Promise<void>}
   */
  async start() {
    if (this.#running) return;
    this.#db = await openDatabase(this.#opts.dbName);
    const stored = await this.#read(STORES.state, STATE_KEY);
    if (stored) this.#state = { ...this.#state, ...stored };
    const schedule = await this.#read(STORES.state, SCHEDULE_KEY);
    if (schedule) this.#schedule = { ...this.#schedule, ...schedule };
    this.#pendingVotes = await this.#count(STORES.votes);
    this.#running = true;
    globalThis.addEventListener?.('online', this.#onOnline);
    const waiting = this.#schedule.retryAt > Date.now();
    if (waiting) {
      // a stopped worker was waiting out a backoff: show it, and keep waiting
      const { state, transport, lastError, retryAt } = this.#schedule;
      this.#setStatus({ state, transport, lastError, nextRetryAt: retryAt });
    }
    if (this.#fullSyncDue() && !waiting) {
      this.#renewWatch(true);
      try {
        await this.fullSync();
      } catch (error) {
        this.#setStatus({ state: 'offline', lastError: this.#plain(error) });
      }
    }
    this.#scheduleFullSync();
    this.#loop = this.#liveLoop().catch((error) => {
      this.#setStatus({ state: 'offline', transport: null, lastError: this.#plain(error) });
    });
    if (this.#pendingVotes) {
      const due = this.#schedule.voteRetryAt;
      if (due > Date.now()) this.#scheduler.at('votes', due, () => this.flushVotes());
      else this.flushVotes();
    }
  }

  /**
   * Forward `chrome.alarms.onAlarm` here (register that listener synchronously at the top
   * level of the service worker, and start the client before calling this). Alarms of other
   * names are ignored.
   * @param {{name: string, scheduledTime?: number}} alarm
   * @returns {boolean} whether the alarm was the client's.
   */
  onAlarm(alarm) {
    return this.#scheduler.onAlarm(alarm);
  }

  /** Close the live connection, stop every timer and close the database. */
  async stop() {
    if (!this.#running) return;
    this.#running = false;
    globalThis.removeEventListener?.('online', this.#onOnline);
    this.#closeLive?.();
    this.#wakeAll();
    this.#scheduler.cancelAll(); // the timers at once
    if (this.#lookupTimer) clearTimeout(this.#lookupTimer);
    await this.#loop;
    await this.#chain.catch(() => {});
    await this.#flushing;
    await this.#scheduler.cancelAll(); // and what the ending loop may have set meanwhile
    this.#db?.close();
    this.#db = null;
    this.#setStatus({ state: 'stopped', transport: null });
  }

  /** Current status (same shape as the `status` event's detail). */
  get status() {
    return {
      ...this.#status,
      cursor: { epoch: this.#state.epoch, seq: this.#state.seq },
      pendingVotes: this.#pendingVotes,
    };
  }

  /** The stored cursor and sync times. @returns {SyncState} */
  get syncState() {
    return { ...this.#state };
  }

  // -- reads -----------------------------------------------------------------------------------

  /**
   * One video from the local cache.
   * @param {string} videoId
   * @returns {Promise<VideoEntry|null>}
   */
  async get(videoId) {
    return (await this.#read(STORES.videos, videoId)) ?? null;
  }

  /**
   * One channel from the local cache.
   * @param {string} channelId
   * @returns {Promise<ChannelEntry|null>}
   */
  async getChannel(channelId) {
    return (await this.#read(STORES.channels, channelId)) ?? null;
  }

  /**
   * Look up many videos: all from the local cache in one transaction, then the misses
   * through the hash-prefix API, batched.
   *
   * `remote`: `'never'` (local only), `'always'` (every miss), or `'auto'` (default: misses
   * only while the local data cannot be trusted to be complete: never synced, or live down
   * and the last sync older than `staleAfterMs`).
   * @param {string[]} videoIds
   * @param {{remote?: 'auto'|'always'|'never'}} [options]
   * @returns {Promise<Map<string, VideoEntry|null>>} Every requested id; null = not flagged.
   */
  async lookup(videoIds, { remote = 'auto' } = {}) {
    return (await this.lookupEntries(videoIds, [], { remote })).videos;
  }

  /**
   * {@link RealTubeLive#lookup} for a page's batch of videos and channels: both read in one
   * IndexedDB transaction; video misses then go through the hash-prefix API as `lookup`
   * says (channels are never looked up remotely: the synced data holds every flagged one).
   * @param {string[]} videoIds
   * @param {string[]} channelIds
   * @param {{remote?: 'auto'|'always'|'never'}} [options]
   * @returns {Promise<{videos: Map<string, VideoEntry|null>, channels: Map<string,
   *   ChannelEntry|null>}>} Every requested id; null = not flagged.
   */
  async lookupEntries(videoIds, channelIds, { remote = 'auto' } = {}) {
    const videos = new Map();
    const channels = new Map();
    const tx = this.#database().transaction([STORES.videos, STORES.channels], 'readonly');
    const videoStore = tx.objectStore(STORES.videos);
    const channelStore = tx.objectStore(STORES.channels);
    await Promise.all([
      ...videoIds.map(async (id) => videos.set(id, (await requestDone(videoStore.get(id))) ?? null)),
      ...channelIds.map(async (id) =>
        channels.set(id, (await requestDone(channelStore.get(id))) ?? null),
      ),
    ]);
    const misses = videoIds.filter((id) => videos.get(id) === null);
    if (misses.length && this.#shouldLookUp(remote)) {
      const found = await Promise.all(misses.map((id) => this.#remoteLookup(id)));
      misses.forEach((id, i) => videos.set(id, found[i]));
    }
    return { videos, channels };
  }

  /**
   * How many videos and channels the cache holds.
   * @returns {Promise<{videos: number, channels: number, pendingVotes: number}>}
   */
  async counts() {
    return {
      videos: await this.#count(STORES.videos),
      channels: await this.#count(STORES.channels),
      pendingVotes: await this.#count(STORES.votes),
    };
  }

  // -- sync ------------------------------------------------------------------------------------

  /**
   * Replace the local dataset with `GET /api/sync/full` (revalidated with `If-None-Match`).
   * @returns {Promise<{changed: boolean, videos: number, channels: number}>}
   */
  fullSync() {
    return this.#serialize(async () => {
      const previous = this.#status.state;
      this.#setStatus({ state: 'syncing' });
      try {
        const headers = { Accept: 'application/json' };
        if (this.#state.etag && this.#state.epoch) headers['If-None-Match'] = this.#state.etag;
        const response = await this.#fetch('/api/sync/full', { headers }, { identify: true });
        if (response.status === 304) {
          await this.#saveState({ fullSyncAt: Date.now(), syncedAt: Date.now() });
          return { changed: false, videos: -1, channels: -1 };
        }
        const doc = await response.json();
        await this.loadSnapshot(doc, response.headers.get('ETag'));
        return { changed: true, videos: doc.videos.length, channels: doc.channels.length };
      } finally {
        if (this.#status.state === 'syncing') {
          this.#setStatus({ state: previous === 'idle' ? 'connecting' : previous });
        }
      }
    });
  }

  /**
   * Replace the local dataset with a full-sync document (`{videos, channels, cursor, epoch}`)
   * in one transaction. Used by {@link RealTubeLive#fullSync}; public for benchmarks and for
   * extensions that ship a snapshot. Call only while no sync runs (or before `start`).
   * @param {{videos: any[], channels: any[], cursor: number, epoch: string}} doc
   * @param {string|null} [etag]
   * @returns {Promise<void>}
   */
  async loadSnapshot(doc, etag = null) {
    const now = Date.now();
    const state = {
      ...this.#state,
      epoch: doc.epoch,
      seq: doc.cursor,
      fullSyncAt: now,
      syncedAt: now,
      etag,
    };
    const tx = this.#database().transaction(
      [STORES.videos, STORES.channels, STORES.state],
      'readwrite',
    );
    const videos = tx.objectStore(STORES.videos);
    const channels = tx.objectStore(STORES.channels);
    videos.clear();
    channels.clear();
    for (const item of doc.videos) videos.put(videoEntry(item));
    for (const item of doc.channels) channels.put(channelEntry(item));
    tx.objectStore(STORES.state).put(state, STATE_KEY);
    await transactionDone(tx);
    this.#state = state;
    this.#emitChange({ videos: [], channels: [], source: 'full', reset: true });
  }

  /**
   * Catch up now through `GET /api/sync/delta` (following `hasMore`), or full-sync when there
   * is no cursor yet or the server answers `resync`.
   * @returns {Promise<{applied: number, full: boolean}>}
   */
  async refresh() {
    if (!this.#state.epoch) {
      await this.fullSync();
      return { applied: 0, full: true };
    }
    try {
      return { applied: await this.#pollDeltas(), full: false };
    } catch (error) {
      if (!(error instanceof ResyncNeeded)) throw error;
      await this.fullSync();
      return { applied: 0, full: true };
    }
  }

  /**
   * Apply one `deltas` frame (`{epoch, from, to, videos, channels}`) and move the cursor to
   * `to`, in one transaction. Items at or below the cursor are skipped. Used by every
   * transport; public for benchmarks.
   * @param {{epoch: string, from: number, to: number, videos: any[], channels: any[]}} frame
   * @param {string} [source]
   * @returns {Promise<number>} How many deltas were applied.
   */
  applyFrame(frame, source = 'manual') {
    return this.#serialize(() => this.#apply(frame, source));
  }

  // -- votes -----------------------------------------------------------------------------------

  /**
   * Cast a vote. It is stored in `pending_votes` first, then sent; when the server cannot be
   * reached it stays queued and is sent when the server is back.
   * @param {string} videoId
   * @param {string} category `fully_ai`, `ai_voiceover`, `ai_visuals`, `ai_thumbnails`,
   *   `ai_assisted`.
   * @param {{channelId?: string, timestamp?: number}} [options] `timestamp`: cast time in
   *   epoch ms (default now).
   * @returns {Promise<{queued: boolean, applied?: boolean, newScore?: number}>}
   */
  async vote(videoId, category, { channelId, timestamp } = {}) {
    if (!this.#opts.userId) throw new TypeError('a userId option is needed to vote');
    /** @type {PendingVote} */
    const pending = { videoId, category, timestamp: timestamp ?? Date.now() };
    if (channelId) pending.channelId = channelId;
    const tx = this.#database().transaction(STORES.votes, 'readwrite');
    tx.objectStore(STORES.votes).put(pending);
    await transactionDone(tx);
    this.#pendingVotes = await this.#count(STORES.votes);
    this.#setStatus({});
    const outcome = await new Promise((resolve) => {
      const onVote = (event) => {
        const d = event.detail;
        if (d.videoId === videoId && d.timestamp === pending.timestamp) {
          this.removeEventListener('vote', onVote);
          resolve(d);
        }
      };
      this.addEventListener('vote', onVote);
      this.flushVotes().then(() => {
        this.removeEventListener('vote', onVote);
        resolve(null);
      });
    });
    if (!outcome) return { queued: true };
    if (outcome.error) throw new Error(outcome.error);
    return { queued: false, applied: outcome.applied, newScore: outcome.newScore };
  }

  /**
   * Send every queued vote, oldest cast first. Stops at the first network failure and
   * retries later with backoff; a vote the server refuses as invalid is dropped (a `vote`
   * event carries the error). Concurrent calls share one flush.
   * @returns {Promise<void>}
   */
  flushVotes() {
    if (this.#flushing) {
      this.#flushAgain = true; // a vote stored after the running flush read the queue
    } else {
      this.#flushing = this.#flushVotes().finally(() => {
        this.#flushing = null;
      });
    }
    return this.#flushing;
  }

  /** @returns {Promise<PendingVote[]>} The queued votes, oldest first. */
  async pendingVotes() {
    const tx = this.#database().transaction(STORES.votes, 'readonly');
    return requestDone(tx.objectStore(STORES.votes).index('timestamp').getAll());
  }

  // -- internals: votes ------------------------------------------------------------------------

  async #flushVotes() {
    this.#scheduler.cancel('votes');
    do {
      this.#flushAgain = false;
      if (!this.#db || !(await this.#flushQueue())) return;
    } while (this.#flushAgain);
  }

  /** @returns {Promise<boolean>} false when sending stopped at a retryable failure. */
  async #flushQueue() {
    for (const pending of await this.pendingVotes()) {
      let body = null;
      let error = null;
      try {
        const response = await this.#fetch('/api/votes', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({
            videoId: pending.videoId,
            category: pending.category,
            userId: this.#opts.userId,
            timestamp: pending.timestamp,
            ...(pending.channelId ? { channelId: pending.channelId } : {}),
          }),
        });
        body = await response.json();
      } catch (failure) {
        const retryable =
          !(failure instanceof HttpError) || failure.status === 429 || failure.status >= 500;
        if (retryable) {
          this.#retryVotesLater(failure instanceof HttpError ? failure.retryAfter : null);
          return false;
        }
        error = `${failure.code}: ${failure.message}`; // never valid: drop it
      }
      await this.#deleteVoteIfUnchanged(pending);
      if (this.#schedule.voteAttempt || this.#schedule.voteRetryAt) {
        await this.#saveSchedule({ voteAttempt: 0, voteRetryAt: 0 });
      }
      this.dispatchEvent(
        new CustomEvent('vote', {
          detail: {
            videoId: pending.videoId,
            category: pending.category,
            timestamp: pending.timestamp,
            applied: body?.applied ?? false,
            newScore: body?.newScore,
            error,
          },
        }),
      );
    }
    return true;
  }

  /** Delete a sent vote unless a newer one for the same video replaced it meanwhile. */
  async #deleteVoteIfUnchanged(pending) {
    if (!this.#db) return;
    const tx = this.#db.transaction(STORES.votes, 'readwrite');
    const store = tx.objectStore(STORES.votes);
    const current = await requestDone(store.get(pending.videoId));
    if (current && current.timestamp === pending.timestamp) store.delete(pending.videoId);
    await transactionDone(tx);
    this.#pendingVotes = await this.#count(STORES.votes);
    this.#setStatus({});
  }

  /** Send the queue again after a backoff (or the server's `Retry-After`), also after a
   * worker restart (the due time is stored). */
  #retryVotesLater(retryAfterSeconds) {
    if (!this.#running || this.#scheduler.has('votes')) return;
    const { backoffInitialMs, backoffMaxMs } = this.#opts;
    const attempt = this.#schedule.voteAttempt;
    const delay =
      retryAfterSeconds != null
        ? retryAfterSeconds * 1000 + Math.random() * RETRY_AFTER_JITTER_MS
        : backoffDelay(attempt, backoffInitialMs, backoffMaxMs);
    const due = Date.now() + delay;
    this.#scheduler.at('votes', due, () => this.flushVotes());
    this.#saveSchedule({ voteAttempt: attempt + 1, voteRetryAt: due }).catch(() => {});
  }

  // -- internals: the live loop ----------------------------------------------------------------

  /**
   * Keep a live transport up (docs/protocol.md section 7): WebSocket, else SSE (each after
   * {@link FALLBACK_AFTER} attempts in a row without a welcome, or at once after an answer
   * that will not change); with neither, poll deltas every `deltaIntervalMs` and retry live
   * with backoff. The backoff and the time of the next try are stored, so a service worker
   * started again goes on waiting instead of retrying at once.
   */
  async #liveLoop() {
    const kinds = ['ws', 'sse'].filter((k) => this.#opts.transports.includes(k));
    if (this.#schedule.retryAt > Date.now()) await this.#sleep(this.#schedule.retryAt - Date.now());
    let index = 0; // the transport tried now; kinds.length: none works, poll
    let misses = 0; // attempts in a row on it that got no welcome
    while (this.#running) {
      this.#renewWatch(true); // until the next wait: requests in flight have no alarm
      if (!this.#state.epoch) {
        // nothing to resume from: the full sync must succeed first
        try {
          await this.fullSync();
        } catch (error) {
          const lastError = this.#plain(error);
          this.#setStatus({ state: 'offline', transport: null, lastError });
          await this.#retryLater(this.#backoff(this.#schedule.failures), { failed: true });
          continue;
        }
      }
      if (index >= kinds.length) {
        await this.#pollRound(kinds.length > 0);
        index = 0;
        misses = 0;
        continue;
      }
      const kind = kinds[index];
      this.#setStatus({ state: 'connecting', transport: kind, nextRetryAt: null });
      const outcome = kind === 'ws' ? await this.#runWebSocket() : await this.#runSse();
      if (!this.#running) return;
      if (outcome.resync) {
        if (outcome.resyncAfterMs) await this.#retryLater(outcome.resyncAfterMs);
        await this.#fullSyncOrWait();
        // a full-sync document older than the server's log (it is rebuilt periodically)
        // would be answered with resync again: back off instead of spinning
        const stale = outcome.resyncEpoch && outcome.resyncEpoch !== this.#state.epoch;
        if (stale) await this.#retryLater(this.#backoff(this.#schedule.failures), { failed: true });
        else await this.#saveSchedule({ failures: 0 });
        continue;
      }
      if (outcome.overloaded) {
        // the server sheds load: wait as told, then the same transport again
        this.#setStatus({ lastError: 'The server is busy; it asked to come back later' });
        await this.#retryLater(outcome.retryAfterMs ?? this.#backoff(this.#schedule.failures));
        continue;
      }
      if (outcome.fatal) {
        index += 1; // this transport cannot work here: the next one, at once
        misses = 0;
        continue;
      }
      if (outcome.welcomed) {
        // a session that ended soon after its welcome counts as a failure, so an instance
        // that accepts and drops connections is not hammered
        const stable = Date.now() - outcome.welcomedAt >= STABLE_SESSION_MS;
        const failures = stable && !outcome.failed ? 0 : this.#schedule.failures + 1;
        await this.#saveSchedule({ failures });
        index = 0; // (from SSE: back to WebSocket first)
        misses = 0;
        if (outcome.retryAfterMs != null) {
          this.#setStatus({ state: 'connecting' });
          await this.#retryLater(outcome.retryAfterMs);
          continue;
        }
        if (outcome.immediate && failures < 3) continue;
        this.#setStatus({ state: 'connecting' });
        await this.#retryLater(this.#backoff(failures));
        continue;
      }
      misses += 1;
      if (misses >= FALLBACK_AFTER) {
        index += 1;
        misses = 0;
      } else {
        // the second attempt of a round comes soon; the rounds themselves back off
        await this.#retryLater(this.#backoff(0));
      }
    }
  }

  /**
   * No live transport works: poll if due, then wait for the next poll or the next live
   * attempt (backoff), whichever comes first.
   * @param {boolean} liveWanted Whether a live transport is to be retried at all.
   */
  async #pollRound(liveWanted) {
    const polled = await this.#pollIfDue();
    const canPoll = this.#opts.transports.includes('poll');
    const nextPoll = this.#state.syncedAt + this.#opts.deltaIntervalMs - Date.now();
    if (!liveWanted) {
      // polling only: the next poll, or a backoff when the server could not be reached
      const failed = polled === false;
      if (polled === true && this.#schedule.failures) await this.#saveSchedule({ failures: 0 });
      const delay = failed ? this.#backoff(this.#schedule.failures) : nextPoll;
      await this.#retryLater(delay, { failed });
      return;
    }
    const delay = this.#backoff(this.#schedule.failures);
    await this.#retryLater(canPoll && polled !== false ? Math.min(delay, nextPoll) : delay, {
      failed: true,
    });
  }

  /**
   * Wait `ms` before the next attempt, visibly (`nextRetryAt`) and durably (a restarted
   * worker waits out the rest).
   * @param {number} ms
   * @param {{failed?: boolean}} [options] `failed`: count a failed round (grows the backoff).
   */
  async #retryLater(ms, { failed = false } = {}) {
    if (!this.#running) return;
    const retryAt = Date.now() + Math.max(0, ms);
    const { state, transport, lastError } = this.#status;
    const failures = this.#schedule.failures + (failed ? 1 : 0);
    this.#setStatus({ nextRetryAt: retryAt });
    await this.#saveSchedule({ failures, retryAt, state, transport, lastError }).catch(() => {});
    this.#scheduler.cancel('watch'); // the wait's own alarm takes over
    await this.#sleep(retryAt - Date.now());
    if (this.#status.nextRetryAt === retryAt) this.#setStatus({ nextRetryAt: null });
  }

  /** Full sync; on failure wait a backoff so the loop does not spin. */
  async #fullSyncOrWait() {
    try {
      await this.fullSync();
    } catch (error) {
      this.#setStatus({ state: 'offline', lastError: this.#plain(error) });
      await this.#retryLater(this.#backoff(this.#schedule.failures), { failed: true });
    }
  }

  /**
   * Store schedule changes (a key of its own in `sync_state`, apart from the cursor).
   * @param {Partial<Schedule>} changes
   */
  async #saveSchedule(changes) {
    this.#schedule = { ...this.#schedule, ...changes };
    if (!this.#db) return;
    const tx = this.#db.transaction(STORES.state, 'readwrite');
    tx.objectStore(STORES.state).put(this.#schedule, SCHEDULE_KEY);
    await transactionDone(tx);
  }

  /** @param {unknown} error @returns {string} */
  #plain(error) {
    return plainError(error, this.#opts.baseUrl);
  }

  /**
   * A delta poll when polling is allowed and the data is older than `deltaIntervalMs`.
   * @returns {Promise<boolean|null>} true = polled, false = the server is unreachable,
   *   null = not due (or polling not allowed).
   */
  async #pollIfDue() {
    if (!this.#opts.transports.includes('poll')) {
      this.#setStatus({ state: 'offline', transport: null });
      return null;
    }
    if (Date.now() - this.#state.syncedAt < this.#opts.deltaIntervalMs) {
      this.#setStatus({ state: 'polling', transport: 'poll' });
      return null;
    }
    try {
      await this.refresh();
      this.#setStatus({ state: 'polling', transport: 'poll', lastError: null });
      if (this.#pendingVotes) this.flushVotes();
      return true;
    } catch (error) {
      this.#setStatus({ state: 'offline', transport: null, lastError: this.#plain(error) });
      return false;
    }
  }

  /**
   * Follow `/api/sync/delta?cursor=&epoch=` until `hasMore` is false.
   * @returns {Promise<number>} Deltas applied.
   */
  #pollDeltas() {
    return this.#serialize(async () => {
      let applied = 0;
      for (;;) {
        const { epoch, seq } = this.#state;
        const query = `cursor=${seq}&epoch=${encodeURIComponent(epoch)}`;
        const response = await this.#fetch(
          `/api/sync/delta?${query}`,
          { headers: { Accept: 'application/json' } },
          { identify: true },
        );
        const page = await response.json();
        if (page.resync) throw new ResyncNeeded('the server asked for a full sync');
        applied += await this.#apply(
          {
            epoch: page.epoch,
            from: seq + 1,
            to: page.cursor,
            videos: page.videos,
            channels: page.channels,
          },
          'poll',
        );
        await this.#saveState({ syncedAt: Date.now() });
        if (!page.hasMore) return applied;
      }
    });
  }

  /**
   * One WebSocket session: hello with the cursor, then frames until it closes.
   * @returns {Promise<LiveOutcome>}
   */
  #runWebSocket() {
    return new Promise((resolve) => {
      const url = `${this.#opts.baseUrl.replace(/^http/, 'ws')}/api/live/ws`;
      /** @type {LiveOutcome} */
      const outcome = { welcomed: false, resync: false, retryAfterMs: null };
      let socket;
      try {
        socket = new WebSocket(url, [MSGPACK_SUBPROTOCOL]);
      } catch {
        resolve(outcome);
        return;
      }
      socket.binaryType = 'arraybuffer';
      const watch = this.#watchdog(() => socket.close(), outcome);
      const finish = () => {
        watch.stop();
        this.#closeLive = null;
        resolve(outcome);
      };
      this.#closeLive = () => socket.close(1000);
      socket.onopen = () => socket.send(encode(this.#hello()));
      socket.onmessage = (event) => {
        watch.alive();
        let message;
        try {
          message = decode(new Uint8Array(event.data));
        } catch {
          outcome.failed = true;
          socket.close(1000);
          return;
        }
        this.#onFrame(message, 'ws', outcome, watch, () => socket.close(1000), (frame) =>
          socket.send(encode(frame)),
        );
      };
      socket.onclose = (event) => {
        if (event.code === 4000) outcome.resync = true;
        // policy, too large, protocol error: retrying this transport cannot help
        if ([1008, 1009, 4001].includes(event.code)) outcome.fatal = true;
        if (event.code === 1013) outcome.overloaded = true; // after its notice, or backoff
        if (!outcome.welcomed && !outcome.resync && !outcome.overloaded && !outcome.fatal) {
          // a refused handshake (403, 429, 503) looks the same as no server to browser code
          this.#status.lastError =
            `The WebSocket to ${this.#opts.baseUrl} failed: refused by the server` +
            ' (e.g. this origin is not allowed), blocked on the way, or the server is down';
        }
        finish();
      };
    });
  }

  /**
   * One SSE session over `fetch` (service workers have no `EventSource`).
   * @returns {Promise<LiveOutcome>}
   */
  async #runSse() {
    /** @type {LiveOutcome} */
    const outcome = { welcomed: false, resync: false, retryAfterMs: null };
    const controller = new AbortController();
    const close = () => controller.abort();
    const watch = this.#watchdog(close, outcome);
    this.#closeLive = close;
    const params = new URLSearchParams({ epoch: this.#state.epoch, seq: String(this.#state.seq) });
    if (this.#opts.buckets) params.set('buckets', this.#opts.buckets.join(','));
    try {
      const response = await this.#fetch(`/api/live/sse?${params}`, {
        headers: { Accept: 'text/event-stream' },
        signal: controller.signal,
        cache: 'no-store',
      });
      await readEventStream(
        response.body,
        ({ event, data }) => {
          watch.alive();
          let message;
          try {
            message = JSON.parse(data);
          } catch {
            return;
          }
          if (!message.t) message.t = event;
          this.#onFrame(message, 'sse', outcome, watch, close, null);
        },
        () => watch.alive(),
      );
    } catch (error) {
      if (!controller.signal.aborted) this.#sseRefused(error, outcome);
    } finally {
      watch.stop();
      this.#closeLive = null;
    }
    return outcome;
  }

  /**
   * Classify a failed SSE request: `Retry-After` on 503/429 (the server sheds load: wait,
   * same transport), an answer that will not change (400, 401, 403, 404: next transport at
   * once), anything else (a miss: backoff, fall back after two).
   * @param {unknown} error
   * @param {LiveOutcome} outcome
   */
  #sseRefused(error, outcome) {
    this.#status.lastError = this.#plain(error);
    if (!(error instanceof HttpError)) return;
    if ((error.status === 503 || error.status === 429) && error.retryAfter != null) {
      outcome.overloaded = true;
      outcome.retryAfterMs = error.retryAfter * 1000 + Math.random() * RETRY_AFTER_JITTER_MS;
    } else if ([400, 401, 403, 404].includes(error.status)) {
      outcome.fatal = true;
    }
  }

  /**
   * @typedef {object} LiveOutcome
   * @property {boolean} welcomed The server welcomed us (the transport works).
   * @property {number} [welcomedAt] When (epoch ms).
   * @property {boolean} resync The server asked for a full sync.
   * @property {string} [resyncEpoch] The server's epoch, as its resync frame said.
   * @property {number|null} retryAfterMs The instance went away, or is overloaded:
   *   reconnect after this.
   * @property {number} [resyncAfterMs] Wait this before the full sync a resync asks for.
   * @property {boolean} [overloaded] The server sheds load: wait, then the same transport.
   * @property {boolean} [fatal] This transport cannot work here: the next one at once.
   * @property {boolean} [failed] Ended by an error worth backing off for.
   * @property {boolean} [immediate] Reconnect at once (a hole to fill, an upgrade to try).
   */

  /**
   * Handle one server frame of either live transport.
   * @param {any} message
   * @param {'ws'|'sse'} kind
   * @param {LiveOutcome} outcome
   * @param {{alive: () => void, welcomed: (heartbeat: number) => void}} watch
   * @param {() => void} close
   * @param {((frame: object) => void)|null} send
   */
  #onFrame(message, kind, outcome, watch, close, send) {
    switch (message.t) {
      case 'welcome':
        outcome.welcomed = true;
        outcome.welcomedAt = Date.now();
        watch.welcomed(message.heartbeat);
        // live on a fallback transport: the reason the preferred one failed stays visible
        this.#setStatus({
          state: 'live',
          transport: kind,
          lastError:
            kind === 'ws' || !this.#opts.transports.includes('ws') ? null : this.#status.lastError,
        });
        if (message.resume === 'live') {
          this.#serialize(() => this.#saveState({ syncedAt: Date.now() })).catch(() => {});
        }
        if (this.#pendingVotes) this.flushVotes();
        if (kind === 'sse' && this.#opts.transports.includes('ws')) {
          watch.upgradeAfter(this.#opts.upgradeIntervalMs, () => {
            outcome.immediate = true;
            close();
          });
        }
        break;
      case 'deltas':
        this.applyFrame(message, kind).catch((error) => {
          if (error instanceof ResyncNeeded) outcome.resync = true;
          else outcome.immediate = error instanceof GapError;
          if (!(error instanceof GapError) && !(error instanceof ResyncNeeded)) {
            outcome.failed = true;
          }
          close();
        });
        break;
      case 'ping':
        send?.({ t: 'pong', id: message.id });
        break;
      case 'resync':
        outcome.resync = true;
        outcome.resyncEpoch = message.epoch;
        outcome.resyncAfterMs = message.retryAfterMs ?? 0;
        if (kind === 'sse') close(); // the stream ends too; do not wait for it
        break;
      case 'reconnect':
        outcome.retryAfterMs = message.retryAfterMs ?? 0;
        if (message.reason === 'overloaded') outcome.overloaded = true;
        if (kind === 'sse') close();
        break;
      case 'error':
        outcome.failed = true;
        if (message.code !== 'IDLE') outcome.fatal = true; // the others repeat on retry
        this.#status.lastError = `The server closed the live connection (${message.code}: ${message.message})`;
        break;
      default:
        break;
    }
  }

  /**
   * Timers of one live session: no welcome within `connectTimeoutMs`, or silence for 2.5
   * heartbeats, closes it; an SSE session may be ended to retry WebSocket. Every sign of
   * life of a welcomed session also renews the watch alarm (see {@link #renewWatch}).
   * @param {() => void} close
   * @param {LiveOutcome} outcome
   */
  #watchdog(close, outcome) {
    let last = Date.now();
    let limit = this.#opts.connectTimeoutMs;
    const timer = setInterval(
      () => {
        if (Date.now() - last > limit) {
          if (outcome.welcomed) outcome.failed = true;
          close();
        }
      },
      Math.min(1000, Math.max(50, limit / 4)),
    );
    return {
      alive: () => {
        last = Date.now();
        if (outcome.welcomed) this.#renewWatch();
      },
      welcomed: (heartbeatSeconds) => {
        last = Date.now();
        limit = Math.max(1000, 2.5 * (heartbeatSeconds ?? 20) * 1000);
        this.#renewWatch(true);
      },
      upgradeAfter: (ms, fn) => {
        const when = Date.now() + ms;
        this.#scheduler.at('upgrade', when, fn);
        this.#setStatus({ nextRetryAt: when }); // when WebSocket is tried again
      },
      stop: () => {
        clearInterval(timer);
        this.#scheduler.cancel('upgrade');
        if (this.#status.nextRetryAt && outcome.welcomed) this.#setStatus({ nextRetryAt: null });
      },
    };
  }

  /**
   * While the client works without a wait of its own (a live session, a connection attempt,
   * a sync or poll in flight) in a service worker: move the alarm `<prefix>watch` to
   * `min(deltaIntervalMs, 60 s)` from now, at most every few seconds. Two jobs: the call is
   * an extension API call, which keeps the worker from being stopped while an SSE stream
   * is up (a streamed `fetch` alone does not; a WebSocket's messages do, since Chrome 116);
   * and should the worker be stopped anyway, the alarm starts it again, and it resumes from
   * its cursor, so the data is never older than the polling period. Every wait has its own
   * alarm instead (see {@link #retryLater}). No-op in a page.
   * @param {boolean} [force] Renew now (a new session).
   */
  #renewWatch(force = false) {
    const period = Math.min(this.#opts.deltaIntervalMs, 60_000);
    const now = Date.now();
    if (!force && now - this.#watchRenewedAt < Math.min(WATCH_RENEW_MS, period / 3)) return;
    this.#watchRenewedAt = now;
    this.#scheduler.alarm('watch', now + period);
  }

  /** The `hello` frame: our cursor and subscription. */
  #hello() {
    const hello = {
      t: 'hello',
      v: PROTOCOL_VERSION,
      epoch: this.#state.epoch,
      seq: this.#state.seq,
      channels: true,
    };
    if (this.#opts.buckets) hello.buckets = this.#opts.buckets;
    return hello;
  }

  // -- internals: applying data ----------------------------------------------------------------

  /**
   * Apply a frame (inside the serialized chain).
   * @returns {Promise<number>}
   */
  async #apply(frame, source) {
    const state = this.#state;
    if (frame.epoch !== state.epoch) throw new ResyncNeeded(`epoch ${frame.epoch}`);
    if (frame.to <= state.seq) return 0;
    if (frame.from > state.seq + 1) throw new GapError(`frame starts at ${frame.from}`);
    const videos = (frame.videos ?? []).filter((v) => v.seq === undefined || v.seq > state.seq);
    const channels = (frame.channels ?? []).filter(
      (c) => c.seq === undefined || c.seq > state.seq,
    );
    const next = { ...state, seq: frame.to, syncedAt: Date.now() };
    const tx = this.#database().transaction(
      [STORES.videos, STORES.channels, STORES.state],
      'readwrite',
    );
    const videoStore = tx.objectStore(STORES.videos);
    const channelStore = tx.objectStore(STORES.channels);
    for (const item of videos) {
      if (item.action === 'remove') videoStore.delete(item.videoId);
      else videoStore.put(videoEntry(item));
    }
    for (const item of channels) {
      if (item.action === 'remove') channelStore.delete(item.channelId);
      else channelStore.put(channelEntry(item));
    }
    tx.objectStore(STORES.state).put(next, STATE_KEY);
    await transactionDone(tx);
    this.#state = next;
    if (videos.length || channels.length) {
      this.#emitChange({ videos, channels, source, reset: false });
    }
    return videos.length + channels.length;
  }

  /** Run `fn` after every earlier dataset write; failures do not break the chain. */
  #serialize(fn) {
    const run = this.#chain.then(fn);
    this.#chain = run.catch(() => {});
    return run;
  }

  async #saveState(changes) {
    const next = { ...this.#state, ...changes };
    const tx = this.#database().transaction(STORES.state, 'readwrite');
    tx.objectStore(STORES.state).put(next, STATE_KEY);
    await transactionDone(tx);
    this.#state = next;
  }

  #fullSyncDue() {
    return !this.#state.epoch || Date.now() - this.#state.fullSyncAt >= this.#opts.fullSyncIntervalMs;
  }

  /**
   * Schedule the next periodic full sync (due `fullSyncIntervalMs` after the last one, not
   * before a stored live retry time; a failed attempt is retried after a backoff-sized
   * pause, not a whole interval). A stopped worker finds it due on its next start.
   * @param {number} [delay] ms; default: when the last full sync becomes due.
   */
  #scheduleFullSync(delay) {
    if (!this.#running) return;
    const due =
      delay !== undefined
        ? Date.now() + delay
        : Math.max(
            this.#state.fullSyncAt + this.#opts.fullSyncIntervalMs,
            this.#schedule.retryAt,
          );
    this.#scheduler.at('full', due, async () => {
      if (!this.#running) return;
      try {
        if (this.#fullSyncDue()) await this.fullSync();
        this.#scheduleFullSync();
      } catch (error) {
        this.#status.lastError = this.#plain(error);
        this.#scheduleFullSync(this.#backoff(5));
      }
    });
  }

  // -- internals: lookups ----------------------------------------------------------------------

  #shouldLookUp(remote) {
    if (remote === 'never') return false;
    if (remote === 'always') return true;
    if (!this.#state.epoch) return true;
    return this.#status.state !== 'live' && Date.now() - this.#state.syncedAt > this.#opts.staleAfterMs;
  }

  /**
   * Resolve one miss through the batched hash-prefix lookup.
   * @param {string} videoId
   * @returns {Promise<VideoEntry|null>}
   */
  async #remoteLookup(videoId) {
    const prefix = (await sha256Hex(videoId)).slice(0, this.#opts.prefixLength);
    const cached = this.#prefixCache.get(prefix);
    if (cached && Date.now() - cached.at < this.#opts.lookupTtlMs) {
      return this.#pick(cached.items, videoId);
    }
    return new Promise((resolve) => {
      let group = this.#lookupBatch.get(prefix);
      if (!group) this.#lookupBatch.set(prefix, (group = { ids: new Map() }));
      if (!group.ids.has(videoId)) group.ids.set(videoId, []);
      group.ids.get(videoId).push(resolve);
      this.#lookupTimer ??= setTimeout(() => this.#sendLookups(), this.#opts.lookupBatchMs);
    });
  }

  /** One request per distinct prefix of the batch; every id of a prefix gets its answer. */
  async #sendLookups() {
    this.#lookupTimer = null;
    const batch = this.#lookupBatch;
    this.#lookupBatch = new Map();
    await Promise.all(
      [...batch].map(async ([prefix, group]) => {
        let items = [];
        try {
          const response = await this.#fetch(`/api/videos/${prefix}`, {
            headers: { Accept: 'application/json' },
          });
          items = await response.json();
          this.#prefixCache.set(prefix, { at: Date.now(), items });
        } catch (error) {
          if (error instanceof HttpError && error.status === 404) {
            this.#prefixCache.set(prefix, { at: Date.now(), items: [] });
          }
        }
        const found = [];
        for (const [videoId, waiters] of group.ids) {
          const entry = this.#pick(items, videoId);
          if (entry && entry.score > 0) found.push(entry);
          for (const resolve of waiters) resolve(entry);
        }
        if (found.length && this.#db) await this.#storeLookups(found);
      }),
    );
  }

  /** The entry for `videoId` in a prefix answer (local filtering), or null. */
  #pick(items, videoId) {
    const item = items.find((v) => v.videoId === videoId);
    return item ? videoEntry(item) : null;
  }

  /** Cache looked-up flagged videos the local data lacked (never overwrite synced ones). */
  async #storeLookups(entries) {
    await this.#serialize(async () => {
      const tx = this.#database().transaction(STORES.videos, 'readwrite');
      const store = tx.objectStore(STORES.videos);
      const added = [];
      for (const entry of entries) {
        const request = store.add(entry);
        request.onsuccess = () => added.push({ ...entry, action: 'update' });
        request.onerror = (event) => event.preventDefault(); // already synced: keep ours
      }
      await transactionDone(tx);
      if (added.length) this.#emitChange({ videos: added, channels: [], source: 'lookup' });
    });
  }

  // -- internals: plumbing ---------------------------------------------------------------------

  /**
   * `fetch` against the server; non-2xx (but 304) answers throw {@link HttpError}.
   * @param {string} path
   * @param {RequestInit} [init]
   * @param {{identify?: boolean}} [options] `identify`: send `X-User-ID` (sync requests).
   * @returns {Promise<Response>}
   */
  async #fetch(path, init = {}, { identify = false } = {}) {
    const headers = { ...(init.headers ?? {}) };
    // Only the sync endpoints are rate-limited per user; lookups never say who asks.
    if (identify && this.#opts.userId) headers['X-User-ID'] = this.#opts.userId;
    const response = await fetch(`${this.#opts.baseUrl}${path}`, { ...init, headers });
    if (response.ok || response.status === 304) return response;
    let code = `HTTP_${response.status}`;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not the contract's error body
    }
    const retryAfter = Number(response.headers.get('Retry-After')) || null;
    throw new HttpError(response.status, code, message, retryAfter);
  }

  /** @returns {IDBDatabase} */
  #database() {
    if (!this.#db) throw new Error('RealTubeLive is not started');
    return this.#db;
  }

  async #read(storeName, key) {
    const tx = this.#database().transaction(storeName, 'readonly');
    return requestDone(tx.objectStore(storeName).get(key));
  }

  async #count(storeName) {
    const tx = this.#database().transaction(storeName, 'readonly');
    return requestDone(tx.objectStore(storeName).count());
  }

  #backoff(attempt) {
    return backoffDelay(attempt, this.#opts.backoffInitialMs, this.#opts.backoffMaxMs);
  }

  /**
   * Sleep `ms`, or less when woken (stop, `online`). Through the scheduler: in a service
   * worker an alarm `<prefix>live` starts the worker again if Chrome stopped it meanwhile.
   */
  #sleep(ms) {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.#scheduler.cancel('live');
        this.#sleepers.delete(wake);
        resolve();
      };
      this.#scheduler.at('live', Date.now() + Math.max(0, ms), wake);
      this.#sleepers.add(wake);
    });
  }

  #wakeAll() {
    for (const wake of [...this.#sleepers]) wake();
    if (this.#running && this.#pendingVotes) this.flushVotes();
  }

  #setStatus(changes) {
    const before = this.#status;
    this.#status = { ...before, ...changes };
    this.dispatchEvent(new CustomEvent('status', { detail: this.status }));
  }

  #emitChange({ videos, channels, source, reset = false }) {
    this.dispatchEvent(
      new CustomEvent('change', {
        detail: {
          videos,
          channels,
          source,
          reset,
          cursor: { epoch: this.#state.epoch, seq: this.#state.seq },
        },
      }),
    );
  }
}

export default RealTubeLive;
