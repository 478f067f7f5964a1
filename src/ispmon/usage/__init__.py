"""Customer usage: subscribers, NAS clients, the RADIUS accounting listener, sessions and usage deltas.

`customers` and `nas` are the definitions (pydantic specs), `radius` the codec (pyrad, with the
FreeRADIUS dictionaries shipped in ``dictionary/``), `accounting` the pure session/delta maths,
`listener` the asyncio datagram protocol with group commit, and `wiring` starts and stops it.
"""
