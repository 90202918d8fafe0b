from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from .common import MAX_DESCRIPTION, MAX_NAME, ORMModel, UTCDateTime

# --- native ------------------------------------------------------------------------------------


class ImageCreateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str = Field(description="repository name, docker grammar (e.g. 'team/pytorch-cuda')", max_length=MAX_NAME)
    icon: str = ""
    overview: str = ""
    labels: list[Any] = Field(default_factory=list)
    description: str = ""
    is_public: bool = False


class ImageUpdateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    icon: str | None = None
    overview: str | None = None
    labels: list[Any] | None = None
    description: str | None = None
    is_public: bool | None = None


class ImageImportRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    path: str = Field(description="the archive (docker save / OCI layout tar, or an OCI layout folder), "
                                  "relative to your file root")
    tag: str | None = Field(None, description="default: the tag the archive names, else 'latest'")


class LayerResponse(BaseModel):
    digest: str
    size: int
    mediaType: str
    diff_id: str | None = None
    uncompressed_size: int | None = None


class ImageVersionResponse(ORMModel):
    id: str
    image_id: str
    tag: str
    status: str
    archive_format: str
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    layers: list[LayerResponse]
    size_bytes: int
    uncompressed_size_bytes: int
    os: str
    architecture: str
    variant: str
    env: list[str]
    entrypoint: list[str] | None
    cmd: list[str] | None
    working_dir: str
    config_user: str
    config_labels: dict[str, str]
    exposed_ports: list[str]
    image_created: str
    repo_tags: list[str]
    source_path: str
    created_by: str | None
    created_at: UTCDateTime


class ImageResponse(ORMModel):
    id: str
    owner_id: str
    name: str
    icon: str
    overview: str
    labels: list[Any]
    description: str
    is_public: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime
    tags: list[str] = Field(default_factory=list)


class ImageDetailResponse(ImageResponse):
    versions: list[ImageVersionResponse] = Field(default_factory=list)


class GCResponse(BaseModel):
    blobs_removed: int
    orphan_files_removed: int
    temp_files_removed: int
    rootfs_removed: int = 0  # unpacked root filesystems of manifests no version uses
    bytes_freed: int


# --- seed §2 -----------------------------------------------------------------------------------


class _Seed(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_max_length=MAX_DESCRIPTION)

    @field_validator("userId", mode="before", check_fields=False)
    @classmethod
    def _str_id(cls, v):
        return None if v is None else str(v)


class SeedImageUpload(_Seed):
    """§2.1 /docker/image/upload."""

    userId: str | None = None
    imageName: str | None = None
    imageIcon: str | None = ""
    imageOverView: str | None = ""
    imageLabel: list[Any] | None = None
    imageDescribe: str | None = ""


class SeedImageUploadOld(_Seed):
    """§2.2 /docker/image/uploadOld."""

    userId: str | None = None
    imageId: str | None = None
    imageName: Any = Field(None, validation_alias=AliasChoices("imageName"))  # the seed types it 'array'
    imageTag: str | None = None
    fileUrl: str
