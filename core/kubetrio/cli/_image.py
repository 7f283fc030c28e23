"""``kubetrio image``: make images for a cluster without a container engine.

``build`` makes a busybox-based image from a directory and pushes it to a registry;
``import`` pushes the images of an OCI layout or a docker-archive tarball.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, err_console

image_app = typer.Typer(
    name="image",
    help="Build and import OCI images into a registry (no container engine needed).",
    no_args_is_help=True,
)


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--env")
        env[name] = value
    return env


@image_app.command("build")
def build(
    context: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Directory copied onto the image's root."
    ),
    tag: str = typer.Option(..., "--tag", "-t", help="Where to push: 127.0.0.1:5000/app:1."),
    cmd: list[str] = typer.Option(["sh"], "--cmd", help="The image's command (repeat per word)."),
    env: list[str] = typer.Option([], "--env", "-e", help="NAME=VALUE for the image (repeatable)."),
    workdir: str = typer.Option("", "--workdir", help="The image's working directory."),
) -> None:
    """Build a busybox-based image from a directory and push it to a registry."""
    import trio

    from kubetrio.images import RegistryError, build_image

    with console.status(f"building and pushing {tag}"):
        try:
            built = trio.run(
                lambda: build_image(tag, context, cmd=cmd, env=_env(env), working_dir=workdir)
            )
        except (RegistryError, OSError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=1) from exc
    console.print(f"pushed {built.reference} ({built.digest})")


@image_app.command("import")
def import_(
    source: Path = typer.Argument(..., exists=True, help="OCI layout directory or a tarball."),
    tag: str = typer.Option("", "--tag", "-t", help="Where to push (default: the archive's tag)."),
) -> None:
    """Push the images of an OCI layout or a docker-archive (docker save) to a registry."""
    import trio

    from kubetrio.images import ImageImportError, RegistryError, import_image

    with console.status(f"importing {source}"):
        try:
            pushed = trio.run(lambda: import_image(source, tag))
        except (ImageImportError, RegistryError, OSError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=1) from exc
    for reference in pushed:
        console.print(f"pushed {reference}")
