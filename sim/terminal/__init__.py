"""The virtual terminal's drivers: the one-shot ``possim terminal`` and its host links."""
