"""Seed 000 §4 / §5 request bodies (fine-tuning and pre-training tasks), as the seed declares them.
Mapped onto JobSubmit by routers/compat/finetune.py."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelyard.server.schemas.common import MAX_NAME, MAX_SEARCH

_Short = Annotated[str, StringConstraints(max_length=64)]
_Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
_Search = Annotated[str, StringConstraints(max_length=MAX_SEARCH)]


class GPUResource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    gpuCores: int | None = None
    gpuMem: float | None = None
    gpuNum: int | None = None
    gpuShare: str | None = None
    migRes: str | None = None


class ResourceItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cpuNumber: float | None = None
    gpuResource: GPUResource | None = None
    memory: float | None = None
    nodeType: str | None = None
    numbers: int | None = None


class HyperParameter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    description: str | None = None
    name: str | None = None
    value: Any = None


class CreateTaskBO(BaseModel):
    """The seed's CreateTaskBO (every field optional, as in the seed). A text is at most 128 KiB
    (a command line); the names and paths it maps onto have their own limits (schemas/jobs.py)."""

    model_config = ConfigDict(extra="ignore", str_max_length=128 * 1024)
    algorithmId: str | None = None
    checkPointDir: str | None = None
    command: str | None = None
    commands: list[str] | None = None
    commonHyperParameters: list[HyperParameter] | None = None
    createWay: str | None = None
    dataSetName: str | None = None
    datasetVersionId: str | None = None
    describe: str | None = None
    devices: str | None = None
    fineTuneHyperParameters: list[HyperParameter] | None = None
    fineTuneStrategy: str | None = None
    hyperparameter: str | dict | list | None = None
    image: str | None = None
    inputDir: str | None = None
    inputType: str | None = None
    isPretrain: int | str | None = None
    isUrgentTask: str | int | bool | None = None
    jobName: str | None = None
    llmTrainFramework: str | None = None
    modelId: str | None = None
    modelVersion: str | None = None
    modelVersionId: str | None = None
    mpiCommand: str | None = None
    name: str | None = None
    nodeName: list[str] | None = None
    originModelDir: str | None = None
    outputDir: str | None = None
    podDelete: int | None = None
    priority: str | int | None = None
    profilePath: str | None = None
    rdma: Any = None
    resource: list[ResourceItem] | None = None
    resourceGroupKey: str | None = None
    resourceName: str | None = None
    resourceType: str | None = None
    storageMedium: str | None = None
    type: str | None = None
    userId: str | int | None = None
    userName: str | None = None
    variable: list[dict[str, Any]] | None = None
    workingDir: str | None = None
    zoneId: str | None = None
    zoneName: str | None = None
    # extensions
    resume: bool | int | str | None = None
    taskId: str | None = None
    outputModelName: str | None = None


class ListBody(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="ignore")
    isPretrain: int | _Short | None = None
    """0: fine-tune tasks, 1: pre-train tasks"""
    pageNum: int | None = Field(None, description="clamped to 1..10**6")
    pageSize: int | None = Field(None, description="clamped to 1..1000")
    status: _Short | None = None
    """only tasks in this state (running, succeeded, ...)"""
    taskName: _Search | None = None
    """only tasks whose name contains this"""
    userId: _Name | int | None = None
    """only this user's tasks (admin; others see their own)"""
    userName: _Name | None = None
    """only this user's tasks, by name (admin)"""
