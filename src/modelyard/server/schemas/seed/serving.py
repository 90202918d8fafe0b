"""Seed 000 §7 request bodies (inference services), as the seed declares them. Mapped onto
ServiceCreate by routers/compat/serving.py; a field not declared here is refused there
(400 unsupported_field), never dropped."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelyard.server.schemas.common import MAX_DESCRIPTION, MAX_NAME, MAX_PATH, MAX_SEARCH

_Short = Annotated[str, StringConstraints(max_length=64)]
_Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
_Text = Annotated[str, StringConstraints(max_length=64 * 1024)]


class ModelServer(BaseModel):
    model_config = ConfigDict(extra="allow")
    createUser: _Name | int | None = Field(None, description="创建人id: the caller (an admin may name another)")
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None
    name: _Name | None = Field(None, description="服务名称")
    path: Annotated[str, StringConstraints(max_length=MAX_PATH)] | None = Field(
        None, description="模型服务版本内部访问路径 (kept and shown)")
    userName: _Name | None = None


class ModelServerVersion(BaseModel):
    model_config = ConfigDict(extra="allow")
    aiApplicationVersionId: _Name | None = Field(None, description="the registry model version served")
    command: _Text | None = Field(None, description="a command serving HTTP on imagePorts (custom image or platform)")
    cpu: float | None = Field(None, ge=0, le=4096, description="CPU cores per replica")
    createUser: _Name | int | None = None
    customImageFlag: int | None = Field(None, description="1: a custom image runs the command; else a model")
    envs: _Text | None = Field(None, description='JSON: [{"NAME": "value"}] or [{"name":..,"value":..}]')
    gpu: int | None = Field(None, ge=0, le=64)
    gpuCores: int | None = Field(None, ge=0, le=1 << 20)
    gpuMem: int | None = Field(None, ge=0, le=1 << 20, description="GiB per GPU")
    gpuShare: _Short | None = None
    hyperParameterList: _Text | list | None = None
    image: _Name | None = Field(None, description="custom image: name:tag or image version id")
    imagePorts: _Short | None = None
    memory: float | None = Field(None, ge=0, le=1 << 20, description="GiB per replica")
    metric: int | None = Field(None, description="1 rps, 2 concurrency, 3 GPU use")
    migRes: _Short | None = None
    modelServerId: _Name | None = None
    monitorThreshold: _Short | float | None = None
    predictMaxReplicas: int | None = None
    predictMinReplicas: int | None = None
    rate: int | None = None
    rates: list[dict[str, Any]] | None = None
    replica: int | None = None
    reqMethod: _Short | None = None
    resourceGroupId: _Name | None = None
    resourceGroupKey: _Name | None = None
    resourceGroupName: _Name | None = None
    userName: _Name | None = None
    volumePath: Annotated[str, StringConstraints(max_length=MAX_PATH)] | None = None
    volumes: _Text | None = Field(None, description='JSON: [{"src": a folder of your files, "dst": inside}]')


class ModelServerDTO(BaseModel):
    model_config = ConfigDict(extra="allow")
    modelServer: ModelServer | None = None
    modelServerVersions: list[ModelServerVersion] | None = Field(None, max_length=16)


class ModelServerCriteria(BaseModel):
    model_config = ConfigDict(extra="ignore")
    createUser: _Name | int | None = None
    name: Annotated[str, StringConstraints(max_length=MAX_SEARCH)] | None = None


class ModelServerPageBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pageNum: int | None = Field(None, description="clamped to 1..10**6")
    pageSize: int | None = Field(None, description="clamped to 1..1000")
    queryCriteria: ModelServerCriteria | None = None
