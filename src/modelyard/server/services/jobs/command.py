"""A custom job's command as ModelArts runs it (seed 000 §4.1 / §5.1): the task's hyperparameters
appended as `--name=value` (the platform replaces the script's defaults) and written as JSON to
the file `$MODELYARD_HPARAMS` names; the seed's `${output_dir}`, `${model_dir}`, `${data_dir}`,
`${checkpoint_dir}` placeholders substituted and exported as OUTPUT_DIR, MODEL_DIR, DATA_DIR and
CHECKPOINT_DIR.

Where the hyperparameters come from, a later source overriding an earlier one name by name: the
`profilePath` config.json in the user's files (its commonHyperParameters then
fineTuneHyperParameters), the `hyperparameter` JSON, `commonHyperParameters`,
`fineTuneHyperParameters`.

Where `--name=value` goes: after a `command` string (shell-quoted) or argv list; after the last of
`commands` (the boot command; the ones before it prepare); after `mpiCommand`.

`mpiCommand` runs under a real launcher across the job's replicas: each replica starts a torchrun
agent (`torch.distributed.run`, static rendezvous at the master replica, one process per replica,
`--no-python`), which runs the command with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT / TORCHELASTIC_* set and an agent store that `init_process_group("env://")` joins. In
an image, the image's own `torchrun` is used."""

from __future__ import annotations

import json
import re
import shlex
import sys
from typing import Any

from modelyard.core.errors import BadRequest
from modelyard.core.hparams import hparam_items
from modelyard.server.schemas.jobs import JobSubmit

PLACEHOLDERS = {"output_dir": "OUTPUT_DIR", "model_dir": "MODEL_DIR", "data_dir": "DATA_DIR",
                "checkpoint_dir": "CHECKPOINT_DIR"}
_PLACEHOLDER_RE = re.compile(r"\$\{(output_dir|model_dir|data_dir|checkpoint_dir)\}")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def custom_hyperparameters(req: JobSubmit, profile: dict[str, Any] | None) -> dict[str, str]:
    """{name: value as text} for a custom job, every name checked (it becomes `--name=`)."""
    out: dict[str, str] = {}
    blocks: list[tuple[Any, str]] = []
    for cfg, where in ((profile, "profilePath"), (req.config, "hyperparameter")):
        if cfg:
            blocks += [(cfg.get("commonHyperParameters"), f"{where}.commonHyperParameters"),
                       (cfg.get("fineTuneHyperParameters"), f"{where}.fineTuneHyperParameters")]
    blocks += [(req.common_hyperparameters, "commonHyperParameters"),
               (req.finetune_hyperparameters, "fineTuneHyperParameters")]
    for block, where in blocks:
        for name, value in hparam_items(block, where):
            if not _NAME_RE.match(name):
                raise BadRequest(f"{where}: hyperparameter name {name!r} cannot be passed as --{name}=...: use "
                                 "letters, digits, '_', '.', '-' (starting with a letter or '_')",
                                 code="invalid_hyperparameter")
            text = _text(value)
            if "\x00" in text:
                raise BadRequest(f"{where}: the value of {name} holds a NUL byte", code="invalid_hyperparameter")
            out[name] = text
    return out


def _substitute(text: str, dirs: dict[str, str | None], where: str) -> str:
    def one(m: re.Match) -> str:
        value = dirs.get(m.group(1))
        if not value:
            raise BadRequest(f"{where} uses ${{{m.group(1)}}} but the job has no {m.group(1).replace('_', ' ')} "
                             "(name a model / data / folder for it)", code="invalid_placeholder")
        return value

    return _PLACEHOLDER_RE.sub(one, text)


def build_argv(req: JobSubmit, image: dict[str, Any] | None, hparams: dict[str, str],
               dirs: dict[str, str | None]) -> tuple[list[str], str]:
    """argv and where it came from. A string runs under /bin/sh -c; a list is exec'd as is (after
    the image's Entrypoint, as docker does)."""
    flags = [f"--{k}={v}" for k, v in hparams.items()]
    quoted = " ".join(shlex.quote(f) for f in flags)

    def shell(line: str) -> str:
        return f"{line} {quoted}" if quoted else line

    if req.mpi_command and req.mpi_command.strip():
        return mpi_launch(shell(_substitute(req.mpi_command, dirs, "mpiCommand")), in_image=bool(image)), \
            "mpiCommand (torchrun launcher)"
    if isinstance(req.command, list) and req.command:
        argv = [_substitute(str(x), dirs, "command") for x in req.command] + flags
        if image and image.get("entrypoint"):
            return image["entrypoint"] + argv, "image entrypoint + command"
        return argv, "command"
    if isinstance(req.command, str) and req.command.strip():
        return ["/bin/sh", "-c", shell(_substitute(req.command, dirs, "command"))], "command"
    cmds = [_substitute(c, dirs, "commands") for c in (req.commands or []) if c and c.strip()]
    if cmds:
        cmds[-1] = shell(cmds[-1])
        return ["/bin/sh", "-c", "set -e\n" + "\n".join(cmds)], "commands"
    if image and (image.get("entrypoint") or image.get("cmd")):
        return (image.get("entrypoint") or []) + (image.get("cmd") or []) + flags, "image entrypoint/cmd"
    raise BadRequest("a custom job needs command, commands or mpiCommand (or an image with an entrypoint)",
                     code="missing_command")


def mpi_launch(line: str, *, in_image: bool) -> list[str]:
    """argv running a shell line under one torchrun agent per replica (the variables are the
    replica's own: the platform sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT per replica)."""
    torchrun = "torchrun" if in_image else f"{shlex.quote(sys.executable)} -m torch.distributed.run"
    agent = (f'exec {torchrun} --nnodes="$WORLD_SIZE" --node-rank="$RANK" --nproc-per-node=1 '
             '--master-addr="$MASTER_ADDR" --master-port="$MASTER_PORT" --rdzv-backend=static '
             '--no-python /bin/sh -c "$0"')
    return ["/bin/sh", "-c", agent, line]


def placeholder_env(dirs: dict[str, str | None]) -> dict[str, str]:
    """OUTPUT_DIR, MODEL_DIR, DATA_DIR, CHECKPOINT_DIR for the folders the job has."""
    return {env: dirs[key] for key, env in PLACEHOLDERS.items() if dirs.get(key)}
