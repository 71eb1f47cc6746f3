"""Commands run from our image, each parsed by its own program's parser."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import shlex
import warnings

from deploy.checks.app import App, Report


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_celery(args: list[str], app: App) -> list[str]:
    import click
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery
    from celery.utils.imports import symbol_by_name
    from celery.worker.control import Panel

    try:
        group = celery.make_context("celery", list(args))
        name = group.params.get("app")
        if not name:
            return ["no -A/--app: celery would not load the project's app"]
        try:
            group.obj = CLIContext(app=find_app(name), no_color=True, workdir=None, quiet=True)
        except (ImportError, AttributeError) as exc:
            return [f"-A {name}: not a Celery app ({exc})"]
        # celery pins click<9, where protected_args holds the subcommand's name.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*group.protected_args, *group.args]
        if not rest:
            return ["no celery subcommand"]
        sub, command, sub_args = celery.resolve_command(group, rest)
        assert sub is not None and command is not None
        params = command.make_context(sub, sub_args, parent=group).params
    except click.ClickException as exc:
        return [f"celery {' '.join(args)}: {exc.format_message().splitlines()[0]}"]
    errors = [
        f"celery worker -Q {queue}: not a queue of workers/config.py "
        f"({', '.join(sorted(app.queues))})"
        for queue in params.get("queues") or []
        if sub == "worker" and queue not in app.queues
    ]
    if params.get("scheduler"):
        try:
            symbol_by_name(params["scheduler"])
        except (ImportError, AttributeError):
            errors.append(f"celery {sub} -S {params['scheduler']}: not importable")
    if sub in ("inspect", "control"):
        meta = Panel.meta.get(params.get("command") or "")
        if meta is None or meta.type != sub:
            errors.append(f"celery {sub}: unknown action {params.get('command')!r}")
    if sub == "flower":
        # Flower hands its arguments to tornado's option parser.
        from flower.options import options as flower_options

        for arg in params.get("tornado_argv") or ():
            name = arg.removeprefix("--").partition("=")[0]
            if arg.startswith("--") and name not in flower_options:
                errors.append(f"celery flower: unknown option --{name}")
    return errors


def check_cxsweep(args: list[str]) -> list[str]:
    from console.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exc:
        if exc.code:
            message = stderr.getvalue().strip().splitlines()
            return [f"cxsweep {' '.join(args)}: {message[-1] if message else 'rejected'}"]
    return []


def check_python(args: list[str]) -> list[str]:
    if args[:1] == ["-m"] and len(args) > 1:
        return [] if _importable(args[1]) else [f"python -m {args[1]}: no such module"]
    if args[:1] != ["-c"] or len(args) < 2:
        return []
    try:
        tree = ast.parse(args[1])
    except SyntaxError as exc:
        return [f"python -c: syntax error: {exc.msg}"]
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    return [f"python -c: imports {m}, not importable" for m in imported if not _importable(m)]


def check_command(argv: list[str] | str, app: App) -> list[str]:
    """Errors of one command as the image would run it (empty when it is fine)."""
    argv = shlex.split(argv) if isinstance(argv, str) else [str(a) for a in argv]
    if argv[:1] == ["NONE"]:
        return []
    if argv[:1] == ["CMD-SHELL"]:
        return check_shell(" ".join(argv[1:]), app)
    argv = argv[1:] if argv[:1] == ["CMD"] else argv
    if not argv:
        return ["empty command"]
    program, args = argv[0], argv[1:]
    if program in ("sh", "bash") and args[:1] == ["-c"] and len(args) > 1:
        return check_shell(args[1], app)
    if program not in app.executables:
        return [f"{program}: not installed in the image"]
    if program == "celery":
        return check_celery(args, app)
    if program == "cxsweep":
        return check_cxsweep(args)
    return check_python(args) if program.startswith("python") else []


def check_shell(script: str, app: App) -> list[str]:
    """Each simple command of a `sh -c` script (split at ; && || | and redirections)."""
    errors: list[str] = []
    command: list[str] = []
    for token in [*shlex.split(script), ";"]:
        if token in {"&&", "||", ";", "|", "<", "2>&1"} or token.startswith(">"):
            errors += check_command(command, app) if command else []
            command = []
        elif command or not re.fullmatch(r"[A-Za-z_]\w*=.*", token):
            command.append(token)
    return errors


def queues_of(argv: list[str]) -> list[str]:
    queues: list[str] = []
    for index, arg in enumerate(argv):
        if arg in ("-Q", "--queues") and index + 1 < len(argv):
            queues += argv[index + 1].split(",")
        elif arg.startswith("--queues="):
            queues += arg.split("=", 1)[1].split(",")
    return [q for q in queues if q]


def check_run(where: str, argv: list[str], app: App, report: Report) -> None:
    errors = check_command(argv, app)
    shown = " ".join(argv)
    report.check(
        not errors, f"{where}: `{shown}` runs in the image", f"{where}: " + "; ".join(errors)
    )
