"""BGP mode: the services' VIPs announced through a BIRD 2 speaker (docs/bgp.md).

- `policy` — pure: which VIPs to announce (daemon ready, director not
  drained, services with quorum); events in, `Announce` / `Withdraw` out.
- `birdconf` — pure: BIRD's config text generated from the ``bgp:`` section.
- `birdctl` — an asyncio client of BIRD's control socket (its reply-code text
  protocol), and the parser of ``show protocols``.
- `speaker` — the BIRD child process: validated config, started with a parent
  death signal, stopped in order.
- `announcer` — the runtime that feeds the policy and drives the speaker.
"""
