"""``ipvsd plan``: the All-Active VRRP layout planner (pure).

- `ipvsd.plan.layout`: the model, the construction of the minimal balanced
  layout, and a brute-force verifier over every failure set;
- `ipvsd.plan.units`: link rates such as ``1.5G`` and ``800M``;
- `ipvsd.plan.render`: the plan as text and as the ``--json`` document;
- `ipvsd.plan.configs`: one ipvsd config per director from a template config.

The command line (``ipvsd.cli``) reads and writes the files; nothing here does.
"""
