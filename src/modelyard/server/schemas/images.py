from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from .common import MAX_DESCRIPTION, MAX_NAME, ORMModel, UTCDateTime

# --- native ------------------------------------------------------------------------------------


class ImageCreateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str = Field(description="repository name, docker grammar (e.g. 'team/pytorch-cuda')", max_length=MAX_NAME)
    icon: str = ""
    """an icon (URL or data) shown with the image"""
    overview: str = ""
    """a longer description, shown on its page"""
    labels: list[Any] = Field(default_factory=list)
    """free labels to find it by"""
    description: str = ""
    """a one-line description"""
    is_public: bool = False
    """visible (read-only) to every user"""


class ImageUpdateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    icon: str | None = None
    """a new icon"""
    overview: str | None = None
    """a new overview"""
    labels: list[Any] | None = None
    """new labels"""
    description: str | None = None
    """a new description"""
    is_public: bool | None = None
    """make it visible to every user, or private again"""


class ImageImportRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    path: str = Field(description="the archive (docker save / OCI layout tar, or an OCI layout folder), "
                                  "relative to your file root")
    tag: str | None = Field(None, description="default: the tag the archive names, else 'latest'")


class LayerResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    digest: str
    """the layer blob's digest (sha256:...)"""
    size: int
    """its compressed size in bytes"""
    mediaType: str
    """its OCI / docker media type"""
    diff_id: str | None = None
    """the digest of its uncompressed content"""
    uncompressed_size: int | None = None
    """its uncompressed size in bytes"""


class ImageVersionResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the version's id (any unique prefix of 4+ also names it)"""
    image_id: str
    """the image it belongs to"""
    tag: str
    """its tag, e.g. latest or 1.0"""
    status: str
    """ready, or why not"""
    archive_format: str
    """docker-save or oci"""
    manifest_digest: str
    """the manifest's digest"""
    manifest_media_type: str
    """the manifest's media type"""
    config_digest: str
    """the config blob's digest"""
    layers: list[LayerResponse]
    """its layers, in order"""
    size_bytes: int
    """compressed size of its layers"""
    uncompressed_size_bytes: int
    """size once unpacked"""
    os: str
    """the operating system it is built for"""
    architecture: str
    """the CPU architecture, e.g. amd64"""
    variant: str
    """the architecture variant, if any"""
    env: list[str]
    """the environment variables it sets"""
    entrypoint: list[str] | None
    """the command prefix it runs"""
    cmd: list[str] | None
    """the default arguments"""
    working_dir: str
    """the folder commands start in"""
    config_user: str
    """the user it runs as"""
    config_labels: dict[str, str]
    """the labels in its config"""
    exposed_ports: list[str]
    """the ports it declares"""
    image_created: str
    """when the image was built"""
    repo_tags: list[str]
    """the tags recorded in the archive"""
    source_path: str
    """the archive it was imported from, in your files"""
    created_by: str | None
    """the user who imported it"""
    created_at: UTCDateTime
    """when it was imported (UTC)"""


class ImageResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the image's id (any unique prefix of 4+ also names it)"""
    owner_id: str
    """the user it belongs to"""
    name: str
    """its name, unique per owner"""
    icon: str
    """its icon"""
    overview: str
    """its longer description"""
    labels: list[Any]
    """its labels"""
    description: str
    """its one-line description"""
    is_public: bool
    """visible to every user"""
    created_at: UTCDateTime
    """when it was registered (UTC)"""
    updated_at: UTCDateTime
    """when it last changed"""
    tags: list[str] = Field(default_factory=list)
    """the tags of its versions"""


class ImageDetailResponse(ImageResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    versions: list[ImageVersionResponse] = Field(default_factory=list)
    """every version, oldest first"""


class GCResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    blobs_removed: int
    """blob records no version used, removed"""
    orphan_files_removed: int
    """blob files with no record, removed"""
    temp_files_removed: int
    """leftover temporary files removed"""
    rootfs_removed: int = 0  # unpacked root filesystems of manifests no version uses
    """unpacked root filesystems no version uses, removed"""
    bytes_freed: int
    """disk space given back, in bytes"""


# --- seed §2 -----------------------------------------------------------------------------------


class _Seed(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_max_length=MAX_DESCRIPTION)

    @field_validator("userId", mode="before", check_fields=False)
    @classmethod
    def _str_id(cls, v):
        return None if v is None else str(v)


class SeedImageUpload(_Seed):
    """§2.1 /docker/image/upload."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    userId: str | None = None
    """the owner's id (must be the caller unless admin)"""
    imageName: str | None = None
    """the image's name"""
    imageIcon: str | None = ""
    """its icon"""
    imageOverView: str | None = ""
    """its longer description"""
    imageLabel: list[Any] | None = None
    """its labels"""
    imageDescribe: str | None = ""
    """its one-line description"""


class SeedImageUploadOld(_Seed):
    """§2.2 /docker/image/uploadOld."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    userId: str | None = None
    """the owner's id (must be the caller unless admin)"""
    imageId: str | None = None
    """the image to import into"""
    imageName: Any = Field(None, validation_alias=AliasChoices("imageName"))  # the seed types it 'array'
    """the image's name (instead of the id)"""
    imageTag: str | None = None
    """the tag the imported version gets"""
    fileUrl: str
    """the tar archive in your files"""
