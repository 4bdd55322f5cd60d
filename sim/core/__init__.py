"""Host core: issuer, acquirer, scheme stand-in, ledger, settlement, history checker, money."""
