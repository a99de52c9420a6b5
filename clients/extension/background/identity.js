/**
 * The install's user id: a random UUID made once per install, and the iterated SHA-256 of it
 * that the API sees (see `deriveUserId` in the live client). Both live in
 * `chrome.storage.local` under `identity`, so the 5000 hashing rounds run once per install,
 * not on every worker start.
 *
 * @module background/identity
 */

import { deriveUserId } from '../lib/realtube-live.js';

const KEY = 'identity';

/**
 * The user id (64 lowercase hex chars), made and stored on first use.
 * @returns {Promise<string>}
 */
export async function userId() {
  const stored = (await chrome.storage.local.get(KEY))[KEY];
  if (stored?.uuid && /^[0-9a-f]{64}$/.test(stored.userId ?? '')) return stored.userId;
  const uuid = stored?.uuid ?? crypto.randomUUID();
  const identity = { uuid, userId: await deriveUserId(uuid) };
  await chrome.storage.local.set({ [KEY]: identity });
  return identity.userId;
}
