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
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    createUser: _Name | int | None = Field(None, description="创建人id: the caller (an admin may name another)")
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None
    name: _Name | None = Field(None, description="服务名称")
    path: Annotated[str, StringConstraints(max_length=MAX_PATH)] | None = Field(
        None, description="模型服务版本内部访问路径 (kept and shown)")
    userName: _Name | None = None
    """创建人名称: the caller's user name (an admin may name another)"""


class ModelServerVersion(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    aiApplicationVersionId: _Name | None = Field(None, description="the registry model version served")
    command: _Text | None = Field(None, description="a command serving HTTP on imagePorts (custom image or platform)")
    cpu: float | None = Field(None, ge=0, le=4096, description="CPU cores per replica")
    createUser: _Name | int | None = None
    """创建人id: the caller (an admin may name another)"""
    customImageFlag: int | None = Field(None, description="1: a custom image runs the command; else a model")
    envs: _Text | None = Field(None, description='JSON: [{"NAME": "value"}] or [{"name":..,"value":..}]')
    gpu: int | None = Field(None, description="gpu数量: GPUs per replica", ge=0, le=64)
    gpuCores: int | None = Field(None, description="gpu算力: GPU compute share (kept, as for jobs)", ge=0, le=1 << 20)
    gpuMem: int | None = Field(None, ge=0, le=1 << 20, description="GiB per GPU")
    gpuShare: _Short | None = None
    """gpu类型: none = whole GPUs, else shared vGPUs"""
    hyperParameterList: _Text | list | None = None
    """超参配置: only null / [] (a service takes generation parameters per request)"""
    image: _Name | None = Field(None, description="custom image: name:tag or image version id")
    imagePorts: _Short | None = None
    """容器暴露的端口列表: the port(s) a command's server listens on; the first is used"""
    memory: float | None = Field(None, ge=0, le=1 << 20, description="GiB per replica")
    metric: int | None = Field(None, description="1 rps, 2 concurrency, 3 GPU use")
    migRes: _Short | None = None
    """gpu切割: a MIG profile"""
    modelServerId: _Name | None = None
    """模型服务主id: set by the server (refused on create)"""
    monitorThreshold: _Short | float | None = None
    predictMaxReplicas: int | None = None
    """预测模型最大实例数 (stored)"""
    predictMinReplicas: int | None = None
    """预测模型最小实例数 (stored)"""
    rate: int | None = None
    """流量比例: traffic percent; a service's versions sum to 100"""
    rates: list[dict[str, Any]] | None = None
    """refused: give each version's rate"""
    replica: int | None = None
    """replicas to run (default predictMinReplicas or 1)"""
    reqMethod: _Short | None = None
    """请求方式: rest (grpc is refused)"""
    resourceGroupId: _Name | None = None
    """资源组id: replicas run on its nodes"""
    resourceGroupKey: _Name | None = None
    """资源组key值 (used when no id)"""
    resourceGroupName: _Name | None = None
    """资源组名称 (used when no id or key)"""
    userName: _Name | None = None
    """创建人名称: the caller's user name (an admin may name another)"""
    volumePath: Annotated[str, StringConstraints(max_length=MAX_PATH)] | None = None
    volumes: _Text | None = Field(None, description='JSON: [{"src": a folder of your files, "dst": inside}]')


class ModelServerDTO(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    modelServer: ModelServer | None = None
    """the service (name, description, createUser, path)"""
    modelServerVersions: list[ModelServerVersion] | None = Field(None, description="its versions (1..16)", max_length=16)


class ModelServerCriteria(BaseModel):
    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)
    createUser: _Name | int | None = None
    """创建人id: the caller (an admin may name another)"""
    name: Annotated[str, StringConstraints(max_length=MAX_SEARCH)] | None = None
    """only services whose name contains this"""


class ModelServerPageBody(BaseModel):
    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)
    pageNum: int | None = Field(None, description="clamped to 1..10**6")
    pageSize: int | None = Field(None, description="clamped to 1..1000")
    queryCriteria: ModelServerCriteria | None = None
    """filters: createUser (the caller unless admin) and name (contains)"""
