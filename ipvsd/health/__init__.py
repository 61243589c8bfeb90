"""Health checks of the real servers, and what their verdicts do to the IPVS table.

Pure cores: `tracker` (rise/fall), `policy` (health and drains → desired
table overrides). I/O: `checks`, `tcp`, `http`, `target` (the checkers),
`monitor` (scheduling), `manager` (watches from the config, health → the
desired table).
"""
