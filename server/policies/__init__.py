"""Policy as code: the texts and purpose declarations in `policy_docs/`, and their sync into the catalogue."""
