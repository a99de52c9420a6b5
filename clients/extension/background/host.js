/**
 * The one `RealTubeLive` client of the extension: made from the stored settings on the first
 * event of a worker's life, restarted when a setting it depends on changes.
 *
 * Chrome stops an idle service worker and starts it again on the next event (an alarm, a
 * message, browser start); everything this module holds is rebuilt then from storage: the
 * settings and user id from `chrome.storage.local`, the synced data, cursor, pending votes
 * and due times from the client's IndexedDB. So a restarted worker resumes from its cursor.
 *
 * @module background/host
 */

import { RealTubeLive } from '../lib/realtube-live.js';
import { loadSettings } from '../settings.js';
import { deltasToTabs, statusToPages } from './broadcast.js';
import { userId } from './identity.js';

/** IndexedDB database of the client's data. */
export const DB_NAME = 'realtube-live';
/** `chrome.storage.session` key: when the last delta was applied (survives worker restarts). */
const LAST_DELTA_KEY = 'lastDeltaAt';

/** `chrome.storage.local` key: the API base whose data the IndexedDB database holds. */
const DATA_OF_KEY = 'dataOf';

/** @type {Promise<RealTubeLive|null>|null} the client being started, or started */
let current = null;
/** Serializes starts and restarts, so two events never build two clients. */
let lifecycle = Promise.resolve();
/** Settings of the running client (null when there is none). */
let running = null;
/** Why there is no client (invalid settings), in plain words; null when there is one. */
let configError = null;
/** @type {number|null} */
let lastDeltaAt = null;
/** The client whose start (a first full sync included) is under way: status() reads it. */
let starting = null;

/**
 * The started client; starts it on first use. Null when the settings do not allow one (the
 * reason is in {@link status}'s `lastError`).
 * @returns {Promise<RealTubeLive|null>}
 */
export function ensureClient() {
  if (!current) {
    current = lifecycle.then(startClient);
    lifecycle = current.catch(() => null);
  }
  return current;
}

/**
 * Replace the client with one made from the stored settings, unless the settings it needs
 * (API base, live, polling period) are the ones it already runs with.
 * @returns {Promise<RealTubeLive|null>}
 */
export function restartClient() {
  const previous = current;
  const next = lifecycle.then(async () => {
    const { settings, errors } = await loadSettings();
    const client = await previous?.catch(() => null);
    if (client && running && !errors.apiBase && !needsRestart(running, settings)) return client;
    await client?.stop();
    return startClient();
  });
  current = next;
  lifecycle = next.catch(() => null);
  return next;
}

/**
 * Whether a change of settings needs a new client (the API, live on/off, polling period).
 * @param {object|undefined} before
 * @param {object|undefined} after
 */
export function needsRestart(before, after) {
  return ['apiBase', 'live', 'pollMinutes'].some((k) => before?.[k] !== after?.[k]);
}

/**
 * The status the popup shows (see the extension README for the fields).
 * @returns {Promise<object>}
 */
export async function status() {
  // during a start the client already says what it does (e.g. syncing): no waiting for it
  const client = starting ?? (await ensureClient());
  if (!client) {
    return {
      state: 'error',
      transport: null,
      lastDeltaAt,
      cachedVideos: 0,
      pendingVotes: 0,
      lastError: configError,
      nextRetryAt: null,
      cursor: null,
    };
  }
  const s = client.status;
  const counts = await client.counts().catch(() => ({ videos: 0, pendingVotes: 0 }));
  return {
    state: s.state,
    transport: s.transport,
    lastDeltaAt: lastDeltaAt ?? (await storedLastDelta()),
    cachedVideos: counts.videos,
    pendingVotes: counts.pendingVotes,
    lastError: s.lastError ?? null,
    nextRetryAt: s.nextRetryAt ?? null,
    cursor: s.cursor,
  };
}

/**
 * A started client for the stored settings (null when they are invalid). The database is
 * emptied first when it holds another server's data: a cursor means nothing to another log.
 * @returns {Promise<RealTubeLive|null>}
 */
async function startClient() {
  const { settings, errors } = await loadSettings();
  running = null;
  if (errors.apiBase) {
    configError = errors.apiBase;
    return null;
  }
  configError = null;
  const { [DATA_OF_KEY]: dataOf } = await chrome.storage.local.get(DATA_OF_KEY);
  if (dataOf !== settings.apiBase) {
    await deleteDatabase(DB_NAME);
    await chrome.storage.local.set({ [DATA_OF_KEY]: settings.apiBase });
  }
  const client = new RealTubeLive({
    baseUrl: settings.apiBase,
    userId: await userId(),
    dbName: DB_NAME,
    transports: settings.live ? ['ws', 'sse', 'poll'] : ['poll'],
    deltaIntervalMs: settings.pollMinutes * 60 * 1000,
  });
  client.addEventListener('change', ({ detail }) => {
    if (detail.videos.length || detail.channels.length) noteDelta();
    deltasToTabs(detail).catch(() => {});
  });
  client.addEventListener('status', () => {
    status()
      .then(statusToPages)
      .catch(() => {});
  });
  starting = client;
  try {
    await client.start();
  } finally {
    if (starting === client) starting = null;
  }
  running = settings;
  return client;
}

function noteDelta() {
  lastDeltaAt = Date.now();
  chrome.storage.session?.set({ [LAST_DELTA_KEY]: lastDeltaAt }).catch(() => {});
}

/** @returns {Promise<number|null>} */
async function storedLastDelta() {
  if (!chrome.storage.session) return null;
  lastDeltaAt = (await chrome.storage.session.get(LAST_DELTA_KEY))[LAST_DELTA_KEY] ?? null;
  return lastDeltaAt;
}

/** @param {string} name */
function deleteDatabase(name) {
  return new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = request.onblocked = () => resolve();
  });
}
