"""``probekit cache ls | du | rm``: inspect and clean an activation cache, touching only files the cache wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from probekit.cache import ActivationCache
from probekit.terminal import console, escape, fail, human_bytes, show, user_errors

cache_app = typer.Typer(help="Inspect and clean the activation cache.", no_args_is_help=True)
CacheDir = Annotated[Path, typer.Option("--dir", help="cache directory (a spec's 'cache:')")]
DEFAULT_DIR = Path(".probekit-cache")


def open_cache(directory: Path) -> ActivationCache | None:
    """The cache at ``directory``; None when there is none yet; exit 2 for a directory probekit did not write."""
    cache = ActivationCache(directory)
    if not directory.exists():
        console.print(f"no activation cache at {directory} (the first run that extracts activations creates it)",
                      markup=False)
        return None
    if not directory.is_dir() or not cache.is_cache():
        raise fail(f"{directory} is not a probekit activation cache (no CACHEDIR.TAG and no cache entries); "
                   "nothing was read or removed")
    return cache


@cache_app.command("ls")
def cache_ls(directory: CacheDir = DEFAULT_DIR) -> None:
    """List cached activation matrices (model, dataset, layer, shape, size, damage) and leftover files."""
    cache = open_cache(directory)
    if cache is None:
        return
    with user_errors(f"the activation cache {directory}"):
        entries = sorted(cache.entries(), key=lambda e: (e.labels.get("model", ""), e.labels.get("dataset", ""),
                                                          e.key.get("layer", -1)))
        leftovers = cache.leftovers()
    table = Table(title=f"activation cache {directory}")
    for column in ("entry", "model", "dataset", "layer", "shape", "size", "state"):
        table.add_column(column, overflow="fold", no_wrap=column == "entry")
    for entry in entries:
        table.add_row(entry.digest, escape(entry.labels.get("model", entry.key.get("model", "?"))),
                      escape(entry.labels.get("dataset", "?")), str(entry.key.get("layer", "?")),
                      " x ".join(map(str, entry.description.get("shape", []))), human_bytes(entry.size),
                      "ok" if entry.problem is None else f"[red]damaged: {escape(entry.problem)}[/red]")
    for leftover in leftovers:
        state = {"writing": "partial: being written by a running extraction",
                 "stale": "[yellow]partial, left by a killed run: `cache rm --partial` removes it[/yellow]",
                 "orphan": "[yellow]data without a description: `cache rm --partial` removes it[/yellow]"}
        table.add_row(leftover.path.name, "-", "-", "-", "-", human_bytes(leftover.size), state[leftover.state])
    show(table)
    damaged = sum(entry.problem is not None for entry in entries)
    console.print(f"{len(entries)} entries ({damaged} damaged), {len(leftovers)} leftover files, "
                  f"{human_bytes(cache.total_bytes())}", markup=False)


@cache_app.command("du")
def cache_du(directory: CacheDir = DEFAULT_DIR) -> None:
    """Disk space of the cache's entries and of files left by killed runs (other files are not counted)."""
    cache = open_cache(directory)
    if cache is None:
        return
    leftovers = cache.leftovers()
    line = f"{human_bytes(cache.total_bytes())} in {cache.entry_count()} entries"
    if leftovers:
        line += (f", of which {human_bytes(sum(leftover.size for leftover in leftovers))} in {len(leftovers)} "
                 "partial or orphan files (`probekit cache rm --partial` removes those no run is writing)")
    console.print(f"{line} ({directory})", markup=False)


@cache_app.command("rm")
def cache_rm(
    entries: Annotated[Optional[list[str]], typer.Argument(help="entry ids from `cache ls` (default: all)")] = None,
    directory: CacheDir = DEFAULT_DIR,
    partial: Annotated[bool, typer.Option("--partial", help="only files left by killed runs (no entries)")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove every entry without asking")] = False,
) -> None:
    """Remove the named entries, or only leftovers (--partial), or everything the cache wrote (asks first)."""
    cache = open_cache(directory)
    if cache is None:
        return
    with user_errors(f"the activation cache {directory}"):
        if entries:
            unknown = set(entries) - cache.digests()
            if unknown:
                raise fail(f"no cache entry {', '.join(sorted(unknown))} in {directory}; nothing was removed")
            freed = cache.remove(entries) + (cache.remove_leftovers() if partial else 0)
        elif partial:
            freed = cache.remove_leftovers()
        else:
            count, size = cache.entry_count(), cache.total_bytes()
            if not yes and not _confirm(f"Remove all {count} entries ({human_bytes(size)}) from {directory}?"):
                console.print("nothing removed", markup=False)
                raise typer.Exit(1)
            freed = cache.remove()
    console.print(f"removed {human_bytes(freed)} from {directory}", markup=False)


def _confirm(question: str) -> bool:
    """Ask on the terminal; without one (a pipe, CI) an answer on stdin counts, end of input is a no."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        return False
