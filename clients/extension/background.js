/**
 * The extension's background service worker (an event page in Firefox).
 *
 * It owns the live client (`background/host.js`) and answers the content scripts and the
 * popup:
 * - `{type: "lookup", videoIds, channelIds}` -> `{videos: {id: entry|null},
 *   channels: {id: entry|null}, settings}` (one IndexedDB read, misses by hash prefix);
 * - `{type: "status"}` -> `{state, transport, lastDeltaAt, cachedVideos, pendingVotes,
 *   lastError, nextRetryAt, cursor}`;
 * - `{type: "vote", videoId, category, channelId?}` -> `{queued, applied?, newScore?, error?}`.
 * Applied deltas go to every tab as `{type: "deltas", videos, channels, reset}`.
 *
 * Every listener is added synchronously at the top level: Chrome delivers the event that
 * woke a stopped worker only to listeners registered during the script's first run.
 */

import { CATEGORIES, loadSettings, SETTINGS_KEY } from './settings.js';
import { ensureClient, needsRestart, restartClient, status } from './background/host.js';

/** Alarm names of the live client all start with this. */
const ALARM_PREFIX = 'realtube:';
const MAX_LOOKUP_IDS = 500;

chrome.alarms.onAlarm.addListener((alarm) => {
  if (!alarm.name.startsWith(ALARM_PREFIX)) return;
  ensureClient()
    .then((client) => client?.onAlarm?.(alarm))
    .catch(() => {});
});

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  const handler = HANDLERS[message?.type];
  if (!handler || sender.id !== chrome.runtime.id) return false;
  handler(message)
    .then(sendResponse)
    .catch((error) => sendResponse({ error: String(error?.message ?? error) }));
  return true; // the answer comes asynchronously
});

chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== 'local' || !changes[SETTINGS_KEY]) return;
  const { oldValue, newValue } = changes[SETTINGS_KEY];
  if (needsRestart(oldValue, newValue)) restartClient().catch(() => {});
});

// Install, browser start: nothing to do beyond starting the client, which the line below does
// for every start of the worker; the listeners make Chrome start the worker for these events.
chrome.runtime.onInstalled.addListener(() => {});
chrome.runtime.onStartup.addListener(() => {});

ensureClient().catch(() => {});

const HANDLERS = {
  /** @param {{videoIds?: unknown, channelIds?: unknown}} message */
  async lookup(message) {
    const videoIds = idList(message.videoIds);
    const channelIds = idList(message.channelIds);
    const { settings } = await loadSettings();
    const client = await ensureClient();
    const videos = {};
    const channels = {};
    if (client) {
      const found = await client.lookupEntries(videoIds, channelIds);
      for (const [id, entry] of found.videos) videos[id] = entry;
      for (const [id, entry] of found.channels) channels[id] = entry;
    } else {
      for (const id of videoIds) videos[id] = null;
      for (const id of channelIds) channels[id] = null;
    }
    return { videos, channels, settings };
  },

  async status() {
    return status();
  },

  /** @param {{videoId?: unknown, category?: unknown, channelId?: unknown}} message */
  async vote(message) {
    const { videoId, category, channelId } = message;
    if (typeof videoId !== 'string' || !videoId) return { queued: false, error: 'No video to vote on' };
    if (!CATEGORIES.includes(/** @type {string} */ (category))) {
      return { queued: false, error: `Unknown category: ${String(category)}` };
    }
    const client = await ensureClient();
    if (!client) return { queued: false, error: (await status()).lastError };
    const options = typeof channelId === 'string' && channelId ? { channelId } : {};
    try {
      return await client.vote(videoId, /** @type {string} */ (category), options);
    } catch (error) {
      return { queued: false, error: String(error?.message ?? error) };
    }
  },
};

/** @param {unknown} ids @returns {string[]} distinct non-empty strings, at most MAX_LOOKUP_IDS */
function idList(ids) {
  if (!Array.isArray(ids)) return [];
  return [...new Set(ids.filter((id) => typeof id === 'string' && id))].slice(0, MAX_LOOKUP_IDS);
}
