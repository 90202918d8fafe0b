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

    name: _Name
    yaml: Annotated[str, StringConstraints(min_length=1, max_length=256 * 1024)]
    start_command: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION)]
    request_cpu: float = Field(gt=0, le=1024)
    request_memory_mib: int = Field(gt=0, le=2**40)
    description: _Text = ""
    install_path: Annotated[str, StringConstraints(max_length=MAX_PATH)] = ""
    gpu_compute_capability: Annotated[str, StringConstraints(max_length=16)] = ""
    python_version: Annotated[str, StringConstraints(max_length=32)] = ""
    type: Annotated[str, StringConstraints(max_length=32)] = "Endpoint"
    framework: Annotated[str, StringConstraints(max_length=64)] = ""
    source: Annotated[str, StringConstraints(max_length=64)] = ""
    public: bool = Field(False, description="a system template every user sees (admins only)")
    images: list[TemplateImage] = Field(default_factory=list)
    model_ids: list[_Name] = Field(default_factory=list)
