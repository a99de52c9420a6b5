// Placeholder until the content script lands: the YouTube DOM selectors module.
