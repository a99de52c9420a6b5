// The options page: the settings of settings.js as a form. Nothing invalid is saved; each
// error is shown next to its field, in the words validateSettings() chose.

import { CATEGORIES, DEFAULTS, loadSettings, saveSettings, validateSettings } from '../settings.js';

const CATEGORY_LABELS = {
  fully_ai: 'Fully AI-generated',
  ai_voiceover: 'AI voice-over',
  ai_visuals: 'AI visuals',
  ai_thumbnails: 'AI thumbnail',
  ai_assisted: 'AI-assisted',
};

const form = document.getElementById('options');
const saved = document.getElementById('saved');

function buildThresholds() {
  const box = document.getElementById('thresholds');
  for (const category of CATEGORIES) {
    const name = `thresholds.${category}`;
    const field = document.createElement('div');
    field.className = 'field threshold';
    field.innerHTML = `
      <label for="${name}"></label>
      <input id="${name}" name="${name}" type="number" min="0" max="100" step="any"
             aria-describedby="error-${name}">
      <p class="hint">Default: ${DEFAULTS.thresholds[category]}</p>
      <p class="error" id="error-${name}" role="alert"></p>`;
    field.querySelector('label').textContent = CATEGORY_LABELS[category] ?? category;
    box.append(field);
  }
}

function fill(settings) {
  form.elements.apiBase.value = settings.apiBase;
  for (const category of CATEGORIES) {
    form.elements[`thresholds.${category}`].value = String(settings.thresholds[category]);
  }
  for (const radio of form.querySelectorAll('input[name="mode"]')) {
    radio.checked = radio.value === settings.mode;
  }
  form.elements.live.checked = settings.live;
  form.elements.pollMinutes.value = String(settings.pollMinutes);
}

/** The form as validateSettings() takes it (numbers still as typed: it parses them). */
function read() {
  const thresholds = {};
  for (const category of CATEGORIES) {
    thresholds[category] = form.elements[`thresholds.${category}`].value;
  }
  return {
    apiBase: form.elements.apiBase.value,
    thresholds,
    mode: form.querySelector('input[name="mode"]:checked')?.value ?? '',
    live: form.elements.live.checked,
    pollMinutes: form.elements.pollMinutes.value,
  };
}

function showError(field, message) {
  const slot = document.getElementById(`error-${field}`) ?? document.getElementById('error-form');
  slot.textContent = message ?? '';
  const input = document.getElementById(field);
  if (input) input.setAttribute('aria-invalid', message ? 'true' : 'false');
}

function showErrors(errors) {
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]')) input.setAttribute('aria-invalid', 'false');
  for (const [field, message] of Object.entries(errors)) showError(field, message);
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  saved.textContent = '';
  const result = await saveSettings(read());
  showErrors(result.errors);
  if (result.ok) {
    fill(result.settings);
    saved.textContent = 'Saved.';
  } else {
    saved.textContent = '';
    form.querySelector('[aria-invalid="true"]')?.focus();
  }
});

// A field's error is checked when the user leaves it, and cleared as soon as they edit it.
form.addEventListener('change', (event) => {
  const name = event.target.name;
  if (!name) return;
  const { errors } = validateSettings(read());
  showError(name, errors[name]);
  saved.textContent = '';
});
form.addEventListener('input', (event) => {
  if (event.target.name) showError(event.target.name, '');
  saved.textContent = '';
});

document.getElementById('defaults').addEventListener('click', () => {
  fill(DEFAULTS);
  showErrors({});
  saved.textContent = 'Defaults filled in: Save to keep them.';
});

buildThresholds();
for (const node of document.querySelectorAll('[data-default]')) {
  node.textContent = String(DEFAULTS[node.dataset.default]);
}
const { settings, errors } = await loadSettings();
fill(settings);
showErrors(errors);
document.body.dataset.ready = 'true';
