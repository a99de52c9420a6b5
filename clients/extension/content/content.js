// Placeholder until the content script lands: finds tiles, asks the worker, hides or blurs.
