"""The client subcommands of ``genserve``: generate, list, log in, all through the SDK.

    genserve login                       # asks for the base URL and the key, saves them (0600)
    genserve image "a fox" -n 2 -o out/  # a live progress bar, then the saved files' paths
    genserve video "waves" --resolution 360p --duration 2
    genserve 3d photo.png
    genserve projects --type images
    genserve models
    genserve account

The key comes from ``GENSERVE_API_KEY`` or the file ``genserve login`` wrote; there is no
flag for it (a flag would land in the shell's history and the process list). Failures
print ``genserve: <code>: <message> (request_id ...)`` on standard error, status 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genserve import vocabulary as vocab
from genserve.config import DEFAULT_BASE_URL, config_path, normalize_base_url

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers
    from genserve.client import Client, GenerationStream
    from genserve.results import GenerationResult

Handler = Callable[[argparse.Namespace], int]


def _say(message: str) -> None:
    print(f"genserve: {message}", file=sys.stderr)


def _client(args: argparse.Namespace, api_key: str | None = None) -> Client:
    from genserve.client import Client

    return Client(
        api_key=api_key,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.retries,
    )


def guarded(handler: Handler) -> Handler:
    """Runs a handler; an API, network or file error is one line on stderr, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from genserve.errors import AuthenticationError, GenserveError

        try:
            return handler(args)
        except AuthenticationError as err:
            _say(str(err))
            print(
                "genserve: set GENSERVE_API_KEY, or run `genserve login`",
                file=sys.stderr,
            )
            return 1
        except GenserveError as err:
            _say(str(err))
            return 1
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            _say(f"{where}{err.strerror or err}")
            return 1
        except ValueError as err:
            _say(str(err))
            return 1
        except KeyboardInterrupt:
            _say("interrupted (a generation still running was cancelled and refunded)")
            return 130

    return run


# ---------------------------------------------------------------- generation commands


def _follow(stream: GenerationStream[Any], label: str, show_progress: bool) -> GenerationResult:
    """Reads the stream, drawing its progress; the result."""
    from genserve.progress import make_display

    display = make_display(label) if show_progress else None
    try:
        for event in stream:
            if display is not None:
                display.update(event)
    finally:
        if display is not None:
            display.close()
        stream.close()
    return stream.until_done()


def _as_json(value: Any) -> Any:
    """A result, project, model or account as plain JSON values."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _as_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(value: Any, *, line: bool = False) -> None:
    from genserve._internal.cmdline import print_json

    print_json(_as_json(value), line=line)


def _save(result: GenerationResult, folder: Path) -> list[Path]:
    """The output files; a 3D model's rendered preview beside its GLB."""
    from genserve.results import ModelResult

    paths = result.save(folder)
    if isinstance(result, ModelResult):
        preview = result.model.preview()
        if preview is not None:
            paths.append(preview.save(folder))
    return paths


def _finish(result: GenerationResult, output: str, what: str, as_json: bool = False) -> int:
    folder = Path(output).expanduser()
    paths = _save(result, folder)
    if as_json:
        _print_json({**_as_json(result), "kind": result.kind, "saved": paths})
        return 0
    for path in paths:
        print(path)
    seconds = result.generation_time / 1000
    count = len(paths)
    noun = what if count == 1 else f"{what}s"
    seed = getattr(result, "seed", None)
    seeded = f"; seed {seed}" if seed is not None else ""
    if what == "model" and count == 2:
        noun = "model and its preview"
    print(
        f"genserve: {count} {noun} in {seconds:.1f} s; generation {result.generation_id}; "
        f"{result.remaining_points} points left{seeded}",
        file=sys.stderr,
    )
    return 0


def _image(client: Client, args: argparse.Namespace) -> GenerationStream[Any]:
    return client.images.generate(
        args.prompt,
        aspect_ratio=args.aspect_ratio,
        output_format=args.format,
        num_images=args.num_images,
        model=args.model,
        seed=args.seed,
        negative_prompt=args.negative,
        steps=args.steps,
        guidance_scale=args.guidance,
        width=args.size[0] if args.size else None,
        height=args.size[1] if args.size else None,
        image=_input(args.image) if args.image else None,
        mask=_input(args.mask) if args.mask else None,
        strength=args.strength,
        loras=args.lora,
        stream=True,
    )


def _input(source: str) -> str | Path:
    """An input image given on the command line: an ``http(s)`` URL, or a file that exists."""
    if source.startswith(("http://", "https://")):
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(
            f"{source}: no such file (give a PNG, JPEG or WebP file, or an http(s) URL)"
        )
    return path


def _video(client: Client, args: argparse.Namespace) -> GenerationStream[Any]:
    return client.videos.generate(
        args.prompt,
        model=args.model,
        duration=args.duration,
        resolution=args.resolution,
        aspect_ratio=args.aspect_ratio,
        seed=args.seed,
        negative_prompt=args.negative,
        image=_input(args.image) if args.image else None,
        stream=True,
    )


def _three_d(client: Client, args: argparse.Namespace) -> GenerationStream[Any]:
    source = _input(args.image)
    return client.three_d.generate(
        image_url=source if isinstance(source, str) else None,
        image_path=source if isinstance(source, Path) else None,
        texture_quality=args.texture_quality,
        texture_alignment=args.texture_alignment,
        orientation=args.orientation,
        model=args.model,
        stream=True,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    """``genserve <kind> ...``: the kind's generation, followed, then its files saved."""
    command = KIND_COMMANDS[args.kind]
    if getattr(args, "from_file", None):
        return _batch(args)
    if getattr(args, "prompt", "") is None:
        raise ValueError("give a prompt, or --from FILE (a prompt a line, or JSON lines)")
    with _client(args) as client:
        stream = command.start(client, args)
        result = _follow(stream, args.kind, args.progress)
        return _finish(result, args.output, command.noun, args.json)


def read_batch(path: str) -> list[dict[str, Any]]:
    """``--from FILE``: a prompt a line, or a JSON object a line (``prompt`` and parameters);
    blank lines and lines starting with ``#`` are skipped; ``-`` is standard input."""
    import json

    text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text()
    items: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise ValueError(f'{path}:{number}: a JSON line needs a "prompt" string')
            items.append(item)
        else:
            items.append({"prompt": line})
    if not items:
        raise ValueError(f"{path}: no prompts")
    return items


def _batch(args: argparse.Namespace) -> int:
    """Every line of ``--from FILE`` in turn, under one progress view for the batch;
    ``--json``: a JSON line per result on standard output, as each finishes."""
    from genserve.params import ImageParams
    from genserve.progress import make_batch_display

    items = read_batch(args.from_file)
    known = set(ImageParams.__annotations__)
    options = {
        "aspect_ratio": args.aspect_ratio,
        "output_format": args.format,
        "num_images": args.num_images,
        "model": args.model,
    }
    left: Any = "?"
    display = make_batch_display(len(items), "image") if args.progress else None
    try:
        with _client(args) as client:
            for number, item in enumerate(items, 1):
                body = {k: v for k, v in options.items() if v is not None} | item
                prompt = body.pop("prompt")
                params = {k: v for k, v in body.items() if k in known}
                extra = {k: v for k, v in body.items() if k not in known}
                if display is not None:
                    display.begin(number)
                stream = client.images.generate(
                    prompt, stream=True, extra_body=extra or None, **params
                )
                try:
                    for event in stream:
                        if display is not None:
                            display.update(event)
                finally:
                    stream.close()
                result = stream.until_done()
                paths = _save(result, Path(args.output).expanduser())
                left = result.remaining_points
                if display is not None:
                    display.done(number, [str(p) for p in paths])
                if args.json:
                    _print_json({"prompt": prompt, **_as_json(result), "saved": paths}, line=True)
                else:
                    for path in paths:
                        print(path, flush=True)
    finally:
        if display is not None:
            display.close()
    if not args.json:
        print(f"genserve: {len(items)} prompts done; {left} points left", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- listings


def _table(rows: Iterable[tuple[str, ...]], header: tuple[str, ...]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _short(text: str, width: int = 48) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_projects(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.all:
            projects = list(
                client.projects.iter(type=args.type, limit=100, order=args.order, q=args.q)
            )
            footer = f"{len(projects)} projects"
        else:
            page = client.projects.list(
                type=args.type, page=args.page, limit=args.limit, order=args.order, q=args.q
            )
            projects = page.projects
            p = page.pagination
            footer = f"page {p.page} of {max(p.pages, 1)} ({p.total} projects)"
            if p.has_more:
                footer += f"; next: --page {p.page + 1}"
    if args.json:
        _print_json(projects)
        return 0
    rows = [
        (p.id, p.type, p.created_at[:16].replace("T", " "), _short(p.model or "", 12))
        for p in projects
    ]
    used = max([len(r[3]) for r in rows] + [5]) + 24 + 5 + 16 + 4 * 2
    room = max(PROJECTS_WIDTH - used, 12)  # the prompt takes what is left of 100 columns
    table = [(*row, _short(p.prompt, room)) for row, p in zip(rows, projects, strict=True)]
    _table(table, ("id", "type", "created", "model", "prompt"))
    print(f"genserve: {footer} (--json for the URLs)", file=sys.stderr)
    return 0


PROJECTS_WIDTH = 100
"""``genserve projects`` fits this many columns (URLs with ``--json``)."""


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models.list()
    if args.json:
        _print_json(models)
        return 0
    rows = [
        (m.name, m.kind, "yes" if m.default else "", _price(m.price), _accepts(m.extra))
        for m in models
    ]
    _table(rows, ("name", "kind", "default", "price", "accepts"))
    return 0


def _price(price: dict[str, Any]) -> str:
    """``points_per_image: 4`` as ``4 points per image``; ``points_for_4s_720p`` likewise."""
    for key, value in price.items():
        if key.startswith("points") and isinstance(value, int | float):
            unit = key.removeprefix("points").strip("_").replace("_", " ")
            return f"{value:g} points {unit}".strip()
    return ""


def _accepts(extra: dict[str, Any]) -> str:
    """The values a model accepts, one ``name: a,b,c`` group each."""
    groups = []
    for key, value in extra.items():
        if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
            groups.append(f"{key}: {','.join(str(v) for v in value)}")
        elif isinstance(value, dict) and {"min", "max"} <= set(value):
            groups.append(f"{key}: {value['min']}-{value['max']}")
    return "; ".join(groups)


def cmd_account(args: argparse.Namespace) -> int:
    import time

    with _client(args) as client:
        account = client.account.get()
    if args.json:
        _print_json(account)
        return 0
    if account.email:
        print(f"email:    {account.email}")
    print(f"plan:     {account.plan}")
    print(f"points:   {account.points}")
    reset = time.strftime("%H:%M:%S", time.localtime(account.reset)) if account.reset else "?"
    print(f"requests: {account.remaining} of {account.limit} left this hour (resets {reset})")
    return 0


# ---------------------------------------------------------------- login, logout


def _ask(prompt: str) -> str:
    """A line from standard input; the prompt goes to stderr (stdout stays clean)."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise ValueError("no answer on standard input")
    return line.strip()


def cmd_login(args: argparse.Namespace) -> int:
    from genserve.config import resolve, save_config
    from genserve.errors import APIConnectionError

    default = resolve(None, None).base_url
    base = args.base_url or _ask(f"genserve base URL [{default}]: ") or default
    base = normalize_base_url(base)
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{base!r} is not an http(s) URL")
    if sys.stdin.isatty():
        key = getpass.getpass("API key (input hidden): ", stream=sys.stderr).strip()
    else:
        key = _ask("API key: ")
    if not key:
        raise ValueError("no API key given")
    if args.verify:
        from genserve.client import Client

        try:
            with Client(api_key=key, base_url=base, timeout=args.timeout) as client:
                account = client.account.get()
        except APIConnectionError as err:
            _say(f"{err} (use --no-verify to save it anyway)")
            return 1
        who = account.email or "this key's account"
        summary = f"{who}: {account.plan} plan, {account.points} points"
    else:
        summary = "not checked"
    path = save_config(base, key)
    print(f"genserve: saved {base} and its key to {path} ({summary})", file=sys.stderr)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from genserve.config import remove_config

    path = config_path()
    if remove_config(path):
        print(f"genserve: removed {path}", file=sys.stderr)
    else:
        print(f"genserve: no saved key ({path} does not exist)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- registration


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        help="the bridge (default: $GENSERVE_BASE_URL, else the one `genserve login` saved, "
        f"else {DEFAULT_BASE_URL}); the key comes from $GENSERVE_API_KEY or `genserve login`",
    )
    common.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per request (default: 600)"
    )
    common.add_argument(
        "--retries",
        type=int,
        default=2,
        help="retries after 429, 503 or a broken connection (default: 2)",
    )
    common.add_argument("--json", action="store_true", help="print JSON on standard output")
    return common


def _generation_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o", "--output", default=".", metavar="DIR", help="where to save the files (default: .)"
    )
    common.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar or lines on stderr",
    )
    return common


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="the prompt (or --from FILE)")
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="a batch: a prompt a line, or JSON lines with a prompt and parameters ('-': stdin)",
    )
    parser.add_argument("--aspect-ratio", choices=vocab.IMAGE_ASPECT_RATIOS, help="default 1:1")
    parser.add_argument(
        "-n", "--num-images", type=_positive, help=f"1 to {vocab.MAX_IMAGES} (default 1)"
    )
    parser.add_argument("--format", choices=vocab.OUTPUT_FORMATS, help="default png")
    parser.add_argument("--model", help="default: the server's (nano-banana)")
    parser.add_argument(
        "--seed", type=_seed, help=f"0 to {vocab.MAX_SEED}: the same seed, the same image"
    )
    parser.add_argument("--negative", metavar="TEXT", help="what the image should not show")
    parser.add_argument("--steps", type=_positive, help="denoising steps (the model's default)")
    parser.add_argument("--guidance", type=float, help="guidance scale (the model's default)")
    parser.add_argument(
        "--size", type=_size, metavar="WxH", help="exact size, e.g. 192x128, instead of a ratio"
    )
    parser.add_argument(
        "--image",
        metavar="PATH|URL",
        help="start from this image (image to image; inpainting with --mask; an edit model "
        "follows the prompt)",
    )
    parser.add_argument(
        "--mask", metavar="PATH|URL", help="with --image: white is repainted (inpainting)"
    )
    parser.add_argument(
        "--strength", type=_strength, help="with --image: how much is repainted, above 0 to 1"
    )
    parser.add_argument(
        "--lora",
        type=_lora,
        action="append",
        metavar="NAME[:SCALE]",
        help="apply an adapter the model offers (genserve models), at most 3; repeatable",
    )


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= vocab.MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and {vocab.MAX_SEED}")
    return value


def _lora(text: str) -> dict[str, Any]:
    """``demo-style:0.8`` as ``{"name": "demo-style", "scale": 0.8}``; a bare name alone."""
    name, sep, scale = text.rpartition(":") if ":" in text else (text, "", "")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME or NAME:SCALE")
    if not sep:
        return {"name": name}
    try:
        return {"name": name, "scale": float(scale)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{scale!r} in {text!r} is not a number") from None


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not above 0 and at most 1")
    return value


def _size(text: str) -> tuple[int, int]:
    """``192x128`` as ``(192, 128)``."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 192x128")
    return int(w), int(h)


def _video_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt")
    parser.add_argument("--model", help="vidu-q2 (default) or ltx-2")
    parser.add_argument("--duration", type=_positive, help="whole seconds (default 4)")
    parser.add_argument("--resolution", choices=vocab.RESOLUTIONS, help="default 720p")
    parser.add_argument("--aspect-ratio", choices=vocab.VIDEO_ASPECT_RATIOS, help="default 16:9")
    parser.add_argument(
        "--seed", type=_seed, help=f"0 to {vocab.MAX_SEED}: the same seed, the same video"
    )
    parser.add_argument("--negative", metavar="TEXT", help="what the video should not show")
    parser.add_argument(
        "--image", metavar="PATH|URL", help="the first frame (models that serve image to video)"
    )


def _three_d_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE_PATH_OR_URL")
    parser.add_argument("--texture-quality", choices=vocab.TEXTURE_QUALITIES)
    parser.add_argument("--texture-alignment", choices=vocab.TEXTURE_ALIGNMENTS)
    parser.add_argument("--orientation", choices=vocab.ORIENTATIONS)
    parser.add_argument("--model", help="default: the server's 3D model")


@dataclass(frozen=True)
class KindCommand:
    """One kind's subcommand: its help, its options, its SDK call and what it saves."""

    help: str
    options: Callable[[argparse.ArgumentParser], None]
    start: Callable[[Client, argparse.Namespace], GenerationStream[Any]]
    noun: str


KIND_COMMANDS: dict[vocab.Kind, KindCommand] = {
    "image": KindCommand(
        "generate images from a prompt and save them", _image_options, _image, "image"
    ),
    "video": KindCommand(
        "generate a video from a prompt and save it", _video_options, _video, "video"
    ),
    "3d": KindCommand(
        "turn an image (file or URL) into a 3D model (GLB)", _three_d_options, _three_d, "model"
    ),
}
"""Every kind of ``genserve.vocabulary.KINDS`` has its subcommand, named by the kind."""


def register(sub: Subparsers) -> None:
    """Adds the client subcommands (``genserve.cli`` calls this before the operator ones)."""
    conn = _connection_options()
    gen = _generation_options()

    for kind in vocab.KINDS:  # one subcommand per kind, named by it
        command = KIND_COMMANDS[kind]
        parser = sub.add_parser(kind, parents=[conn, gen], help=command.help)
        command.options(parser)
        parser.set_defaults(func=guarded(cmd_generate), kind=kind)

    projects = sub.add_parser("projects", parents=[conn], help="list your generations")
    projects.add_argument("--type", choices=("all", *vocab.PROJECT_TYPES), default=None)
    projects.add_argument("--page", type=_positive, default=None)
    projects.add_argument("--limit", type=_positive, default=None, help="1 to 100 (default 20)")
    projects.add_argument("--order", choices=("asc", "desc"), default=None)
    projects.add_argument("--all", action="store_true", help="every page")
    projects.add_argument("-q", "--query", dest="q", help="only prompts holding this text")
    projects.set_defaults(func=guarded(cmd_projects))

    models = sub.add_parser("models", parents=[conn], help="list the models a bridge serves")
    models.set_defaults(func=guarded(cmd_models))

    account = sub.add_parser("account", parents=[conn], help="your plan, points and rate limit")
    account.set_defaults(func=guarded(cmd_account))

    login = sub.add_parser(
        "login",
        parents=[conn],
        help="save a bridge's URL and your API key (asked for, never a flag)",
        description="Asks for the base URL (unless --base-url) and the API key (hidden on a "
        "terminal; otherwise one line of standard input), checks the key, and saves both "
        f"with mode 0600 to {config_path()}.",
    )
    login.add_argument(
        "--no-verify", dest="verify", action="store_false", help="save without checking the key"
    )
    login.set_defaults(func=guarded(cmd_login))

    logout = sub.add_parser("logout", help="remove the saved URL and key")
    logout.set_defaults(func=guarded(cmd_logout))

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='bash: eval "$(genserve completion bash)" in ~/.bashrc; zsh likewise in '
        "~/.zshrc; fish: genserve completion fish > ~/.config/fish/completions/genserve.fish",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    from genserve.cli import build_parser
    from genserve.completion import script

    print(script(args.shell, build_parser()), end="")
    return 0
