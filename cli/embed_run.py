"""What ``embgemma embed`` does around the library's job: progress, signals, errors, summary.

The job itself (checks, model, resume, chunks, assembly) is
:func:`embgemma_plugins.jobs.local.run_local` or, with ``--engine ray``,
:func:`embgemma_plugins.ray.engine.run_ray`; this module turns their errors into
click's (usage: exit 2; failure: exit 1; interrupted: exit 130) and prints the summary.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

import click

from embgemma_plugins.errors import EmbeddingGemmaError, InvalidArgumentError, JobInterrupted
from embgemma_plugins.jobs.plan import EmbedOptions

from .progress import Progress
from .report import report


def options_of(values: Mapping[str, Any]) -> EmbedOptions:
    """The library's options from click's values (``--dim`` is a string choice)."""
    known = {k: v for k, v in values.items() if k in EmbedOptions.names()}
    known["dimensions"] = int(str(values["dim"]))
    known["keep"] = tuple(known.get("keep", ()))
    return EmbedOptions(**known)


def execute(values: Mapping[str, Any]) -> None:
    o = options_of(values)
    quiet = bool(values.get("quiet"))
    def say(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    mode = Progress.choose(quiet)
    interval = values.get("progress_interval")
    progress = Progress(mode, float(interval) if interval is not None
                        else 0.2 if mode == "bar" else 30)
    previous = _on_sigterm(_interrupt)  # `kill` is reported like Ctrl-C
    try:
        if o.engine == "ray":  # docs/ray.md; Ray is imported only if installed and asked for
            from embgemma_plugins.ray.engine import run_ray

            done = run_ray(o, progress, quiet)
        else:
            from embgemma_plugins.jobs.local import run_local

            done = run_local(o, progress, say)
    except InvalidArgumentError as e:
        raise click.UsageError(str(e)) from e
    except JobInterrupted as e:
        click.echo(f"embgemma: {e}", err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # before the job began: loading modules, checking options
        click.echo("embgemma: interrupted while starting; nothing was written", err=True)
        raise SystemExit(130) from None
    except EmbeddingGemmaError as e:
        raise click.ClickException(str(e)) from e
    finally:
        progress.close()
        if previous is not None:
            _on_sigterm(previous)
    report(o.out, o.id_field, done.totals, progress, done.duplicates, done.rejects, say,
           done.row_map)
    if done.cpu_seconds is not None:
        say(f"embgemma: {done.totals.tokens / max(done.cpu_seconds, 1e-9):,.0f} tokens per "
            f"actor CPU-second ({done.threads} thread(s) per actor): the per-core rate that "
            "sizes a cluster")


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (main thread only); returns the previous one."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
