"""Domain: stdlib-only model of Lazarus (states, transitions, templates, entities, XML)."""
