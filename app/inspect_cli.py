"""``main.py inspect``: the actor tree and mailboxes of a running runtime.

Reads ``/actors`` from the control endpoint (DESIGN section 8), so it works
against any running ``run`` without touching its process. The table shows
what someone debugging a slow or stuck runtime looks at first: which
mailbox is deep, how old its oldest message is, how long handling takes,
restarts and the last failure; ``--peek N`` lists the first waiting messages
(type and redacted summary) and ``--json`` prints the snapshot for scripts.

Nothing listening is a one-line error and exit code 1, not a traceback.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from app.control import ControlError, parse_hostport

TIMEOUT_S = 5.0


class InspectError(RuntimeError):
    """The endpoint could not be read; the message is the one line shown."""


def fetch(url: str, token: str | None = None, timeout: float = TIMEOUT_S,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET ``url`` (or POST ``body`` as JSON) and decode the JSON answer;
    any failure is an :class:`InspectError` whose text is the one line shown."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Accept": "application/json"},
                                 method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http only
            answer: dict[str, Any] = json.loads(resp.read().decode("utf-8"))
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise InspectError(f"{url}: unauthorized (the endpoint needs its token: set the "
                               "environment variable named by control.token_env)") from None
        detail = exc.read().decode("utf-8", "replace").strip()[:200]
        raise InspectError(f"{url}: HTTP {exc.code}" + (f" {detail}" if detail else "")) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc, "reason", exc)
        raise InspectError(f"nothing is listening at {url.rsplit('/', 1)[0]} ({reason})") from None
    except (OSError, ValueError) as exc:
        raise InspectError(f"cannot read {url}: {exc}") from None


def _age(seconds: Any) -> str:
    s = float(seconds or 0.0)
    if s <= 0:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _depths(actors: list[dict[str, Any]]) -> dict[str, int]:
    """Tree depth of each actor from its supervisor chain (for indentation)."""
    sup = {a["name"]: a.get("supervisor") for a in actors}
    out: dict[str, int] = {}
    for name in sup:
        d, cur, seen = 0, sup.get(name), set()
        while cur and cur not in seen:
            seen.add(cur)
            d += 1
            cur = sup.get(cur)
        out[name] = d
    return out


def actors_table(snap: dict[str, Any]) -> Table:
    actors = snap.get("actors") or []
    depth = _depths(actors)
    clock = snap.get("clock") or {}
    title = (f"{snap.get('system', '?')}  {len(actors)} actors  clock {clock.get('now', '?')}"
             + ("  [red]HALTED: " + str(snap.get("halt_reason")) + "[/red]"
                if snap.get("halted") else ""))
    t = Table(title=title, title_justify="left")
    right = {"justify": "right", "no_wrap": True}
    for col, kw in (("actor", {"no_wrap": True}), ("supervisor", {"no_wrap": True}),
                    ("state", {"no_wrap": True}), ("runs on", {"no_wrap": True}),
                    ("depth", right), ("high-water", right),
                    ("processed", right), ("oldest", right), ("handling ms mean/max", right),
                    ("restarts", right), ("last failure", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for a in actors:
        state = a.get("state", "?")
        style = "" if state == "running" else "yellow"
        fail = a.get("last_failure") or {}
        t.add_row("  " * depth.get(a["name"], 0) + a["name"], a.get("supervisor") or "-",
                  f"[{style}]{state}[/{style}]" if style else state,
                  runs_on(a), str(a.get("depth", 0)), str(a.get("high_water", 0)),
                  f"{a.get('processed', 0):,}", _age(a.get("oldest_age_s")),
                  f"{a.get('handling_ms_mean', 0):.3f}/{a.get('handling_ms_max', 0):.3f}",
                  str(a.get("restarts", 0)),
                  (f"{fail.get('error')} ({fail.get('at')})" if fail else ""))
    return t


def runs_on(actor: dict[str, Any]) -> str:
    """Where an actor runs: its dispatcher, its own thread, or its remote node."""
    execution = str(actor.get("execution", "?"))
    if execution == "pooled":
        return f"pooled ({actor.get('dispatcher') or '?'})"
    if execution == "remote":
        remote = (actor.get("info") or {}).get("remote") or {}
        node = remote.get("node") or {}
        where = node.get("node_id") or node.get("host") or "?"
        return (f"remote {remote.get('placement', '?')} {str(where)[:12]}"
                + (f" pid {node['pid']}" if node.get("pid") else ""))
    return execution


def waiting_table(snap: dict[str, Any]) -> Table | None:
    rows = [(a["name"], i, w) for a in snap.get("actors") or []
            for i, w in enumerate(a.get("waiting") or [])]
    if not rows:
        return None
    t = Table(title="waiting messages (oldest first)", title_justify="left")
    for col in ("actor", "#", "type", "summary"):
        t.add_column(col)
    for name, i, w in rows:
        t.add_row(name, str(i + 1), w.get("type", "?"), w.get("summary", ""))
    return t


def dead_letters_table(snap: dict[str, Any]) -> Table:
    dl = snap.get("dead_letters") or {}
    by = ", ".join(f"{k} {v}" for k, v in (dl.get("by_reason") or {}).items()) or "none"
    t = Table(title=f"dead letters: {dl.get('total', 0)} ({by})", title_justify="left")
    for col in ("target", "type", "reason", "summary"):
        t.add_column(col)
    for e in (dl.get("recent") or [])[-10:]:
        t.add_row(e.get("target", ""), e.get("type", ""), e.get("reason", ""), e.get("summary", ""))
    return t


def _info(snap: dict[str, Any], name: str) -> dict[str, Any]:
    return next((a.get("info") or {} for a in snap.get("actors") or [] if a["name"] == name), {})


def trading_lines(snap: dict[str, Any]) -> list[str]:
    """What a person asks first: is it trading, and if not, since when and why?"""
    c, gw = _info(snap, "coordinator"), _info(snap, "gateway")
    if not c:
        return ["trading: no coordinator (not started, or not a trading runtime)"]
    state = c.get("trading_state", "?")
    colour = "green" if state == "ACTIVE" else "red"
    lines = [f"trading: [{colour}]{state}[/{colour}]"
             + ("  (recovering)" if c.get("recovering") else "")
             + f"  breaker {c.get('breaker', '?')}"
             + f"  stream {'connected' if gw.get('connected') else 'DISCONNECTED'}"
             + ("  (reconciling)" if gw.get("stream_reconciling") else "")]
    if state == "HALTED" or c.get("kill_reason"):
        since = c.get("kill_since") or "before the last restart"
        lines.append(f"kill switch: [red]ENGAGED[/red] since {since}: {c.get('kill_reason')}")
    else:
        lines.append("kill switch: off")
    if snap.get("halted"):
        lines.append(f"[red]runtime HALTED: {snap.get('halt_reason')}[/red]")
    return lines


def render(snap: dict[str, Any]) -> Group:
    parts: list[Any] = [*trading_lines(snap), actors_table(snap)]
    waiting = waiting_table(snap)
    if waiting is not None:
        parts.append(waiting)
    parts.append(dead_letters_table(snap))
    return Group(*parts)


def _target(control: str | None, config_path: str | None) -> tuple[str, str | None]:
    """The endpoint's base URL and token, from --control and the config's control section."""
    from config import load_config
    from config.secrets import read_secret

    cfg = load_config(config_path).control
    host, port = (parse_hostport(control, cfg.host) if control else (cfg.host, cfg.port))
    # The same reader as the endpoint: a named but unset variable is an error
    # naming it, not a request without a token that the endpoint refuses.
    token = read_secret(cfg.token_env, "control.token_env") if cfg.token_env else None
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}", token


def main(control: str | None = None, *, watch: bool = False, peek: int = 0,
         as_json: bool = False, config_path: str | None = None, interval_s: float = 1.0,
         console: Console | None = None) -> int:
    from config import ConfigError

    from app.console import cli_console

    # Piped into a file or a pager: wide enough that names are never cut.
    console = console or cli_console()
    try:
        base, token = _target(control, config_path)
    except (ControlError, ConfigError) as exc:
        print(f"tradewarden inspect: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    url = f"{base}/actors" + (f"?peek={peek}" if peek > 0 else "")
    try:
        snap = fetch(url, token)
        if as_json:
            # --watch --json: one snapshot per line, for piping into a script
            sys.stdout.write(json.dumps(snap, indent=None if watch else 2, default=str) + "\n")
            while watch:
                sys.stdout.flush()
                time.sleep(interval_s)
                sys.stdout.write(json.dumps(fetch(url, token), default=str) + "\n")
            return 0
        if not watch:
            console.print(render(snap))
            return 0
        from rich.live import Live

        with Live(render(snap), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval_s)
                live.update(render(fetch(url, token)))
    except InspectError as exc:
        print(f"tradewarden inspect: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _run_dirs(out_root: str) -> list[Any]:
    """Run directories under ``out_root`` that advertise a control endpoint, newest first."""
    from pathlib import Path

    root = Path(out_root)
    found = [p.parent for p in root.glob("*/run.json")] if root.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _write_token(base: str, token: str | None, run_dir: str | None,
                 out_root: str) -> tuple[str, str]:
    """(endpoint URL, token) for a mutating request: the configured token, else
    the one the run saved in its directory (``--run DIR``, or the newest run
    under ``out_root`` whose endpoint is ``base``)."""
    from app.control_access import read_token_file
    from app.resume import read_run_info

    if run_dir is not None:
        from pathlib import Path

        info = read_run_info(Path(run_dir))
        base = info.get("control_url") or base
        saved = read_token_file(run_dir)
        if saved is None and token is None:
            raise ControlError(f"{run_dir} holds no control.token: the run was started with a "
                               "configured token (set the variable named by control.token_env) "
                               "or without a control endpoint")
        return base, token or saved  # type: ignore[return-value]  # one of them is set (checked above)
    if token is not None:
        return base, token
    for candidate in _run_dirs(out_root):
        if read_run_info(candidate).get("control_url") == base:
            saved = read_token_file(candidate)
            if saved is not None:
                return base, saved
    raise ControlError(f"the kill switch at {base} needs its run's token: pass --run DIR (the "
                       "run directory holds control.token) or set control.token_env")


def kill_switch(on: bool, reason: str, control: str | None = None, *,
                config_path: str | None = None, run_dir: str | None = None) -> int:
    """``main.py kill-switch on|off --reason R``: flip the running runtime's kill switch."""
    from config import ConfigError, load_config

    try:
        base, token = _target(control, config_path)
        base, token = _write_token(base, token, run_dir,
                                   load_config(config_path).run.out_root)
    except (ControlError, ConfigError) as exc:
        print(f"tradewarden kill-switch: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        fetch(f"{base}/kill-switch", token, body={"on": on, "reason": reason})
    except InspectError as exc:
        print(f"tradewarden kill-switch: {exc}", file=sys.stderr)
        return 1
    print(f"kill switch {'ON' if on else 'OFF'} requested ({reason}); "
          f"check with: python main.py inspect")
    return 0
