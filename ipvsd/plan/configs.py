"""One ipvsd config per director, made from a plan and a template config (pure).

The template is an ordinary ipvsd config for one director of the cluster,
usually a single-VIP one such as ``examples/dr.yaml``; it must pass
``check-config`` itself. Each director's config is the template with:

- ``node_name``: the director's name;
- ``vrrp.instances``: one instance per VIP of the plan, ``VI_1`` to ``VI_V``,
  with this director's priority from the plan and the VIP from the pool. The
  model is the template's first instance of the pool's family (else its first
  one): the VRIDs count up from its VRID, and its other fields (interface,
  advert_int, auth_pass, unicast_peers, tracking, notify...) are copied,
  except its addresses, routes, rules, ``initial_state`` and
  ``vmac_interface``; an IPv6 pool makes the instances VRRPv3. When the
  directors have addresses (``--directors NAME=ADDRESS,...``) and the
  template's instance has ``unicast_peers``, each instance's peers are the
  other directors (and its ``unicast_src``, if the template sets one, this
  director's address);
- ``vrrp.sync_groups``: none (All-Active instances move one by one);
- ``ipvs.services``: a service whose address is one of the template's VRRP
  addresses, of the pool's family, is repeated for every VIP of the plan (the
  same service on every VIP, which DNS round robin needs); other services are
  kept as they are. The pool must be of a family the template's VRRP
  addresses have;
- ``ipvs.sync_daemon``: dropped (it follows one VRRP instance; an All-Active
  director is master of some and backup of others).

Everything else (control, metrics, checks, reals, timeouts...) is the
template's. Each config is validated as ``check-config`` would before it is
returned.
"""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ipvsd.config import parse_config
from ipvsd.errors import ConfigError
from ipvsd.importers.emit import to_yaml
from ipvsd.plan.layout import PlanError
from ipvsd.plan.render import Plan

MAX_VRID = 255
_NOT_COPIED = frozenset(
    {
        "name",
        "vrid",
        "priority",
        "virtual_ipaddresses",
        "virtual_ipaddresses_excluded",
        "virtual_routes",
        "virtual_rules",
        "initial_state",
        "vmac_interface",
    }
)


@dataclass(frozen=True)
class DirectorConfig:
    """A director's config file: its name and YAML text."""

    director: str
    text: str
    notes: tuple[str, ...]
    """What was dropped from the template, for the operator (stderr)."""


def vip_pool(text: str, count: int) -> tuple[str, ...]:
    """`count` VIPs as ``ADDRESS/PREFIX``, taken in order from the pool `text`.

    `text` is ``ADDRESS/PREFIX``: the first VIP is ADDRESS, or the network's
    first host when ADDRESS is the network address; the next ones follow it up
    to the network's last host (an IPv4 broadcast address is never used).
    ``192.168.1.201/24`` gives 192.168.1.201/24, .202/24...

    Raises:
        PlanError: not an ``ADDRESS/PREFIX``, or too few addresses left in it.
    """
    try:
        pool = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise PlanError(f"--vip-pool {text!r} is not ADDRESS/PREFIX (CIDR)") from None
    network = pool.network
    first = pool.ip
    last = network.broadcast_address
    if network.num_addresses > 2:  # /31, /32, /127, /128: every address is a host
        if first == network.network_address:
            first += 1
        if network.version == 4:
            last -= 1
    available = int(last) - int(first) + 1
    if available < count:
        raise PlanError(
            f"--vip-pool {text}: the plan needs {count} VIPs, {max(available, 0)} "
            f"address(es) left from {first} to the end of {network}"
        )
    return tuple(f"{first + n}/{network.prefixlen}" for n in range(count))


def director_configs(
    plan: Plan, vips: tuple[str, ...], template: str, template_name: str
) -> list[DirectorConfig]:
    """Each director's config, from `template` (YAML text) and the plan's VIPs.

    Args:
        plan: the plan (its layout's directors and priorities).
        vips: one ``ADDRESS/PREFIX`` per VIP of the plan (`vip_pool`).
        template: the template config's YAML text.
        template_name: its file name, for error messages.

    Returns:
        One config per director, in the plan's order, each validated.

    Raises:
        ConfigError: the template is not a valid ipvsd config.
        PlanError: it has no VRRP instance to copy, or too few VRIDs are left.
    """
    parse_config(template, template_name, default_node_name="template")
    data: dict[str, Any] = yaml.safe_load(template)
    instances = (data.get("vrrp") or {}).get("instances") or []
    if not instances:
        raise PlanError(
            f"{template_name}: the template has no vrrp.instances; the plan takes the "
            "interface (and advert_int, auth_pass...) from its first one"
        )
    # The first instance with a VIP of the pool's family, else the first one.
    family = [
        i for i in instances if _version(_address(i["virtual_ipaddresses"][0])) == _version(vips[0])
    ]
    model = (family or instances)[0]
    first_vrid = int(model["vrid"])
    if first_vrid + len(vips) - 1 > MAX_VRID:
        raise PlanError(
            f"{template_name}: {len(vips)} VIPs need VRIDs {first_vrid} to "
            f"{first_vrid + len(vips) - 1}, past {MAX_VRID}; give the template's first "
            "instance a lower vrid"
        )
    template_vips = {_address(entry) for i in instances for entry in i["virtual_ipaddresses"]}
    _same_family(vips, template_vips, template_name)
    if model.get("unicast_peers") and plan.addresses:
        _peers_family(vips, plan.addresses)
    notes = _notes(data, template_name)
    return [
        _director(plan, vips, data, model, template_vips, director, template_name, notes)
        for director in plan.layout.directors
    ]


def _director(
    plan: Plan,
    vips: tuple[str, ...],
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    template_vips: set[str],
    director: str,
    template_name: str,
    notes: tuple[str, ...],
) -> DirectorConfig:
    peers = _unicast(model, plan.addresses, director)
    instances = [
        _instance(model, n, vip, plan.layout.priorities(n)[director], peers)
        for n, vip in enumerate(vips)
    ]
    vrrp = {key: value for key, value in data["vrrp"].items() if key != "sync_groups"}
    vrrp["instances"] = instances
    config = {**data, "node_name": director, "vrrp": vrrp}
    if data.get("ipvs"):
        ipvs = {key: value for key, value in data["ipvs"].items() if key != "sync_daemon"}
        ipvs["services"] = _services(data["ipvs"].get("services") or [], template_vips, vips)
        config["ipvs"] = ipvs
    masters = [
        vips[n].split("/")[0] for n in range(len(vips)) if plan.layout.rankings[n][0] == director
    ]
    header = textwrap.wrap(
        f"{director}: one of {len(plan.layout.directors)} All-Active directors "
        f"({', '.join(plan.layout.directors)}), made by `ipvsd plan` from {template_name}."
        f" {len(vips)} VIPs, each its own VRRP instance; {director} is MASTER for "
        f"{', '.join(masters)}. Tolerates {plan.layout.tolerate} failed director(s) with "
        "every survivor carrying an equal share.",
        77,
    )
    text = to_yaml(config, header=header)
    name = f"{director}.yaml"
    try:
        parse_config(text, name, default_node_name=director)
    except ConfigError as exc:  # the template validated: a bug if this happens
        raise AssertionError(f"{name} does not validate: {exc.issues}") from exc
    return DirectorConfig(director, text, notes)


def _instance(
    model: Mapping[str, Any], n: int, vip: str, priority: int, peers: Mapping[str, Any]
) -> dict[str, Any]:
    """VIP number `n`'s instance: `model`'s fields in its order, the plan's where they differ."""
    planned = {"vrid": int(model["vrid"]) + n, "priority": priority, **peers}
    instance: dict[str, Any] = {"name": f"VI_{n + 1}"}
    for key, value in model.items():
        if key in planned:
            instance[key] = planned[key]
        elif key not in _NOT_COPIED:
            instance[key] = value
    instance.update({key: value for key, value in planned.items() if key not in instance})
    if ":" in vip:
        instance["version"] = 3  # RFC 5798: IPv6 addresses need VRRPv3
    instance["virtual_ipaddresses"] = [vip]
    return instance


def _unicast(
    model: Mapping[str, Any], addresses: Mapping[str, str], director: str
) -> dict[str, Any]:
    """The unicast fields for `director`, when the template's instance uses unicast."""
    if not addresses or not model.get("unicast_peers"):
        return {}
    fields: dict[str, Any] = {
        "unicast_peers": [address for name, address in addresses.items() if name != director]
    }
    if model.get("unicast_src"):
        fields["unicast_src"] = addresses[director]
    return fields


def _services(
    services: list[dict[str, Any]], template_vips: set[str], vips: tuple[str, ...]
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for service in services:
        address = service.get("address")
        if address is not None and _same(str(address), template_vips, vips):
            result += [{**service, "address": vip.split("/")[0]} for vip in vips]
        else:
            result.append(service)
    return _unique(result)


def _unique(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`services` without repeats (two template VIPs with the same service)."""
    seen: list[dict[str, Any]] = []
    for service in services:
        if service not in seen:
            seen.append(service)
    return seen


def _same_family(vips: tuple[str, ...], template_vips: set[str], template_name: str) -> None:
    """Refuse an IPv6 pool for an IPv4 template and the other way round: the reals differ."""
    pool = {_version(vip) for vip in vips}
    template = {ipaddress.ip_address(vip).version for vip in template_vips}
    if template and pool and not pool <= template:
        raise PlanError(
            f"{template_name}: IPv{min(pool)} pool, IPv{min(template)} template: its services' "
            "reals are of the template's family; give a pool of the same family"
        )


def _peers_family(vips: tuple[str, ...], addresses: Mapping[str, str]) -> None:
    """Unicast peers must be of the instances' family (the VIPs')."""
    others = sorted(a for a in addresses.values() if _version(a) != _version(vips[0]))
    if others:
        raise PlanError(
            f"the VIPs are IPv{_version(vips[0])}, the directors' addresses "
            f"{', '.join(others)} are not: VRRP's unicast peers are of the instance's family"
        )


def _address(entry: object) -> str:
    """A ``virtual_ipaddresses`` entry (``ADDRESS/PREFIX`` or a mapping) as a bare address."""
    raw = entry.get("address") if isinstance(entry, Mapping) else entry
    return str(ipaddress.ip_interface(str(raw)).ip)


def _same(address: str, template_vips: set[str], vips: tuple[str, ...]) -> bool:
    """Whether `address` is a template VIP of the pool's family (its services are repeated)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # a host name, resolved by the config loader
        return False
    return str(parsed) in template_vips and parsed.version == _version(vips[0])


def _version(address: str) -> int:
    """4 or 6, for an address with or without a prefix length."""
    return ipaddress.ip_interface(address).version


def _notes(data: Mapping[str, Any], template_name: str) -> tuple[str, ...]:
    notes = []
    if (data.get("vrrp") or {}).get("sync_groups"):
        notes.append(
            f"{template_name}: vrrp.sync_groups dropped: All-Active instances fail over one by one"
        )
    if (data.get("ipvs") or {}).get("sync_daemon"):
        notes.append(
            f"{template_name}: ipvs.sync_daemon dropped: it follows one VRRP instance, and "
            "an All-Active director is master of some and backup of others"
        )
    return tuple(notes)
