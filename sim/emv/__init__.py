"""EMV: TLV and the tag dictionary, virtual cards, the terminal kernel, crypto."""
