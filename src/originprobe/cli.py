"""The `originprobe` command line: parse, call one library function, print what it returns.

Exit status: 0 on success (skipped files are listed and summarised), 1 when `--strict` is given
and some file was skipped or flagged, 2 on a usage or input error (any `OriginprobeError`, or an
`OSError` with its path), with one line that names the file and the reason. Options that
configure a run come from `RunConfig`'s fields (their help, default and rules live there); the
rest are declared below, one per line: `FLAGS[:TYPE][=DEFAULT] help`, where TYPE is pos (whole
number ≥ 1), nat (≥ 0), float, `!` (a switch), `?` or `+` (positional arity).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ._version import __version__
from .errors import ConfigError, OriginprobeError
from .options import HelpFormatter, add_table, parse_commands

EXIT_SKIPPED, EXIT_ERROR = 1, 2

COMMON = """
--quiet|--no-progress!  no progress bars
--strict!  exit 1 if any file was skipped or flagged as damaged
"""
RUNTIME = """
--max-pixels:pos  refuse larger images (default: 100000000, or ORIGINPROBE_MAX_PIXELS)
"""
DRY_RUN = """
--dry-run!  resolve the data or protocol, print samples per class and role; extract nothing
"""
EVIDENCE = """
--c2pa-trust  PEM bundle of C2PA trust anchors: says whether each signer is on it
--no-evidence!provenance  do not read the files' provenance metadata (C2PA, PNG text, EXIF, XMP)
--weights  backbone weights, if not found automatically
"""
COMMANDS = """
[evaluate] data test bb model studies | choose by cross-validation on known data, test open-set; write a run
--out  run directory (required unless --dry-run)
--config  replay an earlier run's configuration (RUN/config.json) with a new --out
--no-report!  skip report.html
[fit] data bb model | train on known classes and save a model bundle
--out  model directory (required unless --dry-run)
[compare] data test bb model | every head × supported score on the same splits
--out  run directory (required unless --dry-run)
--heads=all  comma-separated heads, or "all"
[extract] data test bb | extract and cache features of a dataset or protocol
dataset?  same as --data
--errors  write skipped files to this CSV
[predict] runtime evidence predict | attribute images with a saved model
model  model directory written by `fit`, or hf://ORG/NAME[@REVISION]
paths+  image files or folders (recursive)
--json!  machine-readable output on stdout
[serve] runtime evidence serve | answer attributions over HTTP, with a web page for analysts
model  model directory written by `fit`, or hf://ORG/NAME[@REVISION]
[discover] runtime evidence | group the images a model rejects into candidate new generators
model  model directory written by `fit`, or hf://ORG/NAME[@REVISION]
paths+  image files or folders (recursive)
--out  folder for clusters.json, clusters.csv and clusters.html (required)
--min-cluster-size:pos=8  fewest images a cluster holds (HDBSCAN); fewer are left as noise
--seed:nat=0  seeds the sample clustered above 20,000 rejected images
[enroll] runtime | add a new generator to a saved model from a few images
model  model directory written by `fit`, or hf://ORG/NAME[@REVISION]
--label|--name  name of the new class (required)
paths*  image files or folders of the new generator
--from  clusters.json (or its folder) written by `discover`: enrol the files of --cluster
--cluster:nat  the cluster of --from to enrol
--out  write the enlarged model here (default: in place; required for an hf:// model)
--weights  backbone weights, if not found automatically
[push] | upload a model bundle to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`)
model  model directory written by `fit`
repo_id  Hub repository ORG/NAME (created when missing)
--private!  create the repository private
--revision  branch to push to (created from main when missing; default: main)
[report] | (re)build RUN_DIR/report.html
run_dir  a run directory
[protocols] | list the benchmark protocols shipped with originprobe
--json!  full specs: classes and annotation files
[backbones] | list backbones, their layers and weights availability
--json!  JSON
[cache verify] | check every shard of a feature cache against its checksum
dir  feature cache directory
--repair!  move damaged shards aside so that they are recomputed
[cache ls] | backbones, layers, images and size of each namespace
dir  feature cache directory
--json!  JSON
[cache prune] | remove cached namespaces by age or backbone
dir  feature cache directory
--older-than:float  namespaces not written or read for this many days
--backbone  namespaces of this backbone
--dry-run!  list, remove nothing
"""


def _runtime(a) -> dict:
    keys = ("device", "batch_size", "workers", "weights", "provenance", "c2pa_trust", "backend")
    quiet = a.quiet or getattr(a, "json", False)
    return {k: getattr(a, k) for k in keys if getattr(a, k, None) is not None} | {
        "progress": not quiet
    }


def _config(a):
    from .pipeline import RunConfig

    if not getattr(a, "out", 1) and not a.dry_run:
        raise ConfigError("--out is required")
    return RunConfig.from_options(vars(a), need_known=a.command != "extract")


def _done(n_bad: int, strict: bool, where: str | None = None) -> int:
    if n_bad:
        print(f"skipped {n_bad} file(s)" + (f"; see {where}" if where else ""), file=sys.stderr)
    return EXIT_SKIPPED if strict and n_bad else 0


# ---------------------------------------------------------------- commands
def cmd_evaluate(a) -> int:
    from .pipeline import evaluate
    from .report.console import run_text

    res = evaluate(_config(a), a.out, report=not a.no_report)
    print(run_text(res, a.out))
    return _done(res["errors"] + res.get("warnings", 0), a.strict, f"{a.out}/errors.csv")


def cmd_compare(a) -> int:
    from .pipeline.compare import compare, compare_markdown

    res = compare(_config(a), None if a.heads == "all" else a.heads.split(","), a.out)
    print(compare_markdown(res) + f"\nwrote {a.out}/: {', '.join(res['written'])}")
    return _done(res["errors"], a.strict, f"{a.out}/errors.csv")


def cmd_fit(a) -> int:
    from .pipeline import fit
    from .report.console import fit_text

    att = fit(_config(a), a.out)
    print(fit_text(att, a.out))
    return _done(len(att.problems_), a.strict)


def cmd_extract(a) -> int:
    from .pipeline.prepare import extract_only
    from .report.console import extract_text

    backbone, store, report, problems = extract_only(_config(a), errors_csv=a.errors)
    out, err = extract_text(backbone, store, report, problems)
    print(out)
    print(err, file=sys.stderr, end="")
    return _done(len(problems), a.strict, a.errors)


def cmd_dry_run(a) -> int:
    from .pipeline import dry_run
    from .report.results import format_dry_run

    cfg = _config(a)
    dr = dry_run(cfg)
    print(format_dry_run(dr))
    if dr.n_bad:
        print(f"{dr.n_bad} file(s) or line(s) would be skipped", file=sys.stderr)
    return EXIT_SKIPPED if cfg.strict and dr.n_bad else 0


def cmd_predict(a) -> int:
    from .pipeline.predict import PredictOutputs, predict_paths
    from .report.console import predict_output

    outputs = {k: getattr(a, k) for k in PredictOutputs.__dataclass_fields__}
    run = predict_paths(a.model, a.paths, **outputs, **_runtime(a))
    out, err = predict_output(run, str(a.model), a.json, to_file=bool(a.out))
    print(*([out] if out else []), sep="")
    print(err, file=sys.stderr)
    if not run.ok:
        return EXIT_ERROR
    return EXIT_SKIPPED if a.strict and (len(run.ok) < len(run.records) or run.flagged) else 0


def cmd_discover(a) -> int:
    from .pipeline.discover import discover_paths
    from .report.console import discover_text

    if not a.out:
        raise ConfigError("--out is required: the folder for the clusters")
    found, skipped, written = discover_paths(a.model, a.paths, a.out, seed=a.seed,
                                             min_cluster_size=a.min_cluster_size, **_runtime(a))  # fmt: skip
    out, err = discover_text(found, a.out, written, skipped)
    print(out)
    print(err, file=sys.stderr, end="")
    return EXIT_SKIPPED if a.strict and skipped else 0


def cmd_enroll(a) -> int:
    from .pipeline.discover import cluster_paths
    from .pipeline.predict import enroll_paths
    from .report.console import enroll_text

    paths = list(a.paths or [])
    if getattr(a, "from") is not None:
        paths = cluster_paths(getattr(a, "from"), a.cluster) + paths
    elif a.cluster is not None:
        raise ConfigError("--cluster needs --from: the clusters.json written by `discover`")
    if not paths:
        raise ConfigError("give the new generator's images: PATHS, or --from FILE --cluster K")
    att, n, skipped = enroll_paths(a.model, a.label, paths, a.out, **_runtime(a))
    out, err = enroll_text(att, a.label, n, a.out or a.model, skipped)
    print(out)
    print(err, file=sys.stderr, end="")
    return EXIT_SKIPPED if a.strict and skipped else 0


def cmd_push(a) -> int:
    from .model.hub import push_bundle
    from .report.console import push_text

    print(push_text(push_bundle(a.model, a.repo_id, bool(a.private), a.revision), a.model))
    return 0


def cmd_serve(a) -> int:
    from .serve.app import TOKEN_ENV, ServeSettings, serve

    opts = {k: getattr(a, k) for k in ServeSettings.__dataclass_fields__}
    serve(a.model, token=os.environ.get(TOKEN_ENV) or None, **opts, **_runtime(a))
    return 0


def cmd_report(a) -> int:
    from .report.html import build_report

    print(f"wrote {build_report(a.run_dir)}")
    return 0


def cmd_protocols(a) -> int:
    from .protocols import list_protocols
    from .report.console import protocols_text

    print(protocols_text(list_protocols(), a.json))
    return 0


def cmd_backbones(a) -> int:
    from .backbones.catalog import backbones_text

    print(backbones_text(a.json))
    return 0


def cmd_cache(a) -> int:
    from .features import cache_admin
    from .report import console

    if a.subcommand == "ls":
        print(console.cache_ls_text(cache_admin.list_cache(a.dir), a.json))
        return 0
    if a.subcommand == "prune":
        removed = cache_admin.prune_cache(a.dir, a.older_than, a.backbone, a.dry_run)
        print(console.cache_prune_text(removed, a.dry_run))
        return 0
    reports = cache_admin.verify_cache(a.dir, repair=a.repair)
    print(console.cache_verify_text(reports, a.repair))
    return 1 if any(not rep.ok for _, rep in reports) else 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .options import dataclass_options
    from .pipeline.config import flush_option, options
    from .pipeline.predict import PredictOutputs
    from .serve.app import ServeSettings

    ap = argparse.ArgumentParser(
        prog="originprobe",
        formatter_class=HelpFormatter,
        description="Open-set synthetic image origin attribution.",
    )
    ap.add_argument("--version", action="version", version=f"originprobe {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    subs = {"": sub}
    groups = {
        "data": (options("data"), DRY_RUN),
        "test": (options("test"), ""),
        "model": (options("model") + options("selection"), ""),
        "studies": (options("studies"), ""),
        "bb": (
            options("backbone")
            + options("training")
            + options("runtime")
            + options("engine")
            + [flush_option()],
            RUNTIME,
        ),
        "runtime": (options("runtime"), RUNTIME),
        "evidence": ([], EVIDENCE),
        "predict": (dataclass_options(PredictOutputs), ""),
        "serve": (dataclass_options(ServeSettings), ""),
    }
    for name, (help, parents, table) in parse_commands(COMMANDS).items():
        top, _, leaf = name.rpartition(" ")
        if top and top not in subs:
            subs[top] = sub.add_parser(top, help=f"{top} maintenance").add_subparsers(
                dest="subcommand", required=True
            )
        p = subs[top].add_parser(leaf, formatter_class=HelpFormatter, help=help)
        for fields, extra in (groups[g] for g in parents.split()):
            for flags, kw in fields:
                p.add_argument(flags, **kw)
            add_table(p, extra)
        add_table(p, table + (COMMON if parents else ""))
        p.set_defaults(func=globals()[f"cmd_{top or leaf}"])
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a, extra = ap.parse_known_args(argv)
    if extra and a.command == "enroll" and not any(x.startswith("-") for x in extra):
        a.paths = list(a.paths or []) + extra  # PATHS given after options (paths* is optional)
    elif extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(a, "dataset", None):
        if a.data:
            ap.error("give the dataset once: as DATA or as --data")
        a.data = a.dataset
    from .data import max_pixels, set_max_pixels

    old_show, old_limit = warnings.showwarning, max_pixels()
    warnings.showwarning = lambda m, *_, **__: print(f"originprobe: warning: {m}", file=sys.stderr)
    try:
        set_max_pixels(getattr(a, "max_pixels", None) or old_limit)
        dry = getattr(a, "dry_run", False) and a.command != "cache"
        return cmd_dry_run(a) if dry else a.func(a)
    except BrokenPipeError:  # output piped into `head` etc.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OriginprobeError, OSError) as exc:  # OSError: the operating system's, with its path
        print(f"originprobe {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; features committed so far are kept in the cache", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = old_show
        set_max_pixels(old_limit)


if __name__ == "__main__":
    sys.exit(main())
