"""``qpm-screen``: the one command-line entry point.

Exit codes: 0 everything read and screened; 3 finished but some files failed (they are listed); 2 usage or
configuration error; 130 or 143 stopped by Ctrl+C or SIGTERM. A bad file never produces a traceback, and neither
does stopping a run (see :func:`main`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import PROJECT_ROOT, Settings, limit_malloc_arenas
from pipeline.errors import ConfigError

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED = 0, 2, 3


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from defaults and the environment, overridden by the common flags (and ``extra`` ones)."""
    return Settings.from_env(
        catalogue_path=getattr(args, "catalogue", None),
        models_dir=getattr(args, "models_dir", None),
        cache_dir=getattr(args, "cache_dir", None),
        **extra,
    )


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


# --- extract ------------------------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract and segment files; print a summary or JSON."""
    from pipeline.document import metadata_dict
    from pipeline.ingest import FailedDocument, ingest
    from pipeline.inputs import collect_files

    settings = settings_from_args(args)
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"qpm-screen extract: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    files = collect_files(paths)
    if not files:
        print(f"qpm-screen extract: nothing to read: {', '.join(map(str, paths))} holds no files", file=sys.stderr)
        return EXIT_USAGE
    documents: list[dict[str, Any]] = []
    failed = 0
    for path in files:
        result = ingest(path, settings)
        if isinstance(result, FailedDocument):
            failed += 1
            documents.append(
                {
                    "name": result.name,
                    "type": None,
                    "pages": 0,
                    "words": 0,
                    "warnings": [],
                    "error": result.message,
                    "error_code": result.code,
                    "passages": [],
                }
            )
            continue
        doc = result.document
        documents.append(
            {
                "name": doc.name,
                "type": doc.metadata.policy_type,
                "type_confidence": round(doc.metadata.policy_type_confidence, 3),
                "pages": doc.pages,
                "words": doc.metadata.word_count,
                "warnings": doc.warnings,
                "error": None,
                "metadata": metadata_dict(doc.metadata),
                "passages": [p.to_json() for p in result.passages],
            }
        )
    if args.json:
        _print_json({"documents": documents})
    else:
        for d in documents:
            if d["error"]:
                print(f"FAILED  {d['name']}: {d['error']}")
                continue
            print(
                f"{d['name']}: {d['type']} ({d['type_confidence']:.2f}), {d['pages']} page(s), {d['words']} words, "
                f"{len(d['passages'])} passages"
            )
            for warning in d["warnings"]:
                print(f"   warning: {warning}")
        print(f"{len(documents) - failed} read, {failed} failed")
    return EXIT_SOME_FAILED if failed else EXIT_OK


# --- evaluate -----------------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Screen each file of a folder as its own document and compare with gold labels."""
    from pipeline.evaluation_run import run_evaluation

    settings = settings_from_args(args)
    docs_dir, labels = Path(args.docs_dir), Path(args.labels_csv)
    # each argument checked on its own, so the message says which one is wrong
    for what, path, kind, ok in (
        ("DOCS_DIR", docs_dir, "folder", docs_dir.is_dir()),
        ("LABELS_CSV", labels, "file", labels.is_file()),
    ):
        if not ok:
            problem = f"is not a {kind}" if path.exists() else "does not exist"
            print(f"qpm-screen evaluate: {what} {path} {problem}", file=sys.stderr)
            return EXIT_USAGE
    predictions = Path(args.predictions) if args.predictions else None
    if predictions is not None and (predictions.is_dir() or not predictions.parent.is_dir()):
        # checked now, not after minutes of screening
        print(f"qpm-screen evaluate: --predictions {predictions} must be a file in an existing folder", file=sys.stderr)
        return EXIT_USAGE
    report = run_evaluation(settings, docs_dir, labels, predictions_path=predictions)
    if args.json:
        _print_json(report)
    else:
        _print_evaluation(report)
    return EXIT_SOME_FAILED if report.get("failed_documents") else EXIT_OK


def _print_evaluation(report: dict[str, Any]) -> None:
    keys = (
        "macro_f1_3class",
        "f1_met",
        "f1_partial",
        "f1_missing",
        "coverage_precision",
        "coverage_recall",
        "coverage_f1",
        "coverage_ap",
        "missing_as_met_rate",
        "evidence_hit_at_3",
    )
    base = report.get("keyword_baseline", {})
    print(f"{'metric':<22}{'matcher':>10}{'keywords':>10}")
    for key in keys:
        a, b = report.get(key), base.get(key)
        print(f"{key:<22}{_fmt(a):>10}{_fmt(b):>10}")
    print(f"{'n_rows':<22}{report.get('n_rows', 0):>10}")
    cm = report.get("confusion_matrix", {})
    if cm:
        print("\nconfusion (rows gold, columns predicted: met partial missing)")
        for label, row in zip(cm["labels"], cm["rows_gold_columns_predicted"], strict=True):
            print(f"  {label:<8}" + "".join(f"{v:>8}" for v in row))
    print("\nper indicator (accuracy, gold m/p/x -> predicted m/p/x)")
    for ind, row in report.get("per_indicator", {}).items():
        g, p = row["gold"], row["predicted"]
        print(
            f"  {ind:<8} {row['accuracy']:.2f}  {g['met']}/{g['partial']}/{g['missing']} -> "
            f"{p['met']}/{p['partial']}/{p['missing']}"
        )
    env = report.get("environment")
    if env:
        print(
            f"\nencoder {report.get('encoder')} on {env['cpu']} ({env['cpu_count']} cores; "
            f"{' '.join(env['simd']) or 'no listed SIMD'}), torch {env['torch']} "
            f"({env['torch_threads']} threads)"
        )
    for failure in report.get("failed_documents", []):
        print(f"FAILED {failure['name']}: {failure['message']}")
    missing = report.get("labelled_documents_missing", [])
    if missing:
        print(f"NOT FOUND, rows not scored: {len(missing)} labelled document(s) not in DOCS_DIR: {', '.join(missing)}")
    unknown = report.get("label_indicators_unknown", {})
    if unknown:
        listed = ", ".join(f"{ind} ({n} row{'s' if n > 1 else ''})" for ind, n in unknown.items())
        print(f"NOT IN CATALOGUE, rows not scored: {len(unknown)} indicator id(s) in LABELS_CSV: {listed}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


# --- train --------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """Rebuild the trained matcher from the catalogue and the labelled sample policies."""
    from pipeline.train import train

    settings = settings_from_args(args)
    reviews = None
    if args.from_reviews:
        from pipeline.web.db import database_url
        from pipeline.web.workspace import export_review_labels

        reviews = export_review_labels(database_url(settings))
    metrics = train(settings, Path(args.docs), Path(args.labels), settings.models_dir, reviews=reviews)
    if args.json:
        _print_json(metrics)
    else:
        print(f"trained matcher written to {settings.models_dir}")
        for key, value in metrics.items():
            print(f"  {key}: {value}")
    return EXIT_OK


# --- indicators ---------------------------------------------------------------------------------------------


def cmd_indicators(args: argparse.Namespace) -> int:
    """List, show, validate or import indicator catalogues."""
    from pipeline.catalogue import check_output_file, import_spreadsheet, load_catalogue, write_catalogue_file

    settings = settings_from_args(args)
    if args.action == "import":
        sheet, out = Path(args.file or args.target), Path(args.out)
        check_output_file(out, sheet)  # before the spreadsheet is read: a bad --out fails at once
        meta = {
            "id": args.id,
            "version": args.version,
            "title": args.title or args.id,
            "notice": "Imported from a spreadsheet with qpm-screen indicators import.",
            "areas": load_catalogue(settings.catalogue_path).areas if not args.areas else _parse_areas(args.areas),
        }
        meta, entries = import_spreadsheet(sheet, meta)
        write_catalogue_file(meta, entries, out)
        if args.json:
            _print_json({"written": str(out), "indicators": len(entries)})
        else:
            print(f"wrote {len(entries)} indicators to {out}")
        return EXIT_OK
    if args.action == "show":
        if args.file:
            raise ConfigError(
                "indicators show: --file is for import, validate and list; choose the catalogue with --catalogue"
            )
        path = settings.catalogue_path
    else:
        path = _catalogue_to_read(args, settings.catalogue_path)
    catalogue = load_catalogue(path)
    if args.action == "validate":
        count = len(catalogue.indicators)
        if args.json:
            _print_json(
                {
                    "catalogue": str(path),
                    "id": catalogue.id,
                    "version": catalogue.version,
                    "indicators": count,
                    "valid": True,
                }
            )
        else:
            print(f"{path}: {catalogue.id} {catalogue.version}: {count} indicators, valid")
        return EXIT_OK
    if args.action == "list":
        if args.json:
            _print_json(
                [{"id": i.id, "area": i.area, "title": i.title, "level": i.level} for i in catalogue.indicators]
            )
        else:
            for ind in catalogue.indicators:
                print(f"{ind.id:<8} {ind.level:<13} {ind.title}")
        return EXIT_OK
    try:
        ind = catalogue.find(args.target or "")  # forgives case (conf-02) and suggests close ids
    except KeyError as exc:
        print(f"qpm-screen indicators show: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        from dataclasses import asdict

        _print_json(asdict(ind))
    else:
        print(f"{ind.id}  {ind.title}  [{catalogue.areas.get(ind.area, ind.area)}; {ind.level}]")
        print(f"\nMust say: {ind.must_say}\n\nEssential elements:")
        for element in ind.elements:
            print(f"  - {element.text}")
        print(f"\nKey terms: {', '.join(ind.key_terms)}\nPolicy types: {', '.join(ind.policy_types)}")
        print(f"\nWhat to add if missing: {ind.what_to_add}\nBasis: {ind.basis}")
    return EXIT_OK


def _catalogue_to_read(args: argparse.Namespace, configured: Path) -> Path:
    """The catalogue ``validate`` or ``list`` reads: PATH, ``--file`` or ``--catalogue`` (one of them), else the
    configured one. Two different ones are refused rather than one of them silently ignored."""
    given = [Path(p) for p in (args.target, args.file, args.catalogue) if p]
    distinct = list(dict.fromkeys(given))
    if len(distinct) > 1:
        raise ConfigError(f"indicators {args.action}: give one catalogue, not {' and '.join(map(str, distinct))}")
    return distinct[0] if distinct else configured


def _parse_areas(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
    return {k.strip(): v.strip() for k, v in pairs}


# --- parser -------------------------------------------------------------------------------------------------


def common_options(*, keep_earlier: bool = False) -> argparse.ArgumentParser:
    """The flags every command takes, as a parent parser.

    ``keep_earlier`` is for the parser of a sub-command's own sub-command (``web create-user``): argparse lets
    its defaults overwrite what was given before it (``web --data-dir X create-user``), so there a flag that is
    not repeated sets nothing.
    """
    default: Any = argparse.SUPPRESS if keep_earlier else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--catalogue", type=Path, default=default, help="indicator catalogue folder or YAML file (QPM_CATALOGUE_PATH)"
    )
    common.add_argument(
        "--models-dir",
        type=Path,
        default=default,
        help="folder of the encoder adapter and trained matcher (QPM_MODELS_DIR)",
    )
    common.add_argument("--cache-dir", type=Path, default=default, help="embedding and result cache (QPM_CACHE_DIR)")
    flag_default: Any = argparse.SUPPRESS if keep_earlier else False
    common.add_argument("--json", action="store_true", default=flag_default, help="print one JSON object for scripts")
    common.add_argument("--verbose", action="store_true", default=flag_default, help="log progress details to stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render --help in tests)."""
    parser = argparse.ArgumentParser(
        prog="qpm-screen",
        description="Pre-screen advocacy providers' written policies against the Advocacy QPM indicators. "
        "Runs entirely on this machine: no policy text leaves it.",
    )
    parser.add_argument("--version", action="version", version=f"qpm-screen {__version__}")
    common = common_options()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", parents=[common], help="show what was extracted from files (stages 1-2)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", parents=[common], help="compare screening with gold labels")
    p.add_argument("docs_dir", metavar="DOCS_DIR", help="folder of documents, each screened on its own")
    p.add_argument("labels_csv", metavar="LABELS_CSV", help="CSV: document,indicator,expected,evidence")
    p.add_argument(
        "--predictions",
        metavar="FILE",
        help="also write the predictions CSV here (status, score and the three top-ranked passages of every row)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="rebuild the encoder adapter and the trained matcher from the sample policies",
        description="Rebuild encoder_adapter.npz, matcher.joblib and metrics.json in the models folder from the "
        "catalogue and the labelled sample policies, reproducibly on one machine (28-55 minutes on 2 cores, "
        "most of it adapting the encoder). The matcher is trained for the current QPM_ENCODER_INT8 setting.",
    )
    p.add_argument("--docs", default=str(PROJECT_ROOT / "sample_policies" / "docs"), help="labelled documents")
    p.add_argument("--labels", default=str(PROJECT_ROOT / "sample_policies" / "labels.csv"), help="labels CSV")
    p.add_argument(
        "--from-reviews",
        action="store_true",
        help="also learn from assessors' signed-off decisions in the web workspace database (QPM_DATABASE_URL)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("indicators", parents=[common], help="list, show, validate or import the catalogue")
    p.add_argument("action", choices=["list", "show", "validate", "import"])
    p.add_argument(
        "target",
        nargs="?",
        metavar="ID|FILE",
        help="for show: an indicator id such as CONF-02; for import: a .csv or .xlsx with one row per indicator; "
        "for validate and list: a catalogue folder or YAML file (default: --catalogue or QPM_CATALOGUE_PATH)",
    )
    p.add_argument(
        "--file", help="for import: the spreadsheet; for validate and list: the catalogue; if not given as FILE"
    )
    p.add_argument("--out", default="catalogue.yaml", help="for import: the catalogue file to write")
    p.add_argument("--id", default="imported", help="for import: catalogue id")
    p.add_argument("--version", dest="version", default="1", help="for import: catalogue version")
    p.add_argument("--title", help="for import: catalogue title")
    p.add_argument("--areas", help="for import: CODE=Name,CODE=Name (default: the current catalogue's areas)")
    p.set_defaults(func=cmd_indicators)

    try:
        from pipeline.cli_flows import add_parsers
    except ImportError:  # the orchestration commands need Prefect; the rest of the CLI works without it
        pass
    else:
        add_parsers(sub, common)
    try:
        from pipeline.web.cli import add_parser as add_web_parser
    except ImportError:  # the web app needs FastAPI; the rest of the CLI works without it
        pass
    else:
        add_web_parser(sub, common)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a service manager stopping the tool), handled as Ctrl+C is."""


INTERRUPTED_MESSAGE = "qpm-screen: interrupted; finished outputs are complete, nothing half-written was kept"
_stop = threading.Event()  # set once Ctrl+C or SIGTERM has asked this process to stop
_exiting = threading.Event()  # set when main() has returned as the console script: the process is ending
_raise_exceptions_before_stop = logging.raiseExceptions
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _begin_stop() -> None:
    """Note that this process is being stopped; from now on what libraries report about the stop is noise."""
    global _raise_exceptions_before_stop
    if _stop.is_set():
        return
    _stop.set()
    # The stdlib switch that logging handlers consult before printing their own delivery failures, as Prefect's
    # API log worker does ("--- Error logging to API ---"): during a stop, a line its server can no longer take
    # is expected, not news.
    _raise_exceptions_before_stop, logging.raiseExceptions = logging.raiseExceptions, False


def _reset_stop() -> None:
    """Forget an earlier stop (``main`` called again in the same process, as tests do)."""
    _exiting.clear()
    if _stop.is_set():
        _stop.clear()
        logging.raiseExceptions = _raise_exceptions_before_stop


def _on_signal(signum: int, frame: Any) -> None:
    # Ignored while a stop is under way or the process is ending anyway: raised again, the interrupt would cut
    # the clean-up short (Prefect recording the stopped run, draining its logs, stopping its server at exit)
    # and print that as tracebacks.
    if _stop.is_set() or _exiting.is_set():
        return
    _begin_stop()
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _install_signal_handlers() -> dict[int, Any]:
    """Handle SIGTERM, and SIGINT unless it is ignored, with :func:`_on_signal`; returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in _HANDLED_SIGNALS:
        current = signal.getsignal(signum)
        # An ignored SIGINT (a job started in the background by a script) stays ignored.
        if signum == signal.SIGINT and current is not signal.default_int_handler:
            continue
        previous[signum] = signal.signal(signum, _on_signal)
    return previous


def _termination_signal(exc: BaseException) -> int | None:
    """The signal number of Prefect's ``TerminationSignal`` (its SIGTERM handler's exception inside a flow run)."""
    prefect_exceptions = sys.modules.get("prefect.exceptions")  # never imported here just to look
    kind = getattr(prefect_exceptions, "TerminationSignal", None)
    return int(exc.signal) if kind is not None and isinstance(exc, kind) else None


def interrupt_exit_code(exc: BaseException | None) -> int | None:
    """130 (Ctrl+C) or 143 (SIGTERM) when ``exc`` is an interrupt or was raised while one was being handled;
    None for any other exception.

    The second case is real: inside a flow run Prefect reports the interrupted run to its server, and when the
    server went with the same signal (a service manager signals every process of the service) that report fails
    with a connection error which replaces the interrupt.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, Terminated):
            return 128 + signal.SIGTERM
        if isinstance(exc, KeyboardInterrupt):
            return 128 + signal.SIGINT
        signum = _termination_signal(exc)
        if signum is not None:
            return 128 + signum
        exc = exc.__cause__ or exc.__context__
    return None


def _main_thread_interrupted() -> bool:
    """Whether the main thread is handling Ctrl+C or SIGTERM (signals are raised there and nowhere else)."""
    current = getattr(sys, "_current_exceptions", None)  # CPython's; without it, other signs of a stop serve
    if current is None:
        return False
    got = current().get(threading.main_thread().ident)
    return interrupt_exit_code(got[1] if isinstance(got, tuple) else got) is not None  # a tuple before 3.12


class QuietWhileStopping(logging.Filter):
    """Lets no record through once this process is being stopped by Ctrl+C or SIGTERM.

    What Prefect logs then is about the stop itself: "Crash detected! Execution was aborted by a termination
    signal", task runs finished in state Crashed, its event and log workers failing to reach a server that went
    with the signal; each at ERROR and some also queued for the server. The command says it in one line of its
    own (:data:`INTERRUPTED_MESSAGE`). Inside a flow run Prefect's own SIGTERM handler runs instead of this
    module's, so the stop is also recognised by the main thread handling an interrupt (any thread may log), or by
    the record being logged while one is handled. Before a stop every record passes: errors stay visible.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False once stopping (the record is dropped); True otherwise."""
        if not _stop.is_set():
            logged = record.exc_info[1] if record.exc_info else None
            if (
                interrupt_exit_code(sys.exc_info()[1]) is None
                and interrupt_exit_code(logged) is None
                and not _main_thread_interrupted()
            ):
                return True
            _begin_stop()
        return False


_QUIET = QuietWhileStopping()


def quiet_logs_while_stopping() -> None:
    """Attach :class:`QuietWhileStopping` to every logging handler configured so far (Prefect's console and API
    handlers: call after Prefect is imported, which configures them). Without ``--verbose`` only."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for handler in {h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers}:
        if _QUIET not in handler.filters:
            handler.addFilter(_QUIET)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qpm-screen`` console script (``argv`` None: the command line).

    Ctrl+C and SIGTERM (``kill``, ``timeout``, a service manager) stop any command the same way, at any stage:
    the interrupted message, exit code 130 or 143, and only finished outputs kept (every output is written
    atomically). What Prefect and its embedded server would print about the stop is kept off the terminal: see
    :class:`QuietWhileStopping` and :func:`pipeline.prefect_home.detach_embedded_server`. As the console script,
    a signal arriving once the command has finished, while the process shuts down, is ignored; called with
    ``argv`` (from Python), the signal handlers it found are put back.
    """
    limit_malloc_arenas()
    _reset_stop()
    # Without these a SIGTERM ended the process mid-flow and Prefect's log handler printed tracebacks about its
    # vanished server; as an interrupt, the flows stop cleanly and only finished outputs remain.
    previous = _install_signal_handlers()
    try:
        return _run(argv)
    finally:
        if argv is None:
            _exiting.set()
        else:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "indicators" and args.action == "import" and not (args.file or args.target):
        parser.error("indicators import needs a spreadsheet: qpm-screen indicators import FILE.csv|FILE.xlsx")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"qpm-screen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException as exc:
        code = interrupt_exit_code(exc)
        if code is None:
            raise
        _begin_stop()
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
