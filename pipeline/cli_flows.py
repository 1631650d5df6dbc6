"""The orchestration commands of ``qpm-screen``: ``screen``, ``batch``, ``serve`` and ``bench``.

``pipeline.cli`` registers them with one call, :func:`add_parsers`. Prefect is imported only when one of these
commands runs, after the environment it reads at import time (``PREFECT_HOME``, log level) has been decided
from the settings and flags; importing this module stays cheap and never fails without Prefect.

Exit codes: 0 everything screened; 3 finished but some files (or whole submissions) could not be read, and they
are listed; 2 usage or configuration error; 130 or 143 stopped by Ctrl+C or SIGTERM (see ``pipeline.cli.main``).
A bad file never produces a traceback. A submission that could not be screened at all leaves no earlier report
passing for current in its output folder: see ``pipeline.report.set_aside_earlier_outputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, quiet_logs_while_stopping, settings_from_args
from pipeline.config import Settings
from pipeline.inputs import HIDDEN_CODE, batch_entries, collect_files, hidden_entries
from pipeline.prefect_home import use_default_home

if TYPE_CHECKING:
    from pipeline.flows import BatchOutcome, SubmissionOutcome


# --- shared helpers -----------------------------------------------------------------------------------------


def prepare_prefect(settings: Settings, *, verbose: bool) -> None:
    """Decide the environment Prefect reads at import: its home under the cache folder, and how chatty it is.

    An explicit ``PREFECT_HOME`` (or ``PREFECT_API_URL`` for a team server) from the user is kept.
    """
    use_default_home(settings)
    # Quiet by default: the command prints its own summary; problems with files are reported in it, not logged.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING" if verbose else "ERROR")
    # A local Dask cluster (--workers) otherwise logs every worker start and stop through Prefect's console.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "error")


def _error(command: str, message: str) -> int:
    print(f"qpm-screen {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or child.is_relative_to(parent)


def check_output_location(out: Path, inputs: Sequence[Path]) -> str | None:
    """Why ``out`` may not be used for these inputs, or None. Output never goes into an input folder."""
    if out.exists() and not out.is_dir():
        return f"the output folder {out} is a file; choose a folder"
    for path in inputs:
        folder = path if path.is_dir() else path.parent
        if path.is_dir() and _inside(out, folder):
            return f"the output folder {out} is inside the input folder {folder}; choose a folder outside it"
        if path.is_dir() and _inside(folder, out):
            return f"the input folder {folder} is inside the output folder {out}; choose another output folder"
        if path.is_file() and out.resolve() == folder.resolve():
            return f"the output folder {out} is the folder holding {path.name}; choose another folder"
    return None


def first_missing_folder(out: Path) -> Path | None:
    """The top-most folder of ``out`` and its parents that does not exist yet (what creating ``out`` would make)."""
    missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def remove_if_left_empty(out: Path, created: Path | None) -> None:
    """Remove ``out`` and the parents this run created (up to ``created``) when nothing was written in them.

    A submission that could not be screened at all (a zip refused as a whole, an interrupted run) must not leave
    an empty output folder behind, as if something were there; as in a batch, where such a submission gets no
    folder, only its reason. A folder the user made beforehand is kept.
    """
    if created is None:
        return
    folder = out
    while True:
        try:
            folder.rmdir()  # only ever removes an empty folder
        except OSError:
            return
        if folder == created or folder.parent == folder:
            return
        folder = folder.parent


def prepare_output_folder(out: Path) -> str | None:
    """Create ``out`` (and its parents) for the reports; why it cannot be, or None."""
    if out.exists() and not out.is_dir():
        return f"the output folder {out} is a file; choose a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the output folder {out}: {exc.strerror or exc}"
    if not os.access(out, os.W_OK | os.X_OK):
        return f"cannot write to the output folder {out}: check its permissions"
    return None


@contextmanager
def output_folder(out: Path) -> Iterator[str | None]:
    """Create ``out`` for a run's reports and yield why it cannot be (None when it can); on leaving, however the run
    ended, remove the folders this made if nothing was written in them (:func:`remove_if_left_empty`).

    Created before any work, so an unwritable place is a usage error at once rather than after the screening.
    """
    created = first_missing_folder(out)
    try:
        yield prepare_output_folder(out)
    finally:
        remove_if_left_empty(out, created)


def _check_ready(settings: Settings, *, verbose: bool) -> None:
    """Fail early (a ConfigError, exit 2) on a missing catalogue or model, before any flow starts.

    Also, once Prefect is imported (its logging configured), keeps its reports about a Ctrl+C or SIGTERM off the
    terminal unless ``verbose``: see :class:`pipeline.cli.QuietWhileStopping`.
    """
    from pipeline import flows
    from pipeline.catalogue import load_catalogue

    if not verbose:
        quiet_logs_while_stopping()
    load_catalogue(settings.catalogue_path)
    flows.get_matcher(settings)  # loads (and checks) the trained model once; the flows reuse it


@contextmanager
def progress_display(enabled: bool, description: str) -> Iterator[None]:
    """A rich progress bar on stderr fed by the flows' progress events (only on a terminal, never with --json)."""
    if not enabled or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline import flows

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task_id = bar.add_task(description, total=None)
        counted = {"documents": 0, "submissions": False}

        def listener(event: str, details: dict[str, Any]) -> None:
            if event == "submissions":
                counted["submissions"] = True
                bar.update(task_id, total=details["total"])
            elif event == "submission" and counted["submissions"]:
                bar.update(task_id, advance=1, description=f"{description}: {details['name']}")
            elif event == "documents" and not counted["submissions"]:
                counted["documents"] += details["total"]
                bar.update(task_id, total=counted["documents"])
            elif event == "document" and not counted["submissions"]:
                bar.update(task_id, advance=1, description=f"{description}: {details['name']}")
            elif event == "scoring" and not counted["submissions"]:
                bar.update(task_id, description=f"{description}: scoring {details['name']}")

        with flows.progress_listener(listener):
            yield


def outcome_json(outcome: SubmissionOutcome) -> dict[str, Any]:
    """The script-facing summary of one submission."""
    report = outcome.report
    data: dict[str, Any] = {"name": outcome.name, "out_dir": outcome.out_dir, "reused": outcome.reused}
    if report is None:
        data.update(screened=False, error={"code": outcome.error_code, "message": outcome.error})
        # Set when out_dir held an earlier run's outputs: where they went, and the notice saying they are not current.
        data.update(not_screened_notice=outcome.notice, earlier_outputs=outcome.earlier_outputs)
        return data
    summary = report["summary"]
    data.update(
        screened=True,
        report=str(Path(outcome.out_dir) / "report.json"),
        verdict=summary["verdict"],
        counts=summary["counts"],
        essential_missing=summary["essential_missing"],
        documents=[d["name"] for d in report["documents"]],
        errors=report["errors"],
        skipped=report.get("skipped", []),
    )
    return data


def _print_outcome(outcome: SubmissionOutcome) -> None:
    if outcome.report is None:
        print(f"NOT SCREENED {outcome.name}: {outcome.error}")
        # An earlier run's reports in the output folder were moved aside, so that none passes for this run's.
        if outcome.earlier_outputs:
            print(f"  earlier outputs, not current, moved to: {outcome.earlier_outputs}")
        if outcome.notice:
            print(f"  see: {outcome.notice}")
        return
    summary = outcome.report["summary"]
    counts = summary["counts"]
    note = " (unchanged; earlier outputs kept)" if outcome.reused else ""
    print(f"{outcome.name}: {summary['verdict']}{note}")
    print(
        f"  {len(outcome.report['documents'])} document(s); "
        f"{counts['met']} met, {counts['partial']} partial, {counts['missing']} missing"
    )
    if summary["essential_missing"]:
        print(f"  essential missing: {', '.join(summary['essential_missing'])}")
    for err in outcome.report["errors"]:
        print(f"  FAILED {err['name']}: {err['message']}")
    for skipped in outcome.report.get("skipped", []):  # copies of a file that was screened: nothing lost
        print(f"  skipped {skipped['name']}: {skipped['reason']}")
    print(f"  report: {Path(outcome.out_dir) / 'report.json'}")
    evidence_map = Path(outcome.out_dir) / "evidence-map.html"
    if evidence_map.exists():
        print(f"  evidence map (open in a browser): {evidence_map}")


# --- screen -------------------------------------------------------------------------------------------------


def _hidden_note(names: Sequence[str], most: int | None = None) -> str:
    """Names hidden entries, which are not screened (at most ``most`` of them; empty when there are none)."""
    if not names:
        return ""
    shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if most and len(names) > most else "")
    return f" (hidden, so not screened: {shown}; rename without the leading dot to screen)"


def cmd_screen(args: argparse.Namespace) -> int:
    """Screen one submission (folders, zips and files together) and write its reports."""
    settings = settings_from_args(args)
    inputs = [Path(p) for p in args.paths]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        return _error("screen", f"no such file or folder: {', '.join(missing)}")
    if not collect_files(inputs):
        return _error(
            "screen",
            f"nothing to screen: {', '.join(map(str, inputs))} holds no files"
            + _hidden_note([name for name, _ in hidden_entries(inputs)], most=5),
        )
    out = Path(args.out)
    problem = check_output_location(out, inputs) or scale_problem(args.workers, args.dask_address)
    if problem:
        return _error("screen", problem)
    # Settings, catalogue and model first: a configuration error must not leave an empty output folder behind.
    prepare_prefect(settings, verbose=args.verbose)
    _check_ready(settings, verbose=args.verbose)
    from pipeline import flows

    with output_folder(out) as problem:
        if problem:
            return _error("screen", problem)
        with progress_display(not args.json, "screening"):
            outcome = flows.run_screen(
                [str(p) for p in inputs],
                out,
                settings,
                name=args.name,
                workers=args.workers,
                dask_address=args.dask_address,
                refresh=args.refresh,
            )
    if args.json:
        _print_json(outcome_json(outcome))
    else:
        _print_outcome(outcome)
    return EXIT_SOME_FAILED if (outcome.error or outcome.failed_files) else EXIT_OK


# --- batch --------------------------------------------------------------------------------------------------


def cmd_batch(args: argparse.Namespace) -> int:
    """Screen every submission of a batch folder and write the batch summary."""
    settings = settings_from_args(args)
    batch_dir, out = Path(args.batch_dir), Path(args.out)
    if not batch_dir.is_dir():
        return _error("batch", f"{batch_dir} is not a folder (expected one sub-folder or zip per provider)")
    problem = check_output_location(out, [batch_dir]) or scale_problem(args.workers, args.dask_address)
    if problem:
        return _error("batch", problem)
    entries = batch_entries(batch_dir)
    if all(item.code == HIDDEN_CODE for item in entries):
        note = _hidden_note([item.name for item in entries])
        return _error(
            "batch", f"{batch_dir} holds no submissions: put each provider's files in a sub-folder or zip{note}"
        )
    prepare_prefect(settings, verbose=args.verbose)
    _check_ready(settings, verbose=args.verbose)
    from pipeline import flows

    with output_folder(out) as problem:  # a batch stopped before it wrote anything leaves no empty folder
        if problem:
            return _error("batch", problem)
        with progress_display(not args.json, "batch"):
            batch = flows.run_batch(
                batch_dir,
                out,
                settings,
                concurrency=args.concurrency,
                workers=args.workers,
                dask_address=args.dask_address,
                refresh=args.refresh,
            )
    if args.json:
        _print_json(batch_json(batch, out))
    else:
        _print_batch(batch, out)
    return EXIT_SOME_FAILED if batch.failed else EXIT_OK


def batch_json(batch: BatchOutcome, out: Path) -> dict[str, Any]:
    """The script-facing summary of a batch."""
    return {
        "out_dir": str(out),
        "summary_files": batch.summary_files,
        "submissions": [outcome_json(o) for o in batch.outcomes],
        "failed": batch.failed,
    }


def _print_batch(batch: BatchOutcome, out: Path) -> None:
    screened = [o for o in batch.outcomes if o.report is not None]
    print(f"{len(screened)} of {len(batch.outcomes)} submission(s) screened into {out}")
    for outcome in batch.outcomes:
        _print_outcome(outcome)
    for path in batch.summary_files:
        print(f"summary: {path}")


# --- serve --------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve both flows as deployments so runs can be started from the Prefect UI (needs a Prefect server)."""
    settings = settings_from_args(args)
    if not os.environ.get("PREFECT_API_URL") and not args.check:
        return _error(
            "serve",
            "no Prefect server is configured. Start one with `prefect server start`, then set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (see docs/operations.md)",
        )
    prepare_prefect(settings, verbose=True)
    from pipeline import flows

    deployments = flows.build_deployments(str(Path(args.out).resolve()), settings)
    if args.check:
        names = [f"{d.flow_name}/{d.name}" for d in deployments]
        if args.json:
            _print_json({"deployments": names})
        else:
            print("\n".join(names))
        return EXIT_OK
    from prefect import serve

    serve(*deployments, limit=args.limit)
    return EXIT_OK


# --- bench --------------------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    """Print benchmark figures (a benchmark, not a test)."""
    settings = settings_from_args(args)
    import pipeline.bench as bench

    if args.what == "extract":
        figures = bench.bench_extract(settings)
    else:
        prepare_prefect(settings, verbose=args.verbose)
        _check_ready(settings, verbose=args.verbose)
        figures = bench.bench_all(settings, batch_size=args.batch_size, progress=not args.json)
    if args.json:
        _print_json(figures)
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


# --- registration -------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count of workers, submissions or runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def scale_problem(workers: int | None, dask_address: str | None, *, timeout: float = 5.0) -> str | None:
    """Why ``--workers`` / ``--dask-address`` cannot be used, or None; checked before any work starts.

    A scheduler that cannot be reached would otherwise surface only after Prefect has started, as Dask's
    connection traceback 30 seconds later.
    """
    if not dask_address:
        return None
    if workers:
        return "give either --workers (a local cluster) or --dask-address (an existing one), not both"
    parsed = urllib.parse.urlsplit(dask_address)
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:  # a port that is not a number
        host, port = None, None
    if parsed.scheme not in ("tcp", "tls") or not host or not port:
        return f"--dask-address must look like tcp://HOST:PORT, not {dask_address!r}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach the Dask scheduler at {dask_address}: {exc.strerror or exc}"
    return None


def _scale_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="run document tasks on a local Dask cluster of N worker processes (default: threads in this process)",
    )
    p.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="run document tasks on an existing Dask cluster (its workers need this package and the cache folder)",
    )
    p.add_argument("--refresh", action="store_true", help="ignore cached results and earlier outputs; redo all work")


def add_parsers(sub: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Register ``screen``, ``batch``, ``serve`` and ``bench`` on ``sub`` (the CLI's subparsers)."""
    if common is None:  # standalone use (tests): the same common flags as pipeline.cli
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--catalogue", type=Path, help="indicator catalogue folder or YAML file")
        common.add_argument("--models-dir", type=Path, help="folder of the trained matcher")
        common.add_argument("--cache-dir", type=Path, help="embedding and result cache")
        common.add_argument("--json", action="store_true", help="print one JSON object for scripts")
        common.add_argument("--verbose", action="store_true", help="log progress details to stderr")
    parents = [common]

    p = sub.add_parser(
        "screen",
        parents=parents,
        help="screen one provider's submission (folders, zips or files) and write its reports",
        description="Screen one submission: every file named, every file in the folders named and in the zips "
        "named, together. Writes report.json, coverage.csv, coverage.xlsx (and the evidence map) into --out. "
        "Exit code 0: all read; 3: some files could not be read (listed); 2: usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or .zip files of one submission")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (never inside an input folder)")
    p.add_argument("--name", help="the submission's name in reports (default: the folder or zip name)")
    _scale_flags(p)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser(
        "batch",
        parents=parents,
        help="screen every submission (sub-folder or zip) of a folder and write a batch summary",
        description="Screen a batch: each sub-folder or .zip of DIR is one provider's submission, written to "
        "--out/NAME/. Then batch-summary.csv and batch-summary.xlsx rank providers riskiest first and list every "
        "file that could not be read. Re-running after an interruption only does the work not yet done.",
    )
    p.add_argument("batch_dir", metavar="DIR", help="folder with one sub-folder or zip per provider")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (never inside DIR)")
    p.add_argument("--concurrency", type=positive_int, default=2, metavar="N", help="submissions screened at once (2)")
    _scale_flags(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser(
        "serve",
        parents=parents,
        help="serve the screening flows to a Prefect server so runs can be started from its UI",
        description="Serve the screen-batch and screen-submission flows as deployments (flow.serve) to the "
        "Prefect server named by PREFECT_API_URL; runs started in its UI execute in this process. "
        "See docs/operations.md.",
    )
    p.add_argument("--out", default="out", metavar="DIR", help="default output folder of runs (default: out)")
    p.add_argument("--limit", type=positive_int, default=2, metavar="N", help="flow runs executed at once (2)")
    p.add_argument("--check", action="store_true", help="build the deployments, print their names and exit")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "bench",
        parents=parents,
        help="print performance figures (end to end, bare cost, overhead, memory, batch)",
        description="Benchmark. `bench`: cold and warm end-to-end time of a 40-page, 4-policy submission built "
        "from the sample policies, the bare cost of the same work without Prefect (warm and bare: medians of "
        "three runs), peak memory and a batch of 20 submissions with its re-run. `bench extract`: extraction and "
        "segmentation speed of the sample policies. Prints figures; it is not a test.",
    )
    p.add_argument("what", nargs="?", choices=["all", "extract"], default="all", help="what to measure (all)")
    p.add_argument(
        "--batch-size", type=positive_int, default=20, metavar="N", help="submissions in the batch figure (20)"
    )
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """Run only these commands (the full CLI is ``pipeline.cli.main``, which includes them)."""
    from pipeline.errors import ConfigError

    parser = argparse.ArgumentParser(prog="qpm-screen")
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"qpm-screen: {exc}", file=sys.stderr)
        return EXIT_USAGE
