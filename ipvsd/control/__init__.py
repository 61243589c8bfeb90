"""The control socket: what ``ipvsd status`` / ``reload`` / ``drain`` talk to.

- `protocol` — pure: one JSON request line in, one answer out, over a
  `ControlView` (the daemon's side); permissions and every refusal.
- `server` — the asyncio unix-socket server around it (socket file, peer
  credentials, timeouts, connection cap).
- `client` — the blocking client the CLI uses.
- `status` — the status contract as typed values; `status_json` its one JSON codec.
- `render` — the human tables (``ipvsd status``, ``ipvsd list``).
"""
