"""Pure domain logic of RealTube: identifiers, categories, trust, scoring, channels; no I/O."""
