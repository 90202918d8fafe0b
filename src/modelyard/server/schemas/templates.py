"""Native service template bodies (/api/v1/templates): the seed 003 fields in snake_case."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelyard.server.schemas.common import MAX_DESCRIPTION, MAX_NAME, MAX_PATH

_Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
_Text = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)]


class TemplateImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: Annotated[str, StringConstraints(max_length=32)] = Field(description="X86_64 or AARCH64")
    image: Annotated[str, StringConstraints(max_length=MAX_PATH)] = Field(
        description="an image in the platform's registry: name:tag, name or version id")


class TemplateCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: _Name = Field(description="the template's name, unique per user")
    yaml: Annotated[str, StringConstraints(min_length=1, max_length=256 * 1024)] = Field(
        description="the seed-003 YAML: services (ports, livez, readyz, serviceBootupTime), env, distro packages, python requirements")
    start_command: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION)] = Field(
        description="the shell command line that starts the service, run in install_path")
    request_cpu: float = Field(gt=0, le=1024, description="CPU cores one replica asks for")
    request_memory_mib: int = Field(gt=0, le=2**40, description="memory one replica asks for, in MiB")
    description: _Text = Field("", description="free text shown in listings")
    install_path: Annotated[str, StringConstraints(max_length=MAX_PATH)] = Field(
        "", description="the app's folder in your files (the start command runs there)")
    gpu_compute_capability: Annotated[str, StringConstraints(max_length=16)] = Field(
        "", description="the least GPU compute capability a node must have (e.g. 8.0); empty: no GPU needed")
    python_version: Annotated[str, StringConstraints(max_length=32)] = Field(
        "", description="Python of the template's environment (3.x[.y]); empty: the server's")
    type: Annotated[str, StringConstraints(max_length=32)] = Field("Endpoint", description="Endpoint (the only type served)")
    framework: Annotated[str, StringConstraints(max_length=64)] = Field("", description="recorded and shown (e.g. PyTorch)")
    source: Annotated[str, StringConstraints(max_length=64)] = Field("", description="recorded and shown: where the template comes from")
    public: bool = Field(False, description="a system template every user sees (admins only)")
    images: list[TemplateImage] = Field(default_factory=list, description="per CPU architecture, an image in the platform's registry to run in")
    model_ids: list[_Name] = Field(default_factory=list, description="models this template serves (must be visible to you)")
