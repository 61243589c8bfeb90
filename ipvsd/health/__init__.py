"""Health checks of the real servers, and what their verdicts do to the IPVS table.

Pure cores: `tracker` (rise/fall), `policy` (health and drains → desired
table overrides), the probes' messages `dns`, `icmp`, `smtp`. I/O: `checks`,
`tcp`, `http`, `probes` (ping, smtp), `target` (the checkers), `monitor`
(scheduling), `manager` (watches from the config, health → the desired
table), `notify` (a real's notify_up / notify_down programs).
"""
