"""Evidence: a signed per-camera hash chain over every recorded segment and clip.

`chain` defines the record format (what an auditor re-implements), `keys` the appliance's
Ed25519 key, `ledger` appends and signs, `verify` walks a chain and re-hashes the files, and
`commands` is `appliance footage verify`.
"""
