"""`modelyard quota`: quotas, nodes, pools and flavors."""

from __future__ import annotations

import typer
from rich.table import Table

from modelyard.cli._common import client as _client
from modelyard.cli._common import (
    human_size,
    json_option,
    memory_mib,
    print_json,
    print_rich_table,
    print_table,
)
from modelyard.core.units import parse_bytes

_size = human_size

app = typer.Typer(help="Quotas, nodes, resource pools and flavors.", no_args_is_help=True)

OFF = ("none", "off", "unlimited", "null", "")


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def _num(x: float) -> str:
    return f"{x:g}"


def _quota_table(q: dict) -> Table:
    title = f"Quota of {q.get('user_name') or q['user_id']}"
    if not q["active"]:
        title += " [red](outside its validity window)[/]"
    t = Table("resource", "limit", "used", "remaining", title=title)
    fmt = {"memory_mib": _gib}
    for dim in ("cpu", "memory_mib", "gpu", "vgpu", "mig"):
        f = fmt.get(dim, _num)
        t.add_row(dim.replace("_mib", ""), f(q["limits"][dim]), f(q["used"][dim]), f(q["remaining"][dim]))
    t.add_row("jobs", str(q["jobs"]), str(q["jobs_used"]), str(q["jobs_remaining"]))
    s = q.get("storage")
    if s:
        if s["enabled"]:
            t.add_row("storage", _size(s["bytes_quota"]), _size(s["bytes_used"]), _size(s["bytes_remaining"]))
            t.add_row("files", str(s["files_quota"] if s["files_quota"] is not None else "unlimited"),
                      str(s["files_used"]), str(s["files_remaining"] if s["files_remaining"] is not None else "-"))
        else:
            t.add_row("storage", "not enabled", _size(s["bytes_used"]), "unlimited")
    window = f"{q['start_at'] or '-'} .. {q['end_at'] or '-'} (UTC)"
    t.caption = f"window {window}; configured by an admin: {'yes' if q['is_init_config'] else 'no'}"
    return t


@app.command("show")
def show(user: str = typer.Option(None, "--user", "-u", help="user id or name (admin); default: you"),
         as_json: bool = json_option()) -> None:
    """Your quota (or a user's): limits, used by live allocations, remaining, window, storage."""
    c = _client()
    q = c.quota.get(user) if user else c.quota.me()
    if as_json:
        print_json(q)
        return
    _print_quota(q)


def _print_quota(q: dict) -> None:
    print_rich_table(_quota_table(q))


@app.command("ls")
def list_quotas(as_json: bool = json_option()) -> None:
    """Admin: every user's quota and usage."""
    qs = _client().quota.list()
    if as_json:
        print_json(qs)
        return
    rows = []
    for q in qs:
        lim, used = q["limits"], q["used"]
        rows.append([q["user_name"] or q["user_id"], f"{used['cpu']:g}/{lim['cpu']:g}",
                  f"{_gib(used['memory_mib'])}/{_gib(lim['memory_mib'])}",
                  f"{used['gpu']}/{lim['gpu']}", f"{used['vgpu']}/{lim['vgpu']}", f"{used['mig']}/{lim['mig']}",
                  f"{q['jobs_used']}/{q['jobs']}", f"{q['start_at'] or '-'} .. {q['end_at'] or '-'}",
                  "yes" if q["is_init_config"] else "no"])
    print_table(["user", "cpu used/limit", "memory used/limit", "gpu", "vgpu", "mig", "jobs", "window",
                 "configured"], rows)


def _opt_clearable(value: str | None, parse):
    if value is None:
        return None, False
    if value.strip().lower() in OFF:
        return None, True
    return parse(value), True


@app.command("set")
def set_quota(
    user: str = typer.Argument(..., help="user id or name"),
    cpu: float = typer.Option(None, help="CPU cores"),
    memory: str = typer.Option(None, metavar="SIZE", help="memory, e.g. 16GiB or 512MiB (plain number: MiB)"),
    gpu: int = typer.Option(None), vgpu: int = typer.Option(None), mig: int = typer.Option(None),
    jobs: int = typer.Option(None, help="concurrent jobs"),
    start: str = typer.Option(None, help="window start 'YYYY-MM-DD HH:MM:SS' (UTC); 'none' clears"),
    end: str = typer.Option(None, help="window end 'YYYY-MM-DD HH:MM:SS' (UTC); 'none' clears"),
    storage: str = typer.Option(None, help="storage quota, e.g. 100GiB; 'off' disables"),
    files: str = typer.Option(None, help="file count quota; 'off' removes the limit"),
) -> None:
    """Admin: set a user's quota (only the options given change)."""
    kw: dict = {"cpu": cpu, "gpu": gpu, "vgpu": vgpu, "mig": mig, "jobs": jobs}
    if memory is not None:
        kw["memory_mib"] = memory_mib(memory)
    for name, raw, parse in (("start_at", start, str), ("end_at", end, str), ("storage_bytes", storage, parse_bytes),
                             ("storage_files", files, int)):
        value, given = _opt_clearable(raw, parse)
        if given:
            kw[name] = value
    q = _client().quota.set(user, **kw)
    _print_quota(q)


@app.command("nodes")
def nodes(as_json: bool = json_option()) -> None:
    """Nodes: status and allocated / capacity per dimension."""
    items = _client().resources.nodes()
    if as_json:
        print_json(items)
        return
    t = Table("node", "group", "status", "cpu", "memory", "gpu", "vgpu", "mig", "allocations", "labels")
    for n in items:
        cap, al = n["capacity"], n["allocated"]
        status = {"ready": "[green]ready[/]", "cordoned": "[yellow]cordoned[/]"}.get(n["status"], n["status"])
        t.add_row(n["name"], n["group_key"] or "-", status, f"{al['cpu']:g}/{cap['cpu']:g}",
                  f"{_gib(al['memory_mib'])}/{_gib(cap['memory_mib'])}", f"{al['gpu']}/{cap['gpu']}",
                  f"{al['vgpu']}/{cap['vgpu']}", f"{al['mig']}/{cap['mig']}", str(n["allocations"]),
                  ", ".join(f"{k}={v}" for k, v in n["labels"].items()))
    print_rich_table(t)


@app.command("pools")
def pools(as_json: bool = json_option()) -> None:
    """Resource groups: capacity, allocated and free."""
    st = _client().resources.statistics()
    if as_json:
        print_json(st)
        return
    t = Table("group", "nodes (ready)", "cpu free/cap", "memory free/cap", "gpu free/cap", "vgpu", "mig",
              "allocations", "consumers")
    for g in st["groups"] + [{"key": "TOTAL", "name": "", "nodes_total": "", "nodes_ready": "", **st["totals"]}]:
        cap, free = g["capacity"], g["free"]
        nodes_col = f"{g['nodes_total']} ({g['nodes_ready']})" if g["nodes_total"] != "" else ""
        t.add_row(g["key"] or "(none)", nodes_col, f"{free['cpu']:g}/{cap['cpu']:g}",
                  f"{_gib(free['memory_mib'])}/{_gib(cap['memory_mib'])}", f"{free['gpu']}/{cap['gpu']}",
                  f"{free['vgpu']}/{cap['vgpu']}", f"{free['mig']}/{cap['mig']}", str(g["allocations"]),
                  str(g["consumers"]))
    print_rich_table(t)


@app.command("flavors")
def flavors(as_json: bool = json_option()) -> None:
    """Flavors (specifications) and whether they fit now and within your quota."""
    items = _client().resources.flavors()
    if as_json:
        print_json(items)
        return
    t = Table("flavor", "category", "cpu", "memory", "gpu", "status", "within quota", "description")
    for f in items:
        t.add_row(f["name"], f["category"], f"{f['cpu']:g}", _gib(f["memory_mib"]), str(f["gpu"]), f["spec_status"],
                  "[red]no[/]" if f["over_quota"] else "yes", f["description"])
    print_rich_table(t)
