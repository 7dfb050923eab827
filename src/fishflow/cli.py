"""The `fishflow` command. Subcommands register themselves in `main`'s parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fishflow.cluster import controller, status
from fishflow.errors import FishflowError
from fishflow.formats import lhotse_export
from fishflow.review import server as browse
from fishflow.status import render
from fishflow.status.collect import collect


def _compare(args: argparse.Namespace) -> None:
    # Here, not at the top: the report package loads matplotlib (2 s), which `fishflow status`
    # must not wait for.
    from fishflow.report import compare

    print(compare.run(args.a, args.b))


def _required(value: str | None, flag: str, variable: str) -> str:
    if not value:
        raise FishflowError(f"fishflow submit: give {flag} or set {variable} in the environment")
    return value


def _submit(args: argparse.Namespace) -> int:
    settings = controller.JobSettings(
        account=_required(args.account, "--account", "FISHFLOW_SLURM_ACCOUNT"),
        partition=_required(args.partition, "--partition", "FISHFLOW_SLURM_PARTITION"),
        time_min=args.time,
        cpus=args.cpus,
        mem_mb=args.mem_mb,
        stop_s=args.stop_s,
        max_requeues=args.max_requeues,
    )
    cwd = Path.cwd()
    configfiles = [path.resolve() for path in args.configfile]
    out = (cwd / status.merged_config(list(map(str, configfiles)))["output_dir"]).resolve()
    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    command = controller.snakemake_command(out, args.profile.resolve(), configfiles, extra)
    job = controller.submit(out, command, cwd, settings)
    print(f"fishflow: controller submitted as Slurm job {job}; `fishflow status {out}`")
    if not args.wait:
        return 0
    final = controller.wait(out)
    print(f"fishflow: controller {final['status']}: {final['reason']}")
    return 0 if final["status"] == "completed" else 1


def _status(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(collect(args.out), indent=1))
    elif args.watch:
        render.watch(args.out, args.interval)
    else:
        print(render.text(collect(args.out)))
    return 0


def _browse(args: argparse.Namespace) -> int:
    browse.serve(args.out, args.port, open_browser=not args.no_open)
    return 0


def _add_status(commands) -> None:
    sub = commands.add_parser(
        "status",
        help="how far a run is: items, rate, estimated end, jobs and errors (any run)",
        description="Progress of a run however it was started (snakemake, locally or on Slurm, "
        "or fishflow submit), from its files and Slurm: it takes no lock and writes nothing.",
    )
    sub.add_argument("out", type=Path, help="the run's output_dir")
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="redraw in place until Ctrl-C")
    mode.add_argument("--json", action="store_true", help="one JSON object (fishflow-status/1)")
    sub.add_argument(
        "--interval", type=float, default=5.0, help="seconds between redraws (default 5)"
    )
    sub.set_defaults(handler=_status)


def _cancel(args: argparse.Namespace) -> int:
    cancelled = controller.cancel(args.out)
    print(f"fishflow: cancelled Slurm jobs {', '.join(cancelled) or '(none queued)'}")
    return 0


def _export_lhotse(args: argparse.Namespace) -> int:
    written = lhotse_export.export(args.out, args.to, args.lang, args.cuts, args.relative)
    for path in written:
        print(path)
    return 0


def _add_export(commands) -> None:
    sub = commands.add_parser("export", help="the spoken items in another format")
    formats = sub.add_subparsers(dest="format", required=True)
    lhotse = formats.add_parser(
        "lhotse",
        help="Lhotse recordings and supervisions (and cuts), .jsonl.gz",
        description=lhotse_export.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lhotse.add_argument("out", type=Path, help="the run's output_dir")
    lhotse.add_argument(
        "--lang", action="append", help="only this language (repeatable; default: all)"
    )
    lhotse.add_argument("--to", type=Path, help="where to write them (default: <out>/lhotse)")
    lhotse.add_argument("--cuts", action="store_true", help="also write a CutSet per language")
    lhotse.add_argument(
        "--relative",
        action="store_true",
        help="audio paths relative to <out> (the folder can move; load with "
        "with_path_prefix(<out>)) instead of absolute",
    )
    lhotse.set_defaults(handler=_export_lhotse)


def _add_submit(commands) -> None:
    sub = commands.add_parser(
        "submit",
        help="run the Snakemake controller as a Slurm job, requeued until the work is done",
        description="Submit `snakemake --profile PROFILE --configfile ... [SNAKEMAKE_ARGS]` as "
        "a CPU-only Slurm job that is requeued near its time limit and resumes from the files.",
    )
    env = os.environ.get
    sub.add_argument("--configfile", type=Path, nargs="+", default=[Path("config/config.yaml")])
    sub.add_argument("--profile", type=Path, default=Path("profiles/slurm"))
    sub.add_argument("--account", default=env("FISHFLOW_SLURM_ACCOUNT"), help="controller job")
    sub.add_argument(
        "--partition",
        default=env("FISHFLOW_CONTROLLER_PARTITION") or env("FISHFLOW_SLURM_PARTITION"),
        help="a CPU partition for the controller job ($FISHFLOW_CONTROLLER_PARTITION, else "
        "$FISHFLOW_SLURM_PARTITION)",
    )
    defaults = controller.JobSettings(account="", partition="")
    for flag, default, meaning in (
        ("--time", defaults.time_min, "the controller job's time limit, minutes"),
        ("--cpus", defaults.cpus, "the controller job's CPUs"),
        ("--mem-mb", defaults.mem_mb, "the controller job's memory, MB"),
        ("--stop-s", defaults.stop_s, "stop Snakemake this long before the time limit, s"),
        ("--max-requeues", defaults.max_requeues, "requeues at the time limit, at most"),
    ):
        sub.add_argument(flag, type=int, default=default, help=f"{meaning} (default {default})")
    sub.add_argument("--wait", action="store_true", help="wait for the controller to finish")
    sub.add_argument(
        "snakemake_args", nargs=argparse.REMAINDER, help="after `--`: more snakemake arguments"
    )
    sub.set_defaults(handler=_submit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fishflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser(
        "compare", help="compare two benchmark reports (report.json): the main figures, B/A"
    )
    sub.add_argument("a", type=Path, help="report.json of run A (the baseline)")
    sub.add_argument("b", type=Path, help="report.json of run B")
    sub.set_defaults(handler=_compare)
    _add_submit(commands)
    _add_export(commands)
    _add_status(commands)
    sub = commands.add_parser(
        "cancel", help="cancel the controller and its generation jobs (finished work stays)"
    )
    sub.add_argument("out", type=Path, help="the run's output_dir")
    sub.set_defaults(handler=_cancel)
    sub = commands.add_parser(
        "browse",
        help="a local web page to listen to the items, filter them and mark bad ones",
        description="Serve a page on 127.0.0.1 (with a random token in its URL) to listen to "
        "a run's items, filter them, see failures and figures, and mark takes as bad; the next "
        "run speaks marked items again with their next seed (marks: <out>/review/marks.jsonl).",
    )
    sub.add_argument("out", type=Path, help="the run's output_dir")
    sub.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    sub.add_argument("--no-open", action="store_true", help="do not open a web browser")
    sub.set_defaults(handler=_browse)
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except FishflowError as exc:
        print(f"fishflow {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
