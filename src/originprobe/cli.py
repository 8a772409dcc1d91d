"""The `originprobe` command line: parse, call one library function, print what it returns.

Exit status: 0 on success (skipped files are listed and summarised), 1 when `--strict` is given
and some file was skipped or flagged, 2 on a usage or input error (any `OriginprobeError`, or an
`OSError` with its path), with one line that names the file and the reason. Defaults shown by
`--help` are the library's (`RunConfig`, `model.DEFAULTS`); options left unset take them there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from ._version import __version__
from .errors import ConfigError, OriginprobeError

EXIT_SKIPPED, EXIT_ERROR = 1, 2


class _Formatter(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in h \
                and action.option_strings:
            h += f" (default: {action.default})"
        return h


def _whole(lowest: int):
    def parse(s: str) -> int:
        if not s.lstrip("-").isdigit() or int(s) < lowest:
            raise argparse.ArgumentTypeError(f"{s!r}: give a whole number ≥ {lowest}")
        return int(s)
    return parse


def _opts(p, *specs) -> None:
    """Add options given as (flags, kwargs) pairs; a str flag stands for itself."""
    for flags, kw in specs:
        p.add_argument(*([flags] if isinstance(flags, str) else flags), **kw)


def _group(*specs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    _opts(p, *specs)
    return p


POS, NONNEG = _whole(1), _whole(0)
MAX_PIXELS = ("--max-pixels", dict(type=POS, help="refuse larger images (default 100000000, or "
                                                  "ORIGINPROBE_MAX_PIXELS)"))
QUIET = (("--quiet", "--no-progress"), dict(action="store_true", help="no progress bars"))
STRICT = ("--strict", dict(action="store_true", help="exit 1 if any file was skipped or "
                                                     "flagged as damaged"))
DRY_RUN = ("--dry-run", dict(action="store_true", help="resolve the data or protocol, print "
                             "samples per class and role and missing files; extract nothing"))
EVIDENCE = [("--c2pa-trust", dict(metavar="FILE", help="PEM bundle of C2PA trust anchors")),
            ("--no-evidence", dict(dest="provenance", action="store_false", help="do not read "
                                   "the files' provenance metadata (C2PA, PNG text, EXIF, XMP)"))]
MODEL_DIR = ("model", dict(help="model directory written by `fit`"))
RUN_OUT = ("--out", dict(help="run directory (required unless --dry-run)"))


def _runtime(a) -> dict:
    return {k: getattr(a, k) for k in ("device", "batch_size", "workers", "weights", "provenance",
                                       "c2pa_trust") if getattr(a, k, None) is not None} | \
        {"runtime": a.runtime or "auto", "progress": not a.quiet and not getattr(a, "json", 0)}


def _config(a):
    from .pipeline import RunConfig
    if not getattr(a, "out", 1) and not a.dry_run:
        raise ConfigError("--out is required")
    return RunConfig.from_options(vars(a), need_known=a.command != "extract")


def _finish(n_bad: int, strict: bool, where: str | None = None) -> int:
    if n_bad:
        print(f"skipped {n_bad} file(s)" + (f"; see {where}" if where else ""), file=sys.stderr)
    return EXIT_SKIPPED if strict and n_bad else 0


# ---------------------------------------------------------------- commands
def cmd_evaluate(a) -> int:
    from .pipeline import evaluate
    from .report.console import run_text
    res = evaluate(_config(a), a.out, report=not a.no_report)
    print(run_text(res, a.out))
    return _finish(res["errors"] + res.get("warnings", 0), a.strict, f"{a.out}/errors.csv")


def cmd_compare(a) -> int:
    from .pipeline.compare import compare, compare_markdown
    res = compare(_config(a), None if a.heads == "all" else a.heads.split(","), a.out)
    print(compare_markdown(res) + f"\nwrote {a.out}/: {', '.join(res['written'])}")
    return _finish(res["errors"], a.strict, f"{a.out}/errors.csv")


def cmd_fit(a) -> int:
    from .pipeline import fit
    from .report.console import fit_text
    att = fit(_config(a), a.out)
    print(fit_text(att, a.out))
    return _finish(len(att.problems_), a.strict)


def cmd_extract(a) -> int:
    from .pipeline.prepare import extract_only
    from .report import write_errors_csv
    backbone, store, report, problems = extract_only(_config(a))
    print(f"{backbone.name} → {store.dir}\n{report.summary()}")
    if a.errors:
        write_errors_csv(a.errors, problems)
    for pr in problems[:20]:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    return _finish(len(problems), a.strict, a.errors)


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
    from .pipeline.predict import predict_paths
    from .report.console import predict_output
    run = predict_paths(a.model, a.paths, out=a.out, report=a.report, overwrite=a.overwrite,
                        threshold=a.threshold, top_k=a.top_k, **_runtime(a))
    out, err = predict_output(run, str(a.model), a.json, to_file=bool(a.out))
    if out:
        print(out)
    print(err, file=sys.stderr)
    if not run.ok:
        return EXIT_ERROR
    return EXIT_SKIPPED if a.strict and (len(run.ok) < len(run.records) or run.flagged) else 0


def cmd_enroll(a) -> int:
    from .pipeline.predict import enroll_paths
    att, n, skipped = enroll_paths(a.model, a.label, a.paths, **_runtime(a))
    print(f"enrolled {a.label!r} from {n} image(s) into {a.model}; classes: "
          f"{', '.join(att.classes_)}; threshold {att.threshold_:.4g}")
    for pr in skipped:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    return EXIT_SKIPPED if a.strict and skipped else 0


def cmd_serve(a) -> int:
    from .serve.app import TOKEN_ENV, serve
    serve(a.model, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb,
          max_batch=a.max_batch, max_wait_ms=a.max_wait_ms,
          token=os.environ.get(TOKEN_ENV) or None, **_runtime(a))
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
    if a.cache_command == "ls":
        rows = cache_admin.list_cache(a.dir)
        print(json.dumps([r.__dict__ for r in rows], indent=2) if a.json
              else console.format_cache_table(rows))
        return 0
    if a.cache_command == "prune":
        removed = cache_admin.prune_cache(a.dir, older_than_days=a.older_than,
                                          backbone=a.backbone, dry_run=a.dry_run)
        print(console.cache_prune_text(removed, a.dry_run))
        return 0
    reports = cache_admin.verify_cache(a.dir, repair=a.repair)
    print(console.cache_verify_text(reports, a.repair))
    return 1 if any(not rep.ok for _, rep in reports) else 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="originprobe", formatter_class=_Formatter,
                                 description="Open-set synthetic image origin attribution.")
    ap.add_argument("--version", action="version", version=f"originprobe {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    from .pipeline.config import flush_option, options
    rt = _group(*options("runtime"), MAX_PIXELS)
    data, test, model, out, ev = (_group(*options("data"), DRY_RUN), _group(*options("test")),
                                  _group(*options("model")), _group(QUIET, STRICT),
                                  _group(*EVIDENCE))
    bb = _group(*options("backbone"), *options("runtime"), MAX_PIXELS, flush_option())

    def cmd(name, func, help, parents=(), *specs):
        p = sub.add_parser(name, parents=list(parents), formatter_class=_Formatter, help=help)
        _opts(p, *specs)
        p.set_defaults(func=func)
        return p

    cmd("evaluate", cmd_evaluate, "train, select on validation, test open-set; write a run",
        (data, test, bb, model, out), RUN_OUT, *options("studies"),
        ("--config", dict(metavar="RUN/config.json", help="replay an earlier run's "
                          "configuration (with a new --out)")),
        ("--no-report", dict(action="store_true", help="skip report.html")))
    cmd("fit", cmd_fit, "train on known classes and save a model bundle",
        (data, bb, model, out), ("--out", dict(help="model directory (required unless "
                                                    "--dry-run)")))
    cmd("compare", cmd_compare, "every head × supported score on the same splits",
        (data, test, bb, model, out), RUN_OUT,
        ("--heads", dict(default="all", help='comma-separated heads, or "all"')))
    cmd("extract", cmd_extract, "extract and cache features of a dataset or protocol",
        (data, test, bb, out), ("dataset", dict(nargs="?", help="same as --data")),
        ("--errors", dict(help="write skipped files to this CSV")))
    cmd("predict", cmd_predict, "attribute images with a saved model", (out, ev, rt), MODEL_DIR,
        ("paths", dict(nargs="+", help="image files or folders (recursive)")),
        ("--json", dict(action="store_true", help="machine-readable output on stdout")),
        ("--out", dict(help="write the attributions to FILE.csv or FILE.jsonl")),
        ("--report", dict(metavar="FILE.html", help="an analyst's offline page: thumbnails, "
                          "verdicts, scores and provenance evidence, with filters")),
        ("--overwrite", dict(action="store_true", help="replace existing --out/--report files")),
        ("--threshold", dict(type=float, help="reject threshold (default: the model's)")),
        ("--top-k", dict(type=POS, help="classes shown per image (default: 3)")),
        ("--weights", dict(help="backbone weights, if not found automatically")))
    cmd("serve", cmd_serve, "answer attributions over HTTP, with a web page for analysts",
        (out, ev, rt), MODEL_DIR,
        ("--host", dict(default="127.0.0.1", help="interface; any but loopback needs "
                        "ORIGINPROBE_API_TOKEN")),
        ("--port", dict(type=NONNEG, default=8000, help="TCP port (0: any free one)")),
        ("--max-upload-mb", dict(type=float, default=20.0, help="larger uploads get 413")),
        ("--max-batch", dict(type=POS, default=32, help="images of concurrent requests per "
                                                        "forward pass")),
        ("--max-wait-ms", dict(type=float, default=10.0, help="how long a request waits for "
                                                              "others to share its batch")),
        ("--weights", dict(help="backbone weights, if not found automatically")))
    cmd("enroll", cmd_enroll, "add a new generator to a saved model from a few images",
        (out, rt), ("model", {}), ("--label", dict(required=True, help="the new class")),
        ("paths", dict(nargs="+", help="image files or folders of the new generator")),
        ("--weights", {}))
    cmd("report", cmd_report, "(re)build RUN_DIR/report.html", (), ("run_dir", {}))
    cmd("protocols", cmd_protocols, "list the benchmark protocols shipped with originprobe", (),
        ("--json", dict(action="store_true", help="full specs: classes and annotation files")))
    cmd("backbones", cmd_backbones, "list backbones, their layers and weights availability", (),
        ("--json", dict(action="store_true")))
    cache = sub.add_parser("cache", help="feature cache maintenance")
    csub = cache.add_subparsers(dest="cache_command", required=True)
    for name, help, specs in (
            ("verify", "check every shard against its checksum", [("--repair", dict(
                action="store_true", help="move damaged shards aside to be recomputed"))]),
            ("ls", "backbones, layers, images and size of each namespace",
             [("--json", dict(action="store_true"))]),
            ("prune", "remove cached namespaces by age or backbone", [
                ("--older-than", dict(type=float, metavar="DAYS", help="not used for DAYS")),
                ("--backbone", dict(help="namespaces of this backbone")),
                ("--dry-run", dict(action="store_true", help="list, remove nothing"))])):
        p = csub.add_parser(name, formatter_class=_Formatter, help=help)
        _opts(p, ("dir", {}), *specs)
        p.set_defaults(func=cmd_cache)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if getattr(a, "dataset", None):
        if a.data:
            ap.error("give the dataset once: as DATA or as --data")
        a.data = a.dataset
    from .data import max_pixels, set_max_pixels
    old_show, old_limit = warnings.showwarning, max_pixels()
    warnings.showwarning = lambda m, *_, **__: print(f"originprobe: warning: {m}", file=sys.stderr)
    try:
        set_max_pixels(getattr(a, "max_pixels", None) or old_limit)
        return cmd_dry_run(a) if getattr(a, "dry_run", False) and a.command != "cache" \
            else a.func(a)
    except BrokenPipeError:  # output piped into `head` etc.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OriginprobeError, OSError) as exc:   # OSError: the operating system's, with its path
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
