/**
 * Worker -> extension pages and tabs: applied deltas go to every tab (the content script of
 * a YouTube page, or of none: those sends fail and are ignored), status changes go to open
 * extension pages (the popup).
 *
 * @module background/broadcast
 */

/**
 * Send `{type: "deltas", videos, channels, reset}` to every open tab.
 * @param {{videos: object[], channels: object[], reset: boolean}} change
 * @returns {Promise<void>}
 */
export async function deltasToTabs({ videos, channels, reset }) {
  const message = { type: 'deltas', videos, channels, reset: Boolean(reset) };
  const tabs = await chrome.tabs.query({});
  await Promise.all(
    tabs.map((tab) =>
      tab.id === undefined
        ? null
        : chrome.tabs.sendMessage(tab.id, message).catch(() => {
            // no content script in that tab (not a matching page, or still loading)
          }),
    ),
  );
}

/**
 * Send `{type: "status", ...status}` to open extension pages; nobody listening is fine.
 * @param {object} status
 */
export function statusToPages(status) {
  chrome.runtime.sendMessage({ type: 'status', ...status }).catch(() => {});
}
