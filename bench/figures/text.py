"""Formatting of figures for the rendered docs: one place, so every table
rounds the same way and a re-render is byte for byte the same."""

import datetime


def num(v, digits=0):
    """A figure: thousands separators without decimals, else fixed decimals; – for none."""
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def percent(v, digits=0):
    """A signed fraction as a percentage: -0.25 → -25%; – for none."""
    if v is None:
        return "–"
    return f"{v * 100:+.{digits}f}%"


def times(r, digits=2):
    return "–" if r is None else f"{r:.{digits}f}×"


def span(lo, hi, digits=2, unit="×"):
    """"lo–hi" (one value when they round the same)."""
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    return f"{a}{unit}" if a == b else f"{a}–{b}{unit}"


def ratio_cell(s):
    """Bold median ratio with its min–max over rounds: **1.97×** (1.80–2.05)."""
    if s is None:
        return "–"
    med, lo, hi = s
    return f"**{med:.2f}×** ({lo:.2f}–{hi:.2f})"


def mib(kib):
    return kib / 1024


def duration(secs):
    """12 min 5 s, 45 s, 1 h 2 min."""
    secs = int(round(secs))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    if m:
        return f"{m} min {s} s" if s else f"{m} min"
    return f"{s} s"


def day(iso):
    """The date part of an ISO timestamp."""
    return iso[:10] if iso else "unknown date"


def when(iso):
    """2026-12-06 21:30 UTC."""
    if not iso:
        return "at an unknown time"
    t = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.strftime("%Y-%m-%d %H:%M UTC")


def machine(m):
    """One line for a machine record (data.machine() or oca-bench's --results)."""
    if not m:
        return "an unrecorded machine"
    parts = [f"{m.get('cpus', '?')} CPUs ({m.get('cpu_model', 'unknown')})"]
    if m.get("mem_gib") is not None:
        parts.append(f"{m['mem_gib']:.0f} GiB")
    parts.append(f"{m.get('os', 'Linux')}, kernel {m.get('kernel', '?')}")
    if m.get("nginx"):
        parts.append(f"nginx {m['nginx']}")
    if m.get("rustc"):
        parts.append(m["rustc"].split(" (")[0])
    text = ", ".join(parts)
    if m.get("load_avg_1m_at_start") is not None:
        text += f"; load average {m['load_avg_1m_at_start']:.2f} at the start (the machine is shared)"
    return text


def table(head, rows, align=None):
    """A Markdown table; `align` is a string of l/r per column."""
    align = align or "l" * len(head)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(sep) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def count(n, noun, plural=None):
    """'1 round', '3 rounds'."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def listing(items, last="and"):
    """a, b and c."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]
