/**
 * The extension's settings: defaults, validation, and reading/writing them in
 * `chrome.storage.local` under the key `settings`.
 *
 * An ES module without side effects, imported by the background worker, the options page and
 * the popup. Stored settings are always a complete, valid object: `loadSettings()` fills what
 * is missing from the defaults, and `saveSettings()` refuses anything `validateSettings()`
 * does not accept.
 *
 * @module settings
 */

/** `chrome.storage.local` key of the settings object. */
export const SETTINGS_KEY = 'settings';

/** Vote categories, in the order the API documents them. */
export const CATEGORIES = Object.freeze([
  'fully_ai',
  'ai_voiceover',
  'ai_visuals',
  'ai_thumbnails',
  'ai_assisted',
]);

/** Display modes for a flagged video. */
export const MODES = Object.freeze(['hide', 'blur']);

/**
 * @typedef {object} Settings
 * @property {string} apiBase The RealTube API origin (http or https URL, no trailing slash).
 * @property {Object<string, number>} thresholds Per category: a video whose
 *   `min(score, weightedScore)` in that category is at least this (0-100) is flagged (the
 *   content script's rule; see the extension README, "Which videos are flagged").
 * @property {'hide'|'blur'} mode Hide flagged videos, or blur them with a "show anyway" button.
 * @property {boolean} live Keep a live connection (WebSocket/SSE); false = polling only.
 * @property {number} pollMinutes Delta polling period while no live transport works (and with
 *   `live` off). Chrome's alarms fire at most every 30 s in packed extensions (0.5 min);
 *   unpacked extensions allow shorter periods, which tests use.
 */

/** @type {Readonly<Settings>} */
export const DEFAULTS = Object.freeze({
  apiBase: 'http://127.0.0.1:8080',
  thresholds: Object.freeze({
    fully_ai: 50,
    ai_voiceover: 60,
    ai_visuals: 60,
    ai_thumbnails: 70,
    ai_assisted: 80,
  }),
  mode: 'hide',
  live: true,
  pollMinutes: 30,
});

/** Shortest accepted polling period, minutes (unpacked extensions may go below Chrome's 30 s). */
export const MIN_POLL_MINUTES = 0.05;
/** Longest accepted polling period, minutes (one day). */
export const MAX_POLL_MINUTES = 24 * 60;

/**
 * A deep copy of the defaults (safe to modify).
 * @returns {Settings}
 */
export function defaultSettings() {
  return { ...DEFAULTS, thresholds: { ...DEFAULTS.thresholds } };
}

/**
 * Check a settings object (missing fields take their defaults).
 *
 * @param {any} obj Settings as stored or as entered in the options page.
 * @returns {{ok: boolean, settings: Settings, errors: Object<string, string>}} `settings`
 *   is the normalized object (apiBase without trailing slash, numbers as numbers); when `ok`
 *   is false it still holds every valid field, and `errors` maps each bad field (`apiBase`,
 *   `thresholds.fully_ai`, `mode`, `live`, `pollMinutes`) to a message a user can act on.
 */
export function validateSettings(obj) {
  const input = obj && typeof obj === 'object' ? obj : {};
  const settings = defaultSettings();
  /** @type {Object<string, string>} */
  const errors = {};

  if (input.apiBase !== undefined) {
    const base = typeof input.apiBase === 'string' ? input.apiBase.trim() : '';
    const url = parseHttpUrl(base);
    if (!url) {
      errors.apiBase = 'The API URL must be an http:// or https:// address, like https://api.example.org';
    } else if (url.search || url.hash || url.username || url.password) {
      errors.apiBase = 'The API URL must be just the server address, without ?query, #fragment or user name';
    } else {
      settings.apiBase = base.replace(/\/+$/, '');
    }
  }

  if (input.thresholds !== undefined) {
    if (!input.thresholds || typeof input.thresholds !== 'object') {
      errors.thresholds = 'Thresholds must be a number from 0 to 100 per category';
    } else {
      for (const category of CATEGORIES) {
        const raw = input.thresholds[category];
        if (raw === undefined) continue;
        const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
        if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 100) {
          errors[`thresholds.${category}`] = 'A threshold is a number from 0 to 100';
        } else {
          settings.thresholds[category] = value;
        }
      }
    }
  }

  if (input.mode !== undefined) {
    if (MODES.includes(input.mode)) settings.mode = input.mode;
    else errors.mode = 'Choose "hide" or "blur"';
  }

  if (input.live !== undefined) {
    if (typeof input.live === 'boolean') settings.live = input.live;
    else errors.live = 'Live is on (true) or off (false)';
  }

  if (input.pollMinutes !== undefined) {
    const raw = input.pollMinutes;
    const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < MIN_POLL_MINUTES ||
      value > MAX_POLL_MINUTES
    ) {
      errors.pollMinutes = `The polling period is a number of minutes from ${MIN_POLL_MINUTES} to ${MAX_POLL_MINUTES}`;
    } else {
      settings.pollMinutes = value;
    }
  }

  return { ok: Object.keys(errors).length === 0, settings, errors };
}

/**
 * @param {string} text
 * @returns {URL|null} The URL when `text` is an absolute http(s) URL with a host.
 */
function parseHttpUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) return null;
  return url;
}

/**
 * The stored settings, completed with defaults. Stored fields that are invalid (an older
 * version, a hand edit) fall back to their defaults; `errors` says which.
 * @returns {Promise<{settings: Settings, errors: Object<string, string>}>}
 */
export async function loadSettings() {
  const stored = (await chrome.storage.local.get(SETTINGS_KEY))[SETTINGS_KEY];
  const { settings, errors } = validateSettings(stored ?? {});
  return { settings, errors };
}

/**
 * Validate and store settings (merged over the stored ones). Nothing is written when a field
 * is invalid.
 * @param {Partial<Settings>} changes
 * @returns {Promise<{ok: boolean, settings: Settings, errors: Object<string, string>}>}
 */
export async function saveSettings(changes) {
  const stored = (await chrome.storage.local.get(SETTINGS_KEY))[SETTINGS_KEY] ?? {};
  const merged = {
    ...stored,
    ...changes,
    thresholds: { ...(stored.thresholds ?? {}), ...(changes.thresholds ?? {}) },
  };
  const result = validateSettings(merged);
  if (result.ok) await chrome.storage.local.set({ [SETTINGS_KEY]: result.settings });
  return result;
}
