"""Seed 003 (ZStack) request bodies: POST /zstack/v1/ai/model-services ("add a model service")."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelyard.server.schemas.common import MAX_DESCRIPTION, MAX_NAME, MAX_PATH

_Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
_Text = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)]
_Yaml = Annotated[str, StringConstraints(max_length=256 * 1024)]
_Path = Annotated[str, StringConstraints(max_length=MAX_PATH)]


class ArchitectureImage(BaseModel):
    model_config = ConfigDict(extra="allow")
    cpuArchitecture: _Name | None = Field(None, description="x86_64 or aarch64: the nodes this image is for")
    vmImageUuid: _Name | None = Field(None, description="an image id in the platform's registry (taken like dockerImage)")
    dockerImage: _Path | None = Field(None, description="an image in the platform's registry (name:tag or id)")


class ModelServiceParam(BaseModel):
    """Fields the seed lists; any other is refused (unsupported_field)."""

    model_config = ConfigDict(extra="allow")

    name: _Name | None = Field(None, description="the template's name (unique per user)")
    description: _Text | None = Field(None, description="free text shown in listings")
    yaml: _Yaml | None = Field(None, description="services (ports, livez, readyz, serviceBootupTime), env, "
                                                 "distro.packages, python (requirements_txt, index_url, trusted_host)")
    requestCpu: float | None = Field(None, gt=0, le=1024, description="CPU cores one replica asks for")
    requestMemory: int | None = Field(None, gt=0, le=2**40, description="MiB")
    zoneUuid: _Name | None = Field(None, description="refused: one zone")
    modelCenterUuid: _Name | None = Field(None, description="recorded and returned (this platform is the model center)")
    gpuComputeCapability: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        None, description="a ready node must have a GPU with at least this compute capability")
    installPath: _Path | None = Field(None, description="the app's folder in your files (startCommand runs there)")
    system: bool | None = Field(None, description="visible to every user (admins only)")
    startCommand: _Text | None = Field(None, description="a shell command line run in installPath")
    pythonVersion: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="Python of the template's environment (3.x[.y]; must be installed on the server)")
    condaVersion: Annotated[str, StringConstraints(max_length=32)] | None = Field(None, description="refused: uv, not conda")
    type: Annotated[str, StringConstraints(max_length=32)] | None = Field(None, description="Endpoint only")
    framework: Annotated[str, StringConstraints(max_length=64)] | None = Field(None, description="recorded and shown")
    resourceUuid: _Name | None = Field(None, description="the new template's uuid (32 hex), optional")
    tagUuids: list[_Name] | None = Field(None, description="refused unless empty: tags are not kept")
    source: Annotated[str, StringConstraints(max_length=64)] | None = Field(None, description="recorded and shown")
    modelUuids: list[_Name] | None = Field(None, description="models this service is for (must be visible)")
    architectureImages: list[ArchitectureImage] | None = Field(
        None, description="per architecture, an image in the platform's registry (name:tag or id)")
    supportDistributed: bool | None = Field(None, description="true is refused: one replica runs on one node")
    containerCommand: _Text | None = Field(None, description="refused: use startCommand")
    containerArgs: _Text | None = Field(None, description="refused: use startCommand")
    vendorToSpecUuidsMap: dict[str, Any] | None = Field(None, description="refused unless empty: GPU specs by vendor are not matched")


class AddModelServiceRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    param: ModelServiceParam = Field(description="the service template")
    systemTags: list[Any] | None = Field(None, description="refused unless empty: tags are not kept")
    userTags: list[Any] | None = Field(None, description="refused unless empty: tags are not kept")
