// A YouTube look-alike for the extension's tests: the markup of YouTube's home grid and watch
// page (the element names the content script looks for), built from the query string.
//
// Home:  ./?tiles=ID.CHANNEL,ID.CHANNEL,...&first=12&step=8
//   the first `first` tiles at load, `step` more each time the bottom of the grid scrolls into
//   view (infinite scroll). Even tiles link their channel as /channel/ID, odd ones as /@handle
//   with the id in data-channel-id (YouTube shows both forms). CHANNEL may be left out.
// Watch: ./watch?v=ID&c=CHANNEL&related=ID.CHANNEL,...  (the watch page and its sidebar)
// Search: ./results?results=...&shorts=...&lockups=...&mobile=...  (every other kind of tile)
'use strict';

const RealTubeFixture = (() => {
  const params = new URLSearchParams(location.search);

  function parseTiles(text) {
    if (text === null) {
      return Array.from({ length: 24 }, (_, i) => ({
        videoId: `fixture${String(i).padStart(2, '0')}`,
        channelId: `UCfixture${i % 4}`,
      }));
    }
    return text
      .split(',')
      .filter(Boolean)
      .map((item) => {
        const [videoId, channelId] = item.split('.');
        return { videoId, channelId: channelId || null };
      });
  }

  function hue(text) {
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.charCodeAt(0)) % 360;
    return h;
  }

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function channelLink(tile, index) {
    if (!tile.channelId) return el('a', { href: '/@unknown' }, ['Some channel']);
    if (index % 2 === 0) {
      return el('a', { href: `/channel/${tile.channelId}` }, [`Channel ${tile.channelId}`]);
    }
    return el('a', { href: `/@handle${index}`, 'data-channel-id': tile.channelId }, [
      `@handle${index}`,
    ]);
  }

  function thumbnail(videoId) {
    return el('div', { class: 'thumb', style: `background: hsl(${hue(videoId)} 60% 55%)` });
  }

  /** One home-grid tile, as YouTube nests it. */
  function richItem(tile, index) {
    const watch = `/watch?v=${tile.videoId}`;
    return el('ytd-rich-item-renderer', { class: 'style-scope ytd-rich-grid-renderer' }, [
      el('div', { id: 'content' }, [
        el('ytd-rich-grid-media', {}, [
          el('div', { id: 'dismissible' }, [
            el('ytd-thumbnail', {}, [
              el('a', { id: 'thumbnail', href: watch }, [thumbnail(tile.videoId)]),
            ]),
            el('div', { id: 'details' }, [
              el('h3', {}, [el('a', { id: 'video-title-link', href: watch }, [`Video ${tile.videoId}`])]),
              el('ytd-channel-name', {}, [channelLink(tile, index)]),
            ]),
          ]),
        ]),
      ]),
    ]);
  }

  /** One sidebar tile of the watch page. */
  function compactItem(tile, index) {
    const watch = `/watch?v=${tile.videoId}`;
    return el('ytd-compact-video-renderer', {}, [
      el('a', { id: 'thumbnail', href: watch }, [thumbnail(tile.videoId)]),
      el('div', { id: 'details' }, [
        el('a', { href: watch }, [`Video ${tile.videoId}`]),
        el('ytd-channel-name', {}, [channelLink(tile, index)]),
      ]),
    ]);
  }

  /** A search result (YouTube's search page). */
  function searchResult(tile, index) {
    const watch = `/watch?v=${tile.videoId}`;
    return el('ytd-video-renderer', { class: 'style-scope ytd-item-section-renderer' }, [
      el('div', { id: 'dismissible' }, [
        el('ytd-thumbnail', {}, [el('a', { id: 'thumbnail', href: watch }, [thumbnail(tile.videoId)])]),
        el('div', { class: 'text-wrapper' }, [
          el('a', { id: 'video-title', href: watch }, [`Video ${tile.videoId}`]),
          el('ytd-channel-name', {}, [channelLink(tile, index)]),
        ]),
      ]),
    ]);
  }

  /** A Short in a shelf: its link is /shorts/ID. */
  function short(tile) {
    return el('ytm-shorts-lockup-view-model-v2', {}, [
      el('a', { class: 'shortsLockupViewModelHostEndpoint', href: `/shorts/${tile.videoId}` }, [
        thumbnail(tile.videoId),
      ]),
    ]);
  }

  /** YouTube's newer grid item: a lockup view model inside the rich item. */
  function lockupItem(tile, index) {
    const watch = `/watch?v=${tile.videoId}`;
    return el('ytd-rich-item-renderer', {}, [
      el('div', { id: 'content' }, [
        el('yt-lockup-view-model', {}, [
          el('a', { class: 'yt-lockup-view-model__content-image', href: watch }, [thumbnail(tile.videoId)]),
          el('h3', {}, [el('a', { href: watch }, [`Video ${tile.videoId}`])]),
          channelLink(tile, index),
        ]),
      ]),
    ]);
  }

  /** m.youtube.com's list item. */
  function mobileItem(tile, index) {
    const watch = `/watch?v=${tile.videoId}`;
    return el('ytm-video-with-context-renderer', {}, [
      el('a', { href: watch }, [thumbnail(tile.videoId), `Video ${tile.videoId}`]),
      channelLink(tile, index),
    ]);
  }

  // Search: ./results?results=...&shorts=...&lockups=...&mobile=... (each an ID.CHANNEL list):
  // one section per kind of tile.
  function results() {
    const sections = { results: searchResult, shorts: short, lockups: lockupItem, mobile: mobileItem };
    for (const [name, make] of Object.entries(sections)) {
      const box = document.getElementById(name);
      parseTiles(params.get(name) ?? '').forEach((tile, i) => box.append(make(tile, i)));
    }
  }

  /** What YouTube does on navigation: it reuses a tile element for another video. */
  function recycle(index, videoId) {
    const tile = document.querySelectorAll('ytd-rich-item-renderer')[index];
    for (const link of tile.querySelectorAll('a[href*="watch?v="]')) {
      link.setAttribute('href', `/watch?v=${videoId}`);
    }
  }

  function home() {
    const tiles = parseTiles(params.get('tiles'));
    const first = Number(params.get('first') ?? 12);
    const step = Number(params.get('step') ?? 8);
    const grid = document.getElementById('contents');
    const sentinel = document.getElementById('sentinel');
    let next = 0;

    const append = (count) => {
      const end = Math.min(tiles.length, next + count);
      const fragment = document.createDocumentFragment();
      for (; next < end; next++) fragment.append(richItem(tiles[next], next));
      grid.append(fragment);
      if (next >= tiles.length) sentinel.textContent = 'no more videos';
    };

    append(first);
    // Infinite scroll: the next page arrives a moment after the bottom comes into view, as
    // YouTube's continuation requests do. Re-observing re-checks a sentinel still in view.
    const observer = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting) || next >= tiles.length) return;
      setTimeout(() => {
        append(step);
        observer.unobserve(sentinel);
        if (next < tiles.length) observer.observe(sentinel);
      }, 50);
    });
    observer.observe(sentinel);
    window.fixtureTiles = () => next;
    window.fixtureRecycle = recycle;
  }

  function watch() {
    const videoId = params.get('v');
    const channelId = params.get('c');
    document.querySelector('ytd-watch-flexy').setAttribute('video-id', videoId ?? '');
    document.getElementById('title').textContent = `Video ${videoId}`;
    const owner = document.getElementById('owner');
    if (channelId) {
      owner.href = `/channel/${channelId}`;
      owner.dataset.channelId = channelId;
      owner.textContent = `Channel ${channelId}`;
    }
    document.querySelector('#movie_player').style.background = `hsl(${hue(videoId ?? '')} 40% 30%)`;
    const related = document.getElementById('related');
    parseTiles(params.get('related') ?? '').forEach((tile, i) => related.append(compactItem(tile, i)));
  }

  return { home, watch, results };
})();
